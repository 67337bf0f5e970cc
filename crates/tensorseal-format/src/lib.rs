//! The safetensors format: read, validate and write, zero-copy and lazy.
//!
//! A safetensors file is an 8-byte little-endian header length `N`, `N` bytes
//! of UTF-8 JSON describing each tensor (`dtype`, `shape`, `data_offsets`) and
//! an optional `__metadata__` string map, then the data buffer.
//!
//! Everything here treats its input as untrusted: parsing never panics, never
//! indexes unchecked and never allocates from a length it has not bounded.
//! Errors are typed ([`FormatError`]) and quote the value at fault.
//!
//! - Readers: [`SafeTensors`] (bytes in memory), [`MmapFile`] (lazy memory
//!   map), [`PreadFile`] (positioned reads, never maps); all implement
//!   [`ReadTensors`], one set of lookup and read methods.
//! - Writer ([`mod@write`]): [`serialize`] and [`serialize_to_file`] take any
//!   tensor type implementing [`View`]; [`FileWriter`] streams bytes from the
//!   caller; [`WriteOptions`] carries the metadata and the durability.
//! - A file that is not safetensors at all is named from its first bytes
//!   ([`mod@sniff`], [`FormatError::NotSafetensors`]).
//! - Slices: [`mod@slice`]. Sharded checkpoints: [`index`], [`shard`].
//!
//! ```
//! use tensorseal_format::{serialize, Dtype, ReadTensors, SafeTensors, SliceArg, TensorView, WriteOptions};
//!
//! let data: Vec<u8> = (0..6u8).collect();
//! let view = TensorView::new(Dtype::U8, vec![2, 3], &data)?;
//! let bytes = serialize([("x", view)], &WriteOptions::new())?;
//!
//! let file = SafeTensors::deserialize(&bytes)?;
//! assert_eq!(file.tensor("x")?.shape(), &[2, 3]);
//! // x[:, ::-2] reads only the selected bytes.
//! let s = file.read_slice("x", &[SliceArg::FULL, SliceArg::Range { start: None, stop: None, step: -2 }])?;
//! assert_eq!((s.shape, s.data), (vec![2, 2], vec![2, 0, 5, 3]));
//! # Ok::<(), tensorseal_format::FormatError>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod dtype;
mod error;
pub mod header;
pub mod index;
pub mod open;
pub mod read;
pub mod shard;
pub mod slice;
pub mod sniff;
mod view;
pub mod write;

pub use dtype::{Dtype, UnknownDtype};
pub use error::FormatError;
pub use header::{
    byte_size, FilePrefix, Header, TensorInfo, MAX_HEADER_LEN, MAX_NESTING_DEPTH, METADATA_KEY,
};
pub use open::{open_regular, FileKind, NotRegularFile};
pub use read::{read_exact_at, MmapFile, PreadFile, ReadTensors, SafeTensors};
pub use slice::{SliceArg, SlicePlan};
pub use sniff::FileFormat;
pub use view::{OwnedTensor, TensorView, View};
pub use write::{
    serialize, serialize_to_file, AtomicFile, Durability, FileWriter, Layout, TensorSpec,
    WriteOptions,
};

/// Alias module: the readers also live at `tensorseal_format::mmap`.
pub mod mmap {
    pub use crate::read::MmapFile;
}
