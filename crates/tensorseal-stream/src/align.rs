//! Alignment arithmetic for direct I/O.
//!
//! `O_DIRECT` reads need the file offset, the length and the buffer address
//! to be multiples of the device's logical block size. [`ALIGN`] (4096)
//! covers every common block size (512 and 4096 bytes).

/// The alignment used for direct reads: offset, length and address.
pub const ALIGN: u64 = 4096;

/// `x` rounded down to a multiple of [`ALIGN`].
pub fn align_down(x: u64) -> u64 {
    x - x % ALIGN
}

/// `x` rounded up to a multiple of [`ALIGN`], or None when that overflows.
pub fn align_up(x: u64) -> Option<u64> {
    match x % ALIGN {
        0 => Some(x),
        r => x.checked_add(ALIGN - r),
    }
}

/// The aligned read covering file bytes `offset..offset + len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlignedRead {
    /// Aligned file offset the read starts at (`<= offset`).
    pub start: u64,
    /// Aligned length of the read (covers `offset + len`).
    pub len: u64,
    /// Where the wanted bytes begin in the read buffer (`offset - start`).
    pub skip: u64,
}

/// The smallest aligned read covering `offset..offset + len`, or None when
/// the end overflows `u64`.
pub fn aligned_read(offset: u64, len: u64) -> Option<AlignedRead> {
    let start = align_down(offset);
    let end = align_up(offset.checked_add(len)?)?;
    Some(AlignedRead {
        start,
        len: end - start,
        skip: offset - start,
    })
}

/// Whether `addr` is a multiple of [`ALIGN`].
pub fn is_aligned(addr: usize) -> bool {
    (addr as u64).is_multiple_of(ALIGN)
}
