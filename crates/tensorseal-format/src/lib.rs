//! The safetensors format: read, validate and write, zero-copy and lazy.
//!
//! A safetensors file is an 8-byte little-endian header length `N`, `N` bytes
//! of UTF-8 JSON describing each tensor (`dtype`, `shape`, `data_offsets`) and
//! an optional `__metadata__` string map, then the data buffer.
//!
//! Everything here treats its input as untrusted: parsing never panics, never
//! indexes unchecked and never allocates from a length it has not bounded.
//! Errors are typed ([`FormatError`]) and quote the value at fault.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod dtype;
mod error;
pub mod header;

pub use dtype::{Dtype, UnknownDtype};
pub use error::FormatError;
pub use header::{Header, TensorInfo, MAX_HEADER_LEN, METADATA_KEY};
