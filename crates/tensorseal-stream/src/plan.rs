//! Planning: which file bytes each chunk reads and where they go.
//!
//! Wanted byte ranges (tensors, or parts of tensors) are sorted by file
//! offset and cut into chunks: contiguous file spans that fit one staging
//! slot once widened to [`ALIGN`] boundaries. Nearby ranges share a chunk
//! (gaps up to [`MAX_GAP`] are read through); a range larger than a slot is
//! split across chunks, at aligned file offsets so that the next chunk's
//! direct read starts where the last one ended.

use crate::align::{align_down, ALIGN};
use crate::StreamError;

/// Gaps between wanted ranges up to this size are read through rather
/// than starting a new chunk (one read instead of two).
pub const MAX_GAP: u64 = 64 << 10;

/// Bytes wanted from the file: `len` bytes at file `offset`, destined for
/// byte `dst_offset` of destination `dst` (an index the caller chooses:
/// a tensor, or a buffer shared by several tensors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// File offset of the first byte.
    pub offset: u64,
    /// Number of bytes.
    pub len: u64,
    /// Destination index.
    pub dst: usize,
    /// Byte offset in the destination.
    pub dst_offset: u64,
}

/// One copy out of a filled slot: `len` bytes from `src_offset` bytes past
/// the chunk's first byte to byte `dst_offset` of destination `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copy {
    /// Destination index (from [`Range::dst`]).
    pub dst: usize,
    /// Byte offset in the destination.
    pub dst_offset: u64,
    /// Byte offset from the chunk's first file byte.
    pub src_offset: u64,
    /// Number of bytes.
    pub len: u64,
}

/// A contiguous span of the file read into one slot, and the copies out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// File offset of the first byte.
    pub offset: u64,
    /// Number of bytes (`> 0`).
    pub len: u64,
    /// Copies out of the chunk, in file order; adjacent ones that continue
    /// each other in both the file and the destination are merged.
    pub copies: Vec<Copy>,
}

/// Cuts `ranges` into chunks for slots of `slot_bytes` bytes. Empty ranges
/// need no read and are left out.
///
/// Every chunk satisfies: its aligned read
/// ([`aligned_read`](crate::align::aligned_read)`(offset, len)`) is at most
/// `slot_bytes` long, and `src_offset + len <= chunk.len` for each copy.
pub fn plan(ranges: &[Range], slot_bytes: u64) -> Result<Vec<Chunk>, StreamError> {
    if slot_bytes < 2 * ALIGN || !slot_bytes.is_multiple_of(ALIGN) {
        return Err(StreamError::SlotSize { slot_bytes });
    }
    let mut sorted: Vec<&Range> = Vec::with_capacity(ranges.len());
    for (index, r) in ranges.iter().enumerate() {
        let end = r.offset.checked_add(r.len);
        let dst_end = r.dst_offset.checked_add(r.len);
        if end.is_none() || dst_end.is_none() {
            return Err(StreamError::RangeOverflow {
                index,
                offset: r.offset,
                len: r.len,
            });
        }
        if r.len > 0 {
            sorted.push(r);
        }
    }
    sorted.sort_by_key(|r| (r.offset, r.dst, r.dst_offset));
    let mut chunks: Vec<Chunk> = Vec::new();
    for r in sorted {
        let (mut at, end) = (r.offset, r.offset + r.len);
        while at < end {
            // Join the current chunk when `at` lies within (or a small gap
            // after) it and the chunk can still grow past `at`.
            let joinable = chunks.last().and_then(|c| {
                let limit = align_down(c.offset) + slot_bytes;
                let c_end = c.offset + c.len;
                (at >= c.offset && at <= c_end.saturating_add(MAX_GAP) && at < limit)
                    .then_some(limit)
            });
            let limit = match joinable {
                Some(limit) => limit,
                None => {
                    chunks.push(Chunk {
                        offset: at,
                        len: 0,
                        copies: Vec::new(),
                    });
                    align_down(at) + slot_bytes
                }
            };
            let Some(chunk) = chunks.last_mut() else {
                break; // unreachable: a chunk was just found or pushed
            };
            let piece_end = end.min(limit);
            let copy = Copy {
                dst: r.dst,
                dst_offset: r.dst_offset + (at - r.offset),
                src_offset: at - chunk.offset,
                len: piece_end - at,
            };
            chunk.len = chunk.len.max(piece_end - chunk.offset);
            match chunk.copies.last_mut() {
                Some(last)
                    if last.dst == copy.dst
                        && last.dst_offset + last.len == copy.dst_offset
                        && last.src_offset + last.len == copy.src_offset =>
                {
                    last.len += copy.len;
                }
                _ => chunk.copies.push(copy),
            }
            at = piece_end;
        }
    }
    Ok(chunks)
}
