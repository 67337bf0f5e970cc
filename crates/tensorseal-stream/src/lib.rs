//! Streams byte ranges of one file through a ring of staging buffers.
//!
//! This crate is the host half of tensorseal's load-to-device pipeline, and
//! knows nothing of Python, torch or CUDA. The caller hands it the byte
//! ranges it wants ([`plan::Range`]) and a ring of staging buffers (for a
//! GPU: pinned host memory). Reader threads fill the slots in chunk order;
//! the consumer takes chunk `i` with [`Stream::wait`] (slot `i % slots`),
//! copies its bytes out (for a GPU: asynchronous host-to-device copies),
//! and gives the slot back with [`Stream::release`], after which chunk
//! `i + slots` may be read into it. Host memory held is the ring, whatever
//! the size of the file.
//!
//! Reads use `O_DIRECT` (no page-cache copy, no cache pollution) when asked
//! to, or, with [`Direct::Auto`], when the wanted bytes are not cached;
//! a file system that refuses it (`EINVAL` when setting the flag or on a
//! read) gets buffered reads instead, and [`Stats`] says which were made.
//! The first error (a read failing, the file truncated under the reader)
//! cancels the stream: readers stop, and every waiting or later
//! [`Stream::wait`] returns that error. Dropping the stream (or
//! [`Stream::close`]) cancels it and joins its threads.

#![deny(unsafe_code)]

pub mod align;
pub mod plan;
mod ring;

use std::io;
use std::sync::Arc;

pub use plan::{plan, Chunk, Copy, Range};
pub use ring::{Direct, Options, Slot, Stats, Stream};

/// What can go wrong while planning or streaming.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StreamError {
    /// A staging slot size that is not a multiple of 4096 of at least 8192.
    #[error("staging slot size {slot_bytes} is invalid: it must be a multiple of 4096 and at least 8192 bytes")]
    SlotSize {
        /// The size given.
        slot_bytes: u64,
    },
    /// A range whose end overflows.
    #[error("range {index} (offset {offset}, {len} bytes) overflows")]
    RangeOverflow {
        /// Index of the range in the caller's list.
        index: usize,
        /// Its offset.
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// No staging slot, or one too small or misaligned for direct reads.
    #[error("staging slot {index} is unusable: {reason}")]
    BadSlot {
        /// Index of the slot.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The file ended before a chunk's last byte (truncated while loading).
    #[error("{path}: file truncated while loading: {wanted} bytes wanted at offset {offset}, only {got} there")]
    Truncated {
        /// The file.
        path: String,
        /// File offset of the chunk.
        offset: u64,
        /// Bytes wanted.
        wanted: u64,
        /// Bytes the file had.
        got: u64,
    },
    /// A read failed.
    #[error("{path}: reading {len} bytes at offset {offset} failed: {source}")]
    Io {
        /// The file.
        path: String,
        /// File offset of the read.
        offset: u64,
        /// Its length.
        len: u64,
        /// The error.
        #[source]
        source: Arc<io::Error>,
    },
    /// Opening the file a second time for direct reads found another file.
    #[error("{path} was replaced while loading (a second open found another file)")]
    Replaced {
        /// The file.
        path: String,
    },
    /// A chunk asked for out of turn: past the end, already released, or
    /// whose slot still holds a chunk not released.
    #[error("chunk {chunk} cannot be taken now: {reason}")]
    Order {
        /// The chunk.
        chunk: usize,
        /// Why.
        reason: &'static str,
    },
    /// The stream was cancelled (by [`Stream::cancel`] or closing it).
    #[error("loading was cancelled")]
    Cancelled,
}

impl StreamError {
    /// A stable identifier of the error's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            StreamError::SlotSize { .. } => "staging_slot_size",
            StreamError::RangeOverflow { .. } => "range_overflow",
            StreamError::BadSlot { .. } => "staging_slot",
            StreamError::Truncated { .. } => "file_truncated",
            StreamError::Io { .. } => "io",
            StreamError::Replaced { .. } => "file_replaced",
            StreamError::Order { .. } => "chunk_order",
            StreamError::Cancelled => "cancelled",
        }
    }
}
