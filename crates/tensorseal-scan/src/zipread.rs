//! A small, bounds-checked reader of zip *record headers*: end of central directory (zip64
//! included), central directory entries, local file headers and data descriptors.
//!
//! It exists because the scanner must see both views of an archive (the central directory
//! that Python's `zipfile` and torch read, and the local headers that streaming readers
//! read) and report where they disagree. Decompression is done by `flate2` on the exact
//! byte range; every length read from the file is checked against the file before use.

use std::io::{self, Read};

use crate::source::{read_range, read_upto, Source};

/// Central directory entry signature.
pub const CENTRAL_SIG: u32 = 0x0201_4b50;
/// Local file header signature.
pub const LOCAL_SIG: u32 = 0x0403_4b50;
/// End of central directory signature.
pub const EOCD_SIG: u32 = 0x0605_4b50;
/// Zip64 end of central directory record signature.
pub const EOCD64_SIG: u32 = 0x0606_4b50;
/// Zip64 end of central directory locator signature.
pub const EOCD64_LOCATOR_SIG: u32 = 0x0706_4b50;
/// Optional data descriptor signature.
pub const DESCRIPTOR_SIG: u32 = 0x0807_4b50;

/// Most central directory bytes read (a directory larger than this is refused).
pub const MAX_CENTRAL_DIR: u64 = 256 << 20;

/// Why the zip structure could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    /// No end-of-central-directory record in the last 64 KiB.
    #[error("no end of central directory record found")]
    NoEocd,
    /// A record points outside the file or is cut short.
    #[error("{what} at offset {offset} runs past the end of the file ({len} bytes)")]
    OutOfBounds {
        /// Which record.
        what: &'static str,
        /// Where it was expected.
        offset: u64,
        /// File length.
        len: u64,
    },
    /// A record does not start with its signature.
    #[error("{what} at offset {offset}: bad signature 0x{found:08x}")]
    BadSignature {
        /// Which record.
        what: &'static str,
        /// Where.
        offset: u64,
        /// The four bytes found.
        found: u32,
    },
    /// The central directory is larger than [`MAX_CENTRAL_DIR`].
    #[error("central directory of {size} bytes exceeds the limit of {MAX_CENTRAL_DIR}")]
    CentralDirTooLarge {
        /// Declared size.
        size: u64,
    },
    /// An I/O error.
    // The I/O error is part of the message, and so not also a `source()`.
    #[error("read error: {0}")]
    Io(io::Error),
}

impl From<io::Error> for ZipError {
    fn from(e: io::Error) -> Self {
        ZipError::Io(e)
    }
}

/// A little-endian cursor over a byte slice that never panics.
struct Cur<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cur<'a> {
    fn new(b: &'a [u8]) -> Self {
        Cur { b, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|s| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_le_bytes(a)
        })
    }
}

/// The end of central directory, merged with its zip64 record when present.
#[derive(Debug, Clone)]
pub struct Eocd {
    /// Offset of the EOCD record.
    pub offset: u64,
    /// Number of entries declared.
    pub entries: u64,
    /// Central directory size declared.
    pub cd_size: u64,
    /// Central directory offset declared (relative to the archive start).
    pub cd_offset: u64,
    /// Bytes before the archive (self-extractor style prefix): where offsets really start.
    pub base: u64,
    /// Whether a zip64 record was used.
    pub zip64: bool,
    /// Length of the archive comment.
    pub comment_len: u16,
}

/// A central directory entry.
#[derive(Debug, Clone)]
pub struct CentralEntry {
    /// Offset of this record.
    pub record_offset: u64,
    /// Raw name bytes.
    pub name: Vec<u8>,
    /// General-purpose flag bits.
    pub flags: u16,
    /// Compression method.
    pub method: u16,
    /// CRC-32 of the uncompressed content.
    pub crc: u32,
    /// Compressed size.
    pub csize: u64,
    /// Uncompressed size.
    pub usize: u64,
    /// Offset of the local header (absolute, base included).
    pub local_offset: u64,
}

/// A local file header.
#[derive(Debug, Clone)]
pub struct LocalHeader {
    /// Offset of this header.
    pub offset: u64,
    /// Raw name bytes.
    pub name: Vec<u8>,
    /// General-purpose flag bits.
    pub flags: u16,
    /// Compression method.
    pub method: u16,
    /// CRC-32 (zero when a data descriptor follows).
    pub crc: u32,
    /// Compressed size (zero when a data descriptor follows).
    pub csize: u64,
    /// Uncompressed size (zero when a data descriptor follows).
    pub usize: u64,
    /// Where the member's data starts.
    pub data_start: u64,
    /// Whether a zip64 extra field was present.
    pub zip64: bool,
}

/// A data descriptor found after a member's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// CRC-32.
    pub crc: u32,
    /// Compressed size.
    pub csize: u64,
    /// Uncompressed size.
    pub usize: u64,
    /// Offset just past the descriptor.
    pub end: u64,
}

fn sig_at(src: &dyn Source, offset: u64) -> Option<u32> {
    let b = read_range(src, offset, 4).ok()?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Finds and parses the end of central directory (and its zip64 record).
pub fn read_eocd(src: &dyn Source) -> Result<Eocd, ZipError> {
    let len = src.len();
    let window = 22 + 65535u64;
    let start = len.saturating_sub(window);
    let tail = read_upto(src, start, window)?;
    let pos = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail.get(i..i + 4) == Some(&EOCD_SIG.to_le_bytes()[..]))
        .ok_or(ZipError::NoEocd)?;
    let offset = start + pos as u64;
    let rec = tail.get(pos..).unwrap_or(&[]);
    let mut c = Cur::new(rec);
    let oob = || ZipError::OutOfBounds {
        what: "end of central directory",
        offset,
        len,
    };
    c.u32().ok_or_else(oob)?;
    let _disk = c.u16().ok_or_else(oob)?;
    let _cd_disk = c.u16().ok_or_else(oob)?;
    let _entries_disk = c.u16().ok_or_else(oob)?;
    let entries16 = c.u16().ok_or_else(oob)?;
    let size32 = c.u32().ok_or_else(oob)?;
    let off32 = c.u32().ok_or_else(oob)?;
    let comment_len = c.u16().ok_or_else(oob)?;
    let mut eocd = Eocd {
        offset,
        entries: u64::from(entries16),
        cd_size: u64::from(size32),
        cd_offset: u64::from(off32),
        base: 0,
        zip64: false,
        comment_len,
    };
    // zip64: locator right before the EOCD.
    if offset >= 20 && sig_at(src, offset - 20) == Some(EOCD64_LOCATOR_SIG) {
        let loc = read_range(src, offset - 20, 20)?;
        let mut c = Cur::new(&loc);
        c.take(8);
        let rec64 = c.u64().unwrap_or(u64::MAX);
        if let Ok(r) = read_range(src, rec64, 56) {
            let mut c = Cur::new(&r);
            if c.u32() == Some(EOCD64_SIG) {
                c.take(8 + 2 + 2 + 4 + 4 + 8);
                let entries = c.u64().unwrap_or(0);
                let size = c.u64().unwrap_or(0);
                let off = c.u64().unwrap_or(0);
                eocd.entries = entries;
                eocd.cd_size = size;
                eocd.cd_offset = off;
                eocd.zip64 = true;
                // Where the CD should end: right before the zip64 record.
                eocd.base = rec64.saturating_sub(off.saturating_add(size));
                return Ok(eocd);
            }
        }
    }
    eocd.base = offset.saturating_sub(eocd.cd_offset.saturating_add(eocd.cd_size));
    Ok(eocd)
}

/// Reads every central directory entry. Stops at `max_entries`.
pub fn read_central(
    src: &dyn Source,
    eocd: &Eocd,
    max_entries: usize,
) -> Result<Vec<CentralEntry>, ZipError> {
    if eocd.cd_size > MAX_CENTRAL_DIR {
        return Err(ZipError::CentralDirTooLarge { size: eocd.cd_size });
    }
    let start = eocd.cd_offset.saturating_add(eocd.base);
    let cd = read_range(src, start, eocd.cd_size).map_err(|_| ZipError::OutOfBounds {
        what: "central directory",
        offset: start,
        len: src.len(),
    })?;
    let mut out = Vec::new();
    let mut c = Cur::new(&cd);
    while c.pos < cd.len() && out.len() < max_entries {
        let record_offset = start + c.pos as u64;
        let oob = || ZipError::OutOfBounds {
            what: "central directory entry",
            offset: record_offset,
            len: src.len(),
        };
        let sig = c.u32().ok_or_else(oob)?;
        if sig != CENTRAL_SIG {
            if out.len() as u64 >= eocd.entries {
                break; // trailing bytes (e.g. zip64 records inside the declared size)
            }
            return Err(ZipError::BadSignature {
                what: "central directory entry",
                offset: record_offset,
                found: sig,
            });
        }
        c.take(4).ok_or_else(oob)?; // versions
        let flags = c.u16().ok_or_else(oob)?;
        let method = c.u16().ok_or_else(oob)?;
        c.take(4).ok_or_else(oob)?; // time, date
        let crc = c.u32().ok_or_else(oob)?;
        let csize32 = c.u32().ok_or_else(oob)?;
        let usize32 = c.u32().ok_or_else(oob)?;
        let name_len = c.u16().ok_or_else(oob)?;
        let extra_len = c.u16().ok_or_else(oob)?;
        let comment_len = c.u16().ok_or_else(oob)?;
        let disk16 = c.u16().ok_or_else(oob)?;
        c.take(6).ok_or_else(oob)?; // attributes
        let off32 = c.u32().ok_or_else(oob)?;
        let name = c.take(name_len.into()).ok_or_else(oob)?.to_vec();
        let extra = c.take(extra_len.into()).ok_or_else(oob)?;
        c.take(comment_len.into()).ok_or_else(oob)?;
        let mut usize = u64::from(usize32);
        let mut csize = u64::from(csize32);
        let mut off = u64::from(off32);
        if let Some(z) = find_extra(extra, 0x0001) {
            let mut zc = Cur::new(z);
            if usize32 == u32::MAX {
                usize = zc.u64().unwrap_or(usize);
            }
            if csize32 == u32::MAX {
                csize = zc.u64().unwrap_or(csize);
            }
            if off32 == u32::MAX {
                off = zc.u64().unwrap_or(off);
            }
            let _ = disk16;
        }
        out.push(CentralEntry {
            record_offset,
            name,
            flags,
            method,
            crc,
            csize,
            usize,
            local_offset: off.saturating_add(eocd.base),
        });
    }
    Ok(out)
}

fn find_extra(extra: &[u8], id: u16) -> Option<&[u8]> {
    let mut c = Cur::new(extra);
    while let (Some(tag), Some(len)) = (c.u16(), c.u16()) {
        let data = c.take(len.into())?;
        if tag == id {
            return Some(data);
        }
    }
    None
}

/// Reads the local header at `offset`.
pub fn read_local(src: &dyn Source, offset: u64) -> Result<LocalHeader, ZipError> {
    let oob = || ZipError::OutOfBounds {
        what: "local file header",
        offset,
        len: src.len(),
    };
    let fixed = read_range(src, offset, 30).map_err(|_| oob())?;
    let mut c = Cur::new(&fixed);
    let sig = c.u32().ok_or_else(oob)?;
    if sig != LOCAL_SIG {
        return Err(ZipError::BadSignature {
            what: "local file header",
            offset,
            found: sig,
        });
    }
    c.take(2).ok_or_else(oob)?;
    let flags = c.u16().ok_or_else(oob)?;
    let method = c.u16().ok_or_else(oob)?;
    c.take(4).ok_or_else(oob)?;
    let crc = c.u32().ok_or_else(oob)?;
    let csize32 = c.u32().ok_or_else(oob)?;
    let usize32 = c.u32().ok_or_else(oob)?;
    let name_len = c.u16().ok_or_else(oob)?;
    let extra_len = c.u16().ok_or_else(oob)?;
    let var = read_range(src, offset + 30, u64::from(name_len) + u64::from(extra_len))
        .map_err(|_| oob())?;
    let name = var.get(..name_len.into()).unwrap_or(&[]).to_vec();
    let extra = var.get(name_len.into()..).unwrap_or(&[]);
    let mut usize = u64::from(usize32);
    let mut csize = u64::from(csize32);
    let mut zip64 = false;
    if let Some(z) = find_extra(extra, 0x0001) {
        zip64 = true;
        let mut zc = Cur::new(z);
        if usize32 == u32::MAX {
            usize = zc.u64().unwrap_or(usize);
        }
        if csize32 == u32::MAX {
            csize = zc.u64().unwrap_or(csize);
        }
    }
    Ok(LocalHeader {
        offset,
        name,
        flags,
        method,
        crc,
        csize,
        usize,
        data_start: offset + 30 + u64::from(name_len) + u64::from(extra_len),
        zip64,
    })
}

/// Reads the data descriptor that follows data ending at `data_end`. Tries the 32-bit and the
/// zip64 layouts and keeps the one followed by another zip record.
pub fn read_descriptor(src: &dyn Source, data_end: u64, zip64_first: bool) -> Option<Descriptor> {
    let raw = read_upto(src, data_end, 28).ok()?;
    let (skip, body) = if raw.get(..4) == Some(&DESCRIPTOR_SIG.to_le_bytes()[..]) {
        (4usize, raw.get(4..)?)
    } else {
        (0, &raw[..])
    };
    let parse = |wide: bool| -> Option<Descriptor> {
        let mut c = Cur::new(body);
        let crc = c.u32()?;
        let (cs, us) = if wide {
            (c.u64()?, c.u64()?)
        } else {
            (u64::from(c.u32()?), u64::from(c.u32()?))
        };
        Some(Descriptor {
            crc,
            csize: cs,
            usize: us,
            end: data_end + (skip + c.pos) as u64,
        })
    };
    let followed = |d: &Descriptor| {
        d.end == src.len()
            || matches!(
                sig_at(src, d.end),
                Some(LOCAL_SIG | CENTRAL_SIG | EOCD_SIG | EOCD64_SIG)
            )
    };
    let order = if zip64_first {
        [true, false]
    } else {
        [false, true]
    };
    order
        .iter()
        .filter_map(|&w| parse(w))
        .find(followed)
        .or_else(|| parse(order[0]))
}

/// A reader over a byte range of a source.
pub struct RangeReader<'a> {
    src: &'a dyn Source,
    pos: u64,
    end: u64,
}

impl<'a> RangeReader<'a> {
    /// Reads `src[start..end]` (end is clamped to the source length).
    pub fn new(src: &'a dyn Source, start: u64, end: u64) -> Self {
        RangeReader {
            src,
            pos: start,
            end: end.min(src.len()),
        }
    }
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left).min(1 << 20) as usize;
        if n == 0 {
            return Ok(0);
        }
        let dst = buf.get_mut(..n).ok_or(io::ErrorKind::InvalidInput)?;
        self.src.read_at(self.pos, dst)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// The outcome of decompressing a member.
pub struct Inflated {
    /// The bytes (at most the limit asked for).
    pub data: Vec<u8>,
    /// Whether the member had more bytes than the limit (not all read).
    pub truncated: bool,
    /// Whether the deflate stream was corrupt.
    pub corrupt: Option<String>,
}

/// Decompresses `csize` bytes at `data_start` with `method` (those Python's `zipfile`
/// reads: stored, deflate, bzip2, LZMA, zstd), keeping at most `limit` bytes; `declared`
/// is the uncompressed size the archive records (LZMA stops there, as `zipfile` does).
/// Returns `None` for methods no loader reads.
pub fn inflate(
    src: &dyn Source,
    data_start: u64,
    csize: u64,
    method: u16,
    declared: u64,
    limit: u64,
) -> Option<Inflated> {
    let end = data_start.saturating_add(csize);
    let raw = io::BufReader::with_capacity(64 << 10, RangeReader::new(src, data_start, end));
    let reader: Box<dyn Read + '_> = if method == 93 {
        // Python 3.14's zipfile reads zstd members.
        Box::new(tensorseal_codec::Decoder::new(
            tensorseal_codec::Codec::Zstd,
            raw,
            DICT_LIMIT,
        ))
    } else {
        match tensorseal_codec::zip_member(method, raw, declared, DICT_LIMIT) {
            Ok(r) => r,
            Err(tensorseal_codec::CodecError::UnsupportedMethod(_)) => return None,
            Err(e) => {
                return Some(Inflated {
                    data: Vec::new(),
                    truncated: e.is_limit(),
                    corrupt: Some(e.to_string()),
                })
            }
        }
    };
    let d = tensorseal_codec::read_bounded(reader, limit, "zip member");
    let (truncated, corrupt) = match d.error {
        None => (false, None),
        Some(tensorseal_codec::CodecError::ExceedsLimit { .. }) => (true, None),
        Some(e) => (e.is_limit(), Some(e.to_string())),
    };
    Some(Inflated {
        data: d.data,
        truncated,
        corrupt,
    })
}

/// Largest LZMA dictionary or zstd window a member may declare.
pub const DICT_LIMIT: u64 = 256 << 20;

/// A human name for a compression method.
pub fn method_name(m: u16) -> String {
    match m {
        0 => "stored".into(),
        8 => "deflate".into(),
        9 => "deflate64".into(),
        12 => "bzip2".into(),
        14 => "lzma".into(),
        93 => "zstd".into(),
        95 => "xz".into(),
        99 => "aes".into(),
        other => format!("method {other}"),
    }
}
