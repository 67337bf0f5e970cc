//! Quantized safetensors checkpoints.
//!
//! - [`float`]: exact decoding of F8_E4M3, F8_E5M2, F8_E4M3FNUZ,
//!   F8_E5M2FNUZ, F8_E8M0, F4 (E2M1), F6_E2M3 and F6_E3M2 to f32, bf16, f16.
//! - [`scheme`]: recognising quantization layouts (GPTQ, AWQ, block FP8,
//!   compressed-tensors, ModelOpt NVFP4, MXFP4, bitsandbytes) from tensor
//!   names, dtypes, shapes and the checkpoint's config files.
//! - [`dequant`]: dequantizing a checkpoint into a dense one, streaming with
//!   bounded memory.
//! - [`sparse`]: the sparse-tensor convention of docs/sparse.md: describe
//!   and densify.
//!
//! Everything treats its input as untrusted: shapes and scale sizes are
//! checked before any index, and errors ([`QuantError`]) quote the value at
//! fault.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod dequant;
mod error;
pub mod float;
pub mod scheme;
pub mod sparse;

pub use error::QuantError;
pub use float::OutDtype;
