//! Content-based format identification. Names are never trusted: only bytes decide.

use serde::Serialize;

use tensorseal_codec::Codec;

use crate::pickle_lex::{self, PickleGuess};

/// What a file (or archive member) is, judged by its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// safetensors (8-byte header length + JSON header).
    Safetensors,
    /// A pickle stream (any protocol; joblib/dill-style and stacked pickles included).
    Pickle,
    /// A torch zip checkpoint (`<root>/data.pkl`).
    TorchZip,
    /// A TorchScript archive (zip with `code/` or `constants.pkl`).
    Torchscript,
    /// The legacy (pre-1.6) torch format: magic-number pickle, then more pickles and storages.
    TorchLegacy,
    /// NumPy `.npy`.
    Npy,
    /// NumPy `.npz` (a zip of `.npy` members).
    Npz,
    /// A zip archive of something else.
    Zip,
    /// A tar archive.
    Tar,
    /// gzip-compressed data.
    Gzip,
    /// bzip2, xz, lzma-alone, zlib, zstd or lz4 compressed data, or joblib's old `ZF`
    /// compressed pickle (unpacked and scanned).
    Compressed,
    /// A 7-Zip archive (identified, not unpacked).
    SevenZip,
    /// GGUF (llama.cpp).
    Gguf,
    /// ONNX (protobuf ModelProto).
    Onnx,
    /// HDF5 (Keras `.h5`).
    Hdf5,
    /// Keras v3 `.keras` zip (config.json + model.weights.h5).
    KerasZip,
    /// TensorFlow SavedModel protobuf (`saved_model.pb`).
    TfSavedModel,
    /// An empty file.
    Empty,
    /// None of the above.
    Unknown,
}

impl Format {
    /// The snake_case name used in outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Safetensors => "safetensors",
            Format::Pickle => "pickle",
            Format::TorchZip => "torch_zip",
            Format::Torchscript => "torchscript",
            Format::TorchLegacy => "torch_legacy",
            Format::Npy => "npy",
            Format::Npz => "npz",
            Format::Zip => "zip",
            Format::Tar => "tar",
            Format::Gzip => "gzip",
            Format::Compressed => "compressed",
            Format::SevenZip => "seven_zip",
            Format::Gguf => "gguf",
            Format::Onnx => "onnx",
            Format::Hdf5 => "hdf5",
            Format::KerasZip => "keras_zip",
            Format::TfSavedModel => "tf_saved_model",
            Format::Empty => "empty",
            Format::Unknown => "unknown",
        }
    }

    /// Whether this format holds model weights (the `safetensors-only` policy gate).
    pub fn is_weight_format(self) -> bool {
        matches!(
            self,
            Format::Safetensors
                | Format::Pickle
                | Format::TorchZip
                | Format::Torchscript
                | Format::TorchLegacy
                | Format::Npy
                | Format::Npz
                | Format::Gguf
                | Format::Onnx
                | Format::Hdf5
                | Format::KerasZip
                | Format::TfSavedModel
        )
    }

    /// Whether the content is an archive whose members are scanned.
    pub fn is_container(self) -> bool {
        matches!(
            self,
            Format::TorchZip
                | Format::Torchscript
                | Format::Npz
                | Format::Zip
                | Format::Tar
                | Format::Gzip
                | Format::Compressed
                | Format::KerasZip
        )
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many leading bytes [`identify`] wants to see.
pub const PREFIX_LEN: usize = 64 * 1024;

/// The pickle of the legacy torch magic number 0x1950a86a20f9469cfc6c, as LONG1 payload bytes.
pub const LEGACY_MAGIC_LONG1: [u8; 10] =
    [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The legacy torch magic number in decimal (protocol-0 pickles write it as text).
pub const LEGACY_MAGIC_DECIMAL: &[u8] = b"119547037146038801333356";

/// zip local file header signature.
pub const ZIP_LOCAL_SIG: &[u8; 4] = b"PK\x03\x04";
/// joblib's pre-0.9.3 compressed pickle prefix (`ZF`, a hex length, a zlib stream).
pub const JOBLIB_ZFILE_PREFIX: &[u8; 2] = b"ZF";
/// zip end of central directory signature.
pub const ZIP_EOCD_SIG: &[u8; 4] = b"PK\x05\x06";

/// Identifies the format of content from its first bytes (`prefix`, up to [`PREFIX_LEN`])
/// and total length. Only a leading `PROTO` identifies a pickle here; content this returns
/// as anything but a pickle is still run through the analysis machine by the scanner
/// (`pickles::probe`), because `pickle.load` runs any bytes that start with opcodes. Zip variants (torch, TorchScript, npz, Keras) are refined later from
/// the member list; SavedModel needs the `saved_model.pb` name as a hint, since protobuf
/// has no magic number.
pub fn identify(prefix: &[u8], total: u64, saved_model_name: bool) -> Format {
    if total == 0 {
        return Format::Empty;
    }
    if prefix.starts_with(ZIP_LOCAL_SIG)
        || prefix.starts_with(ZIP_EOCD_SIG)
        || prefix.starts_with(b"PK\x07\x08")
    {
        return Format::Zip;
    }
    if prefix.starts_with(b"\x93NUMPY") {
        return Format::Npy;
    }
    if prefix.starts_with(b"7z\xbc\xaf\x27\x1c") {
        return Format::SevenZip;
    }
    if prefix.starts_with(b"GGUF") {
        return Format::Gguf;
    }
    if is_hdf5(prefix) {
        return Format::Hdf5;
    }
    if prefix.starts_with(&[0x1f, 0x8b]) {
        return Format::Gzip;
    }
    if matches!(
        tensorseal_codec::sniff(prefix),
        Some(Codec::Bzip2 | Codec::Xz | Codec::Zstd | Codec::Lz4)
    ) {
        return Format::Compressed;
    }
    if is_joblib_zfile(prefix) {
        // joblib.load decompresses such a file (its pre-0.9.3 format) and unpickles it.
        return Format::Compressed;
    }
    if looks_like_safetensors(prefix, total) {
        return Format::Safetensors;
    }
    if is_tar(prefix) {
        return Format::Tar;
    }
    // joblib takes any file starting with 0x78 for zlib; a valid zlib header is required
    // here (no pickle starts with 0x78: it is no opcode).
    if tensorseal_codec::sniff(prefix) == Some(Codec::Zlib) {
        return Format::Compressed;
    }
    if pickle_lex::guess(prefix) == PickleGuess::Yes {
        return if is_legacy_torch(prefix) {
            Format::TorchLegacy
        } else {
            Format::Pickle
        };
    }
    // lzma-alone has no magic number; liblzma's own plausibility checks decide, as when
    // `lzma.open` and pandas auto-detect it.
    if tensorseal_codec::sniff(prefix) == Some(Codec::LzmaAlone) {
        return Format::Compressed;
    }
    if saved_model_name && looks_like_protobuf(prefix) {
        return Format::TfSavedModel;
    }
    if looks_like_saved_model(prefix) {
        return Format::TfSavedModel;
    }
    if looks_like_onnx(prefix) {
        return Format::Onnx;
    }
    Format::Unknown
}

/// joblib's pre-0.9.3 header: `ZF` and 19 bytes that Python's `int(text, 16)` reads
/// (surrounding whitespace, a sign, an optional `0x`, hex digits and single underscores).
/// Text that merely starts with "ZF" makes joblib raise before it unpickles anything.
pub fn is_joblib_zfile(prefix: &[u8]) -> bool {
    let Some(field) = prefix
        .strip_prefix(JOBLIB_ZFILE_PREFIX)
        .and_then(|rest| rest.get(..19))
    else {
        return false;
    };
    let t = field.trim_ascii();
    let t = t
        .strip_prefix(b"+")
        .or_else(|| t.strip_prefix(b"-"))
        .unwrap_or(t);
    let t = t
        .strip_prefix(b"0x")
        .or_else(|| t.strip_prefix(b"0X"))
        .map(|r| r.strip_prefix(b"_").unwrap_or(r))
        .unwrap_or(t);
    !t.is_empty()
        && t.first() != Some(&b'_')
        && t.last() != Some(&b'_')
        && !t.windows(2).any(|w| w == b"__")
        && t.iter().all(|c| c.is_ascii_hexdigit() || *c == b'_')
}

fn looks_like_safetensors(prefix: &[u8], total: u64) -> bool {
    let Some(len) = prefix.get(..8) else {
        return false;
    };
    let mut b = [0u8; 8];
    b.copy_from_slice(len);
    let n = u64::from_le_bytes(b);
    // The header must fit, and start with '{' (the reference writer never pads before it).
    n >= 2 && n.saturating_add(8) <= total && prefix.get(8) == Some(&b'{')
}

fn is_hdf5(prefix: &[u8]) -> bool {
    const SIG: &[u8] = b"\x89HDF\r\n\x1a\n";
    [0usize, 512, 1024, 2048, 4096, 8192, 16384, 32768]
        .iter()
        .any(|&o| prefix.get(o..o + SIG.len()) == Some(SIG))
}

/// A tar header: "ustar" magic, or (old v7 tar) a valid header checksum.
pub fn is_tar(prefix: &[u8]) -> bool {
    let Some(h) = prefix.get(..512) else {
        return false;
    };
    if h.get(257..262) == Some(b"ustar") {
        return true;
    }
    tar_checksum_ok(h) && h.first().is_some_and(|&c| c != 0)
}

fn tar_checksum_ok(h: &[u8]) -> bool {
    let Some(field) = h.get(148..156) else {
        return false;
    };
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&c| c == b' ')
        .take_while(|c| (b'0'..=b'7').contains(c))
        .collect();
    if digits.is_empty() {
        return false;
    }
    let Ok(want) = u32::from_str_radix(std::str::from_utf8(&digits).unwrap_or("x"), 8) else {
        return false;
    };
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    sum == want
}

/// Whether the first pickle of a stream is the legacy torch magic number (in any protocol).
pub fn is_legacy_torch(prefix: &[u8]) -> bool {
    let first_end = match pickle_lex::frame(prefix, 0) {
        pickle_lex::Frame::Complete { end, .. } => end,
        _ => prefix.len().min(256),
    };
    let first = prefix.get(..first_end).unwrap_or(prefix);
    contains(first, &LEGACY_MAGIC_LONG1) || contains(first, LEGACY_MAGIC_DECIMAL)
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

/// Offset of the first occurrence of `needle` in `hay` (`memchr`'s SIMD
/// substring search: the scanner runs this over whole pickles and file tails).
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    memchr::memmem::find(hay, needle)
}

fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn looks_like_protobuf(prefix: &[u8]) -> bool {
    let mut pos = 0;
    let Some(tag) = varint(prefix, &mut pos) else {
        return false;
    };
    let field = tag >> 3;
    (1..=1000).contains(&field) && matches!(tag & 7, 0 | 1 | 2 | 5)
}

/// SavedModel: `saved_model_schema_version` (field 1 = 1) then `meta_graphs` (field 2),
/// whose first field is `meta_info_def` (field 1, length-delimited).
fn looks_like_saved_model(prefix: &[u8]) -> bool {
    let mut pos = 0;
    if prefix.first() != Some(&0x08) {
        return false;
    }
    pos += 1;
    if varint(prefix, &mut pos) != Some(1) {
        return false;
    }
    if prefix.get(pos) != Some(&0x12) {
        return false;
    }
    pos += 1;
    if varint(prefix, &mut pos).is_none() {
        return false;
    }
    prefix.get(pos) == Some(&0x0a)
}

/// ONNX ModelProto: starts with `ir_version` (field 1, varint 1..=20), then another known
/// ModelProto field.
fn looks_like_onnx(prefix: &[u8]) -> bool {
    let mut pos = 0;
    if prefix.first() != Some(&0x08) {
        return false;
    }
    pos += 1;
    match varint(prefix, &mut pos) {
        Some(v) if (1..=20).contains(&v) => {}
        _ => return false,
    }
    let Some(tag) = varint(prefix, &mut pos) else {
        return false;
    };
    // producer_name 2, producer_version 3, domain 4, model_version 5, doc_string 6,
    // graph 7, opset_import 8, metadata_props 14, training_info 20, functions 25.
    matches!(
        tag,
        0x12 | 0x1a | 0x22 | 0x28 | 0x32 | 0x3a | 0x42 | 0x72 | 0xa2 | 0xca
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_magics() {
        assert_eq!(identify(b"PK\x03\x04rest", 100, false), Format::Zip);
        assert_eq!(identify(b"\x93NUMPY\x01\x00", 100, false), Format::Npy);
        assert_eq!(identify(b"GGUF\x03\x00\x00\x00", 100, false), Format::Gguf);
        assert_eq!(
            identify(b"7z\xbc\xaf\x27\x1c\x00\x04", 100, false),
            Format::SevenZip
        );
        assert_eq!(identify(b"\x89HDF\r\n\x1a\n", 100, false), Format::Hdf5);
        assert_eq!(identify(b"", 0, false), Format::Empty);
        assert_eq!(identify(b"hello world\n", 12, false), Format::Unknown);
        assert_eq!(
            identify(b"\x08\x07\x12\x07pytorch", 100, false),
            Format::Onnx
        );
        assert_eq!(
            identify(b"\x08\x01\x12\x05\x0a\x03abc", 100, false),
            Format::TfSavedModel
        );
    }

    #[test]
    fn safetensors_vs_pickle() {
        let mut st = 2u64.to_le_bytes().to_vec();
        st.extend_from_slice(b"{}");
        assert_eq!(identify(&st, st.len() as u64, false), Format::Safetensors);
        let pk = b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00}\x94.";
        assert_eq!(identify(pk, pk.len() as u64, false), Format::Pickle);
        let legacy = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02M\xe9\x03.";
        assert_eq!(
            identify(legacy, legacy.len() as u64, false),
            Format::TorchLegacy
        );
    }

    #[test]
    fn joblib_zfile_header() {
        assert!(is_joblib_zfile(b"ZF0x55               x\x9c"));
        assert!(is_joblib_zfile(b"ZF  0x1_f            x"));
        assert!(!is_joblib_zfile(b"ZF is a text file that says so"));
        assert!(!is_joblib_zfile(b"ZF0x55"));
    }

    #[test]
    fn tar_header() {
        let mut h = vec![0u8; 1024];
        h[..5].copy_from_slice(b"a.txt");
        h[257..262].copy_from_slice(b"ustar");
        assert_eq!(identify(&h, 1024, false), Format::Tar);
    }
}
