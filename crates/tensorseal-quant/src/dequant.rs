//! Dequantizing.
