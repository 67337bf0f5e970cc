//! Sharded checkpoints.
