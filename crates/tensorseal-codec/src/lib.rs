//! Bounded, streaming decompression of the formats that Python model loaders open
//! transparently.
//!
//! `joblib.load` and `pandas.read_pickle` decompress gzip, zlib, bz2, xz, lzma-alone, zstd
//! and lz4 files before unpickling them; `zipfile` (and so `numpy.load` on an `.npz`, and
//! `torch.load`) reads stored, deflate, bzip2 and LZMA members. This crate decodes all of
//! them with pure-Rust decoders, as [`Read`] streams, so that a caller holds a buffer and
//! never a whole member.
//!
//! Every stream is bounded:
//! - [`Bounded`] caps the bytes produced and reports [`CodecError::ExceedsLimit`], distinct
//!   from [`CodecError::Corrupt`];
//! - dictionaries and windows that a stream declares are checked against a memory limit
//!   before anything is allocated for them ([`CodecError::TooMuchMemory`]).
//!
//! Concatenated streams (gzip members, zlib, bz2 and lzma-alone streams, zstd and lz4
//! frames, skippable frames) are decoded one after the other, as Python does; bytes after
//! the last stream that do not start another one are reported as corrupt rather than
//! silently skipped.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::io::{self, BufRead, Read};

/// A compressed wrapper around a whole file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// gzip (RFC 1952), any number of members.
    Gzip,
    /// zlib (RFC 1950) streams, as joblib writes them.
    Zlib,
    /// bzip2 streams.
    Bzip2,
    /// xz streams.
    Xz,
    /// The legacy `.lzma` ("lzma-alone") format.
    LzmaAlone,
    /// Zstandard frames (and skippable frames).
    Zstd,
    /// LZ4 frames (and skippable frames).
    Lz4,
}

impl Codec {
    /// Lowercase name, as used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zlib => "zlib",
            Codec::Bzip2 => "bzip2",
            Codec::Xz => "xz",
            Codec::LzmaAlone => "lzma",
            Codec::Zstd => "zstd",
            Codec::Lz4 => "lz4",
        }
    }

    /// The file extension pandas associates with this codec (`None`: pandas does not infer
    /// it from a name; joblib still detects it by content).
    pub fn extension(self) -> Option<&'static str> {
        match self {
            Codec::Gzip => Some("gz"),
            Codec::Bzip2 => Some("bz2"),
            Codec::Xz => Some("xz"),
            Codec::Zstd => Some("zst"),
            Codec::LzmaAlone => Some("lzma"),
            Codec::Lz4 => Some("lz4"),
            Codec::Zlib => Some("z"),
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The xz stream header magic.
pub const XZ_MAGIC: &[u8; 6] = b"\xfd7zXZ\x00";
/// The zstd frame magic (little-endian 0xFD2FB528).
pub const ZSTD_MAGIC: &[u8; 4] = b"\x28\xb5\x2f\xfd";
/// The lz4 frame magic (little-endian 0x184D2204).
pub const LZ4_MAGIC: &[u8; 4] = b"\x04\x22\x4d\x18";

fn is_zstd_skippable(b: &[u8]) -> bool {
    b.len() >= 4 && b[0] & 0xf0 == 0x50 && b[1..4] == [0x2a, 0x4d, 0x18]
}

/// Whether `b` starts with a plausible lzma-alone header: a properties byte below 225, a
/// dictionary size of the form 2^n or 2^n + 2^(n-1) (or all ones), and an uncompressed
/// size that is unknown (all ones) or below 2^38. These are liblzma's checks when it
/// auto-detects the format (`lzma.open`, `pandas.read_pickle(..., compression="xz")`).
pub fn is_lzma_alone(b: &[u8]) -> bool {
    let Some(h) = b.get(..13) else {
        return false;
    };
    if h[0] >= 9 * 5 * 5 {
        return false;
    }
    let dict = u32::from_le_bytes([h[1], h[2], h[3], h[4]]);
    let dict_ok = dict == u32::MAX || {
        let d = dict.max(1);
        let top = 31 - d.leading_zeros();
        let p = 1u32 << top;
        d == p || (top > 0 && d == p + (p >> 1))
    };
    let mut s = [0u8; 8];
    s.copy_from_slice(&h[5..13]);
    let size = u64::from_le_bytes(s);
    dict_ok && (size == u64::MAX || size < 1 << 38)
}

/// A zlib header with a 32 KiB window (CMF 0x78), the only one joblib recognises. Other
/// window sizes are not taken for zlib: `(S`, a pickle's MARK then STRING, is a valid zlib
/// header too.
fn is_zlib_header(b: &[u8]) -> bool {
    match b {
        [0x78, flg, ..] => (0x7800u16 | u16::from(*flg)).is_multiple_of(31),
        _ => false,
    }
}

/// Identifies a compressed wrapper from the first bytes of a file (at least 13 bytes are
/// needed to recognise lzma-alone).
pub fn sniff(prefix: &[u8]) -> Option<Codec> {
    if prefix.starts_with(&[0x1f, 0x8b]) {
        Some(Codec::Gzip)
    } else if prefix.starts_with(b"BZh") {
        Some(Codec::Bzip2)
    } else if prefix.starts_with(XZ_MAGIC) {
        Some(Codec::Xz)
    } else if prefix.starts_with(ZSTD_MAGIC) || is_zstd_skippable(prefix) {
        Some(Codec::Zstd)
    } else if prefix.starts_with(LZ4_MAGIC) {
        Some(Codec::Lz4)
    } else if is_zlib_header(prefix) {
        Some(Codec::Zlib)
    } else if is_lzma_alone(prefix) {
        Some(Codec::LzmaAlone)
    } else {
        None
    }
}

/// Why a stream could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The stream decodes to more than the limit.
    #[error("decompressed content exceeds the limit of {limit} bytes")]
    ExceedsLimit {
        /// The limit.
        limit: u64,
    },
    /// The stream declares a dictionary or window larger than allowed.
    #[error(
        "{codec} stream needs {need} bytes of dictionary or window, over the limit of {limit}"
    )]
    TooMuchMemory {
        /// The codec.
        codec: &'static str,
        /// What the stream declares.
        need: u64,
        /// The limit.
        limit: u64,
    },
    /// The compressed data is invalid or truncated.
    #[error("{codec} data is corrupt: {detail}")]
    Corrupt {
        /// The codec (or zip method).
        codec: &'static str,
        /// What the decoder said.
        detail: String,
    },
    /// A zip compression method that Python's `zipfile` does not read either.
    #[error("zip compression method {0} is not supported")]
    UnsupportedMethod(u16),
    /// Reading the compressed input failed.
    #[error("read failed: {0}")]
    Io(io::Error),
}

impl CodecError {
    /// Whether this is a size or memory bound (not corruption).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            CodecError::ExceedsLimit { .. } | CodecError::TooMuchMemory { .. }
        )
    }

    /// Recovers a `CodecError` carried through an [`io::Error`] by a decoder, or classifies
    /// a decoder's own error as corruption of `codec`.
    pub fn from_io(codec: &'static str, e: io::Error) -> CodecError {
        if e.get_ref().is_some_and(|r| r.is::<CodecError>()) {
            if let Some(Ok(c)) = e.into_inner().map(|b| b.downcast::<CodecError>()) {
                return *c;
            }
            return CodecError::Corrupt {
                codec,
                detail: "unknown".into(),
            };
        }
        match e.kind() {
            io::ErrorKind::OutOfMemory => CodecError::TooMuchMemory {
                codec,
                need: 0,
                limit: 0,
            },
            io::ErrorKind::Interrupted | io::ErrorKind::PermissionDenied => CodecError::Io(e),
            _ => CodecError::Corrupt {
                codec,
                detail: e.to_string(),
            },
        }
    }

    fn into_io(self) -> io::Error {
        io::Error::other(self)
    }
}

/// Bounds for one stream.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes produced.
    pub max_output: u64,
    /// Largest dictionary or window a stream may declare.
    pub max_memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_output: 512 << 20,
            max_memory: 256 << 20,
        }
    }
}

/// A [`BufRead`] that can take back bytes a decoder read ahead.
struct Pushback<R> {
    back: Vec<u8>,
    pos: usize,
    inner: R,
}

impl<R: BufRead> Pushback<R> {
    fn new(inner: R) -> Self {
        Pushback {
            back: Vec::new(),
            pos: 0,
            inner,
        }
    }

    fn unread(&mut self, mut bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        bytes.extend_from_slice(self.back.get(self.pos..).unwrap_or(&[]));
        self.back = bytes;
        self.pos = 0;
    }

    /// Up to `n` bytes of what comes next, without consuming them.
    fn peek(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let chunk = self.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            let take = chunk.len().min(n - got.len());
            got.extend_from_slice(chunk.get(..take).unwrap_or(&[]));
            self.consume(take);
        }
        self.unread(got.clone());
        Ok(got)
    }

    fn at_end(&mut self) -> io::Result<bool> {
        Ok(self.fill_buf()?.is_empty())
    }
}

impl<R: BufRead> Read for Pushback<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        if let (Some(d), Some(s)) = (buf.get_mut(..n), avail.get(..n)) {
            d.copy_from_slice(s);
        }
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Pushback<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos < self.back.len() {
            return Ok(self.back.get(self.pos..).unwrap_or(&[]));
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        if self.pos < self.back.len() {
            self.pos = (self.pos + amt).min(self.back.len());
            if self.pos == self.back.len() {
                self.back.clear();
                self.pos = 0;
            }
        } else {
            self.inner.consume(amt);
        }
    }
}

enum Stage<R: BufRead> {
    Between(Pushback<R>),
    Gzip(flate2::bufread::GzDecoder<Pushback<R>>),
    Zlib(flate2::bufread::ZlibDecoder<Pushback<R>>),
    Bzip2(bzip2::bufread::BzDecoder<Pushback<R>>),
    Xz(lzma_rust2::XzReader<Pushback<R>>),
    Lzma(lzma_rust2::LzmaReader<Pushback<R>>),
    Zstd(ruzstd::decoding::StreamingDecoder<Pushback<R>, ruzstd::decoding::FrameDecoder>),
    Lz4(lz4_flex::frame::FrameDecoder<Pushback<R>>),
    Done,
}

/// Decodes a wrapper stream (every concatenated stream of it), unbounded in output: wrap it
/// in [`Bounded`]. Dictionaries and windows are bounded by `max_memory`.
pub struct Decoder<R: BufRead> {
    codec: Codec,
    stage: Stage<R>,
    max_memory: u64,
    streams: u64,
}

impl<R: BufRead> Decoder<R> {
    /// A decoder of `codec` reading `input`.
    pub fn new(codec: Codec, input: R, max_memory: u64) -> Self {
        Decoder {
            codec,
            stage: Stage::Between(Pushback::new(input)),
            max_memory,
            streams: 0,
        }
    }

    fn corrupt(&self, detail: impl Into<String>) -> io::Error {
        CodecError::Corrupt {
            codec: self.codec.name(),
            detail: detail.into(),
        }
        .into_io()
    }

    /// Starts the next stream, or ends. `pb` is positioned after the previous stream.
    fn start(&mut self, mut pb: Pushback<R>) -> io::Result<Stage<R>> {
        if pb.at_end()? {
            if self.streams == 0 {
                return Err(self.corrupt("empty input"));
            }
            return Ok(Stage::Done);
        }
        let head = pb.peek(13)?;
        let kb = u32::try_from(self.max_memory / 1024).unwrap_or(u32::MAX);
        let stage = match self.codec {
            Codec::Gzip => {
                if !head.starts_with(&[0x1f, 0x8b]) {
                    return Err(self.trailing(&head));
                }
                Stage::Gzip(flate2::bufread::GzDecoder::new(pb))
            }
            Codec::Zlib => {
                if !is_zlib_header(&head) {
                    return Err(self.trailing(&head));
                }
                Stage::Zlib(flate2::bufread::ZlibDecoder::new(pb))
            }
            Codec::Bzip2 => {
                if !head.starts_with(b"BZh") {
                    return Err(self.trailing(&head));
                }
                Stage::Bzip2(bzip2::bufread::BzDecoder::new(pb))
            }
            Codec::Xz => {
                if self.streams > 0 {
                    // The xz reader decodes concatenated streams and padding itself.
                    return Err(self.trailing(&head));
                }
                if !head.starts_with(XZ_MAGIC) {
                    return Err(self.corrupt("no xz stream header"));
                }
                Stage::Xz(lzma_rust2::XzReader::new_mem_limit(pb, true, kb))
            }
            Codec::LzmaAlone => {
                if head.len() < 13 || head[0] >= 225 {
                    return Err(self.trailing(&head));
                }
                let dict = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
                if u64::from(dict) > self.max_memory {
                    return Err(CodecError::TooMuchMemory {
                        codec: "lzma",
                        need: u64::from(dict),
                        limit: self.max_memory,
                    }
                    .into_io());
                }
                let r = lzma_rust2::LzmaReader::new_mem_limit(pb, kb, None)
                    .map_err(|e| self.corrupt(e.to_string()))?;
                Stage::Lzma(r)
            }
            Codec::Zstd => {
                if is_zstd_skippable(&head) {
                    let len = head
                        .get(4..8)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .ok_or_else(|| self.corrupt("truncated skippable frame header"))?;
                    let mut skip = [0u8; 8];
                    pb.read_exact(&mut skip)?;
                    let skipped = io::copy(&mut (&mut pb).take(u64::from(len)), &mut io::sink())?;
                    if skipped != u64::from(len) {
                        return Err(self.corrupt(format!(
                            "skippable frame of {len} bytes is truncated after {skipped}"
                        )));
                    }
                    self.streams += 1;
                    return Ok(Stage::Between(pb));
                }
                if !head.starts_with(ZSTD_MAGIC) {
                    return Err(self.trailing(&head));
                }
                let d = ruzstd::decoding::StreamingDecoder::new_with_max_window_size(
                    pb,
                    self.max_memory,
                )
                .map_err(|e| {
                    let s = e.to_string();
                    if s.contains("indow") {
                        CodecError::TooMuchMemory {
                            codec: "zstd",
                            need: 0,
                            limit: self.max_memory,
                        }
                        .into_io()
                    } else {
                        self.corrupt(s)
                    }
                })?;
                Stage::Zstd(d)
            }
            Codec::Lz4 => {
                if !(head.starts_with(LZ4_MAGIC) || is_zstd_skippable(&head)) {
                    return Err(self.trailing(&head));
                }
                Stage::Lz4(lz4_flex::frame::FrameDecoder::new(pb))
            }
        };
        self.streams += 1;
        Ok(stage)
    }

    fn trailing(&self, head: &[u8]) -> io::Error {
        let shown: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
        self.corrupt(format!(
            "bytes after stream {} do not start another stream (they start {})",
            self.streams,
            shown.join(" ")
        ))
    }

    fn step(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let stage = std::mem::replace(&mut self.stage, Stage::Done);
            let (n, next) = match stage {
                Stage::Done => return Ok(0),
                Stage::Between(pb) => {
                    self.stage = self.start(pb)?;
                    continue;
                }
                Stage::Gzip(mut d) => match d.read(buf)? {
                    0 => (0, Stage::Between(d.into_inner())),
                    n => (n, Stage::Gzip(d)),
                },
                Stage::Zlib(mut d) => match d.read(buf)? {
                    0 => (0, Stage::Between(d.into_inner())),
                    n => (n, Stage::Zlib(d)),
                },
                Stage::Bzip2(mut d) => match d.read(buf)? {
                    0 => (0, Stage::Between(d.into_inner())),
                    n => (n, Stage::Bzip2(d)),
                },
                Stage::Xz(mut d) => match d.read(buf)? {
                    0 => (0, Stage::Between(d.into_inner())),
                    n => (n, Stage::Xz(d)),
                },
                Stage::Lzma(mut d) => match d.read(buf)? {
                    0 => {
                        let (mut pb, rest) = d.into_parts();
                        pb.unread(rest);
                        (0, Stage::Between(pb))
                    }
                    n => (n, Stage::Lzma(d)),
                },
                Stage::Zstd(mut d) => match d.read(buf)? {
                    0 => (0, Stage::Between(d.into_inner())),
                    n => (n, Stage::Zstd(d)),
                },
                Stage::Lz4(mut d) => match d.read(buf)? {
                    0 => (0, Stage::Between(d.into_inner())),
                    n => (n, Stage::Lz4(d)),
                },
            };
            self.stage = next;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
        }
    }
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let codec = self.codec.name();
        self.step(buf).map_err(|e| {
            self.stage = Stage::Done;
            match CodecError::from_io(codec, e) {
                CodecError::Io(e) => e,
                other => other.into_io(),
            }
        })
    }
}

/// A [`Read`] that fails with [`CodecError::ExceedsLimit`] once more than `limit` bytes
/// would be produced (the bytes up to the limit are returned first).
pub struct Bounded<R> {
    inner: R,
    limit: u64,
    produced: u64,
}

impl<R: Read> Bounded<R> {
    /// Caps `inner` at `limit` bytes.
    pub fn new(inner: R, limit: u64) -> Self {
        Bounded {
            inner,
            limit,
            produced: 0,
        }
    }

    /// Bytes produced so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.produced >= self.limit {
            // One probe byte tells a stream that ends exactly at the limit from one that
            // goes on.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(CodecError::ExceedsLimit { limit: self.limit }.into_io()),
            };
        }
        let room = usize::try_from(self.limit - self.produced).unwrap_or(usize::MAX);
        let n = buf.len().min(room);
        let got = self.inner.read(buf.get_mut(..n).unwrap_or(&mut []))?;
        self.produced += got as u64;
        Ok(got)
    }
}

/// The zip compression methods that Python's `zipfile` reads.
pub fn zip_method_name(method: u16) -> &'static str {
    match method {
        0 => "stored",
        8 => "deflate",
        12 => "bzip2",
        14 => "lzma",
        _ => "unsupported",
    }
}

/// A decoder of one zip member's data (`input` holds exactly its compressed bytes), with
/// the semantics of Python's `zipfile`: method 0 (stored), 8 (deflate), 12 (bzip2, one
/// stream) and 14 (LZMA: a 2-byte version, a 2-byte properties length, 5 bytes of LZMA1
/// properties, then raw LZMA1 data). `declared` is the uncompressed size the archive
/// records: `zipfile` never returns more, so the LZMA decoder stops there.
pub fn zip_member<'a, R: BufRead + 'a>(
    method: u16,
    mut input: R,
    declared: u64,
    max_memory: u64,
) -> Result<Box<dyn Read + 'a>, CodecError> {
    Ok(match method {
        0 => Box::new(input),
        8 => Box::new(MapErr::new(
            "deflate",
            flate2::bufread::DeflateDecoder::new(input),
        )),
        12 => Box::new(MapErr::new("bzip2", bzip2::bufread::BzDecoder::new(input))),
        14 => {
            let mut head = [0u8; 4];
            input
                .read_exact(&mut head)
                .map_err(|e| CodecError::Corrupt {
                    codec: "lzma",
                    detail: format!("zip LZMA header truncated: {e}"),
                })?;
            let psize = u16::from_le_bytes([head[2], head[3]]);
            if psize != 5 {
                return Err(CodecError::Corrupt {
                    codec: "lzma",
                    detail: format!("zip LZMA properties are {psize} bytes, not 5"),
                });
            }
            let mut props = [0u8; 5];
            input
                .read_exact(&mut props)
                .map_err(|e| CodecError::Corrupt {
                    codec: "lzma",
                    detail: format!("zip LZMA properties truncated: {e}"),
                })?;
            if props[0] >= 225 {
                return Err(CodecError::Corrupt {
                    codec: "lzma",
                    detail: format!("invalid LZMA properties byte 0x{:02x}", props[0]),
                });
            }
            let dict = u32::from_le_bytes([props[1], props[2], props[3], props[4]]);
            // The decoder's window never needs to be larger than the output.
            if u64::from(dict).min(declared) > max_memory {
                return Err(CodecError::TooMuchMemory {
                    codec: "lzma",
                    need: u64::from(dict),
                    limit: max_memory,
                });
            }
            let dict = u32::try_from(u64::from(dict).min(declared.max(4096))).unwrap_or(dict);
            let r = lzma_rust2::LzmaReader::new_with_props(input, declared, props[0], dict, None)
                .map_err(|e| CodecError::Corrupt {
                codec: "lzma",
                detail: e.to_string(),
            })?;
            Box::new(MapErr::new("lzma", r))
        }
        other => return Err(CodecError::UnsupportedMethod(other)),
    })
}

/// Turns a decoder's own errors into [`CodecError::Corrupt`] of `codec`.
struct MapErr<R> {
    codec: &'static str,
    inner: R,
}

impl<R> MapErr<R> {
    fn new(codec: &'static str, inner: R) -> Self {
        MapErr { codec, inner }
    }
}

impl<R: Read> Read for MapErr<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .map_err(|e| match CodecError::from_io(self.codec, e) {
                CodecError::Io(e) => e,
                other => other.into_io(),
            })
    }
}

/// What [`read_bounded`] got.
#[derive(Debug)]
pub struct Decoded {
    /// The bytes decoded before the end, the limit or the error.
    pub data: Vec<u8>,
    /// `None` when the stream ended cleanly within the limit.
    pub error: Option<CodecError>,
}

/// Reads all of `r` into memory, up to `limit` bytes. Errors (corruption, the limit) are
/// returned with the bytes decoded before them, which a scanner still looks at.
pub fn read_bounded(r: impl Read, limit: u64, codec: &'static str) -> Decoded {
    let mut b = Bounded::new(r, limit);
    let mut data = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        match b.read(&mut chunk) {
            Ok(0) => return Decoded { data, error: None },
            Ok(n) => data.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Decoded {
                    data,
                    error: Some(CodecError::from_io(codec, e)),
                }
            }
        }
    }
}

/// Decodes a whole wrapper held in memory (bounded by `limits`).
pub fn decode_slice(codec: Codec, input: &[u8], limits: Limits) -> Decoded {
    read_bounded(
        Decoder::new(codec, input, limits.max_memory),
        limits.max_output,
        codec.name(),
    )
}

/// Skips `n` decoded bytes of `r` through a fixed buffer; returns how many were skipped.
pub fn skip(r: &mut dyn Read, n: u64) -> io::Result<u64> {
    io::copy(&mut r.take(n), &mut io::sink())
}
