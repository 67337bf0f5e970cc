//! A compressed zip member (deflate, and what `tensorseal-codec` decodes),
//! decoded as a stream through a bounded buffer and checked against its
//! declared size and CRC-32, never inflated whole unless asked.

use std::io::Read;
use std::ops::Range;
use std::path::Path;

use crate::error::ConvertError;

/// Where a compressed zip member's bytes are and how to decode them.
#[derive(Debug, Clone)]
pub(crate) struct Packed {
    pub(super) member: String,
    /// Compressed bytes in the map.
    pub(super) raw: Range<usize>,
    pub(super) method: u16,
    /// Declared uncompressed size.
    pub(super) size: u64,
    pub(super) crc: u32,
}

/// Largest LZMA dictionary a member may declare.
const DICT_LIMIT: u64 = 256 << 20;
/// Decompression buffer: what a compressed member costs in memory.
const STREAM_CHUNK: usize = 1 << 20;

/// A reader that CRC-32s what passes through it.
struct Crc<R> {
    inner: R,
    hasher: crc32fast::Hasher,
    read: u64,
}

impl<R: Read> Read for Crc<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or(&[]));
        self.read += n as u64;
        Ok(n)
    }
}

impl Packed {
    fn open<'m>(
        &self,
        path: &Path,
        map: &'m [u8],
    ) -> Result<Crc<Box<dyn Read + 'm>>, ConvertError> {
        let raw = map.get(self.raw.clone()).ok_or_else(|| {
            ConvertError::format(
                path,
                format!("zip member `{}` outside the file", self.member),
            )
        })?;
        let r = tensorseal_codec::zip_member(self.method, raw, self.size, DICT_LIMIT)
            .map_err(|e| self.err(path, e))?;
        Ok(Crc {
            inner: r,
            hasher: crc32fast::Hasher::new(),
            read: 0,
        })
    }

    fn err(&self, path: &Path, e: tensorseal_codec::CodecError) -> ConvertError {
        ConvertError::format(path, format!("zip member `{}`: {e}", self.member))
    }

    fn io_err(&self, path: &Path, e: std::io::Error) -> ConvertError {
        self.err(path, tensorseal_codec::CodecError::from_io("zip member", e))
    }

    /// Decodes bytes `from..from + len` of the member, handing them to `sink` in pieces of
    /// at most [`STREAM_CHUNK`]; bytes before `from` go through the same buffer, bytes
    /// after the range are not decoded. When the range reaches the declared end, the
    /// stream must end there and its CRC-32 must match, as torch and zipfile require.
    pub(super) fn stream(
        &self,
        path: &Path,
        map: &[u8],
        from: u64,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), ConvertError>,
    ) -> Result<(), ConvertError> {
        let end = from
            .checked_add(len)
            .filter(|&e| e <= self.size)
            .ok_or_else(|| {
                ConvertError::format(
                    path,
                    format!(
                        "bytes {from}+{len} of zip member `{}` are past its size {}",
                        self.member, self.size
                    ),
                )
            })?;
        let mut r = self.open(path, map)?;
        let skipped = tensorseal_codec::skip(&mut r, from).map_err(|e| self.io_err(path, e))?;
        let short = |got: u64| {
            ConvertError::format(
                path,
                format!(
                    "zip member `{}` decompresses to {got} bytes, fewer than the {} it declares",
                    self.member, self.size
                ),
            )
        };
        if skipped < from {
            return Err(short(skipped));
        }
        let mut buf = vec![
            0u8;
            STREAM_CHUNK
                .min(usize::try_from(len).unwrap_or(STREAM_CHUNK))
                .max(1)
        ];
        let mut left = len;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let piece = buf.get_mut(..want).unwrap_or(&mut []);
            let n = r.read(piece).map_err(|e| self.io_err(path, e))?;
            if n == 0 {
                return Err(short(r.read));
            }
            sink(piece.get(..n).unwrap_or(&[]))?;
            left -= n as u64;
        }
        if end == self.size {
            let mut probe = [0u8; 1];
            if r.read(&mut probe).map_err(|e| self.io_err(path, e))? != 0 {
                return Err(ConvertError::format(
                    path,
                    format!(
                        "zip member `{}` decompresses to more than the {} bytes it declares",
                        self.member, self.size
                    ),
                ));
            }
            let crc = r.hasher.clone().finalize();
            if crc != self.crc {
                return Err(ConvertError::format(
                    path,
                    format!(
                        "zip member `{}` has CRC-32 0x{crc:08x}, the archive records 0x{:08x}",
                        self.member, self.crc
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The first `len` bytes of the member (fewer if it is shorter).
    pub(super) fn prefix(
        &self,
        path: &Path,
        map: &[u8],
        len: u64,
    ) -> Result<Vec<u8>, ConvertError> {
        let mut out = Vec::new();
        let mut r = self.open(path, map)?;
        (&mut r)
            .take(len.min(self.size))
            .read_to_end(&mut out)
            .map_err(|e| self.io_err(path, e))?;
        Ok(out)
    }
}
