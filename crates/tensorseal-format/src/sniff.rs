//! Naming what a file is when it is not safetensors.
//!
//! A safetensors file starts with an 8-byte little-endian header length. The
//! readers look at a file's first bytes only once that length proved
//! implausible (over the limit or past the end of the file), and then report
//! [`FormatError::NotSafetensors`] with
//! what the file is and what to do, instead of a header length in the
//! quintillions. [`sniff`] is that look: signatures only, no parsing.

use crate::FormatError;

/// How many leading bytes [`sniff`] looks at (fewer are fine).
pub const SNIFF_LEN: usize = 512;

/// A file format recognised by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileFormat {
    /// A PyTorch checkpoint saved by `torch.save` (a zip with `data.pkl`).
    TorchZip,
    /// A NumPy `.npz` archive (a zip of `.npy` members).
    Npz,
    /// Another zip archive.
    Zip,
    /// A pickle: a legacy (pre-1.6) `torch.save` checkpoint or a plain pickle.
    Pickle,
    /// A NumPy `.npy` array.
    Npy,
    /// A GGUF model (llama.cpp).
    Gguf,
    /// An HDF5 file (Keras `.h5` weights).
    Hdf5,
    /// A gzip-compressed file.
    Gzip,
    /// An ONNX model (protobuf).
    Onnx,
    /// A Git LFS pointer: the file was not downloaded, only its pointer.
    GitLfsPointer,
    /// JSON text (a config or an index file).
    Json,
    /// An HTML page (an error page saved in place of a download).
    Html,
    /// Other text.
    Text,
}

impl FileFormat {
    /// A stable short identifier (`torch-zip`, `npz`, `zip`, `pickle`,
    /// `npy`, `gguf`, `hdf5`, `gzip`, `onnx`, `git-lfs-pointer`, `json`,
    /// `html`, `text`).
    pub fn id(self) -> &'static str {
        match self {
            FileFormat::TorchZip => "torch-zip",
            FileFormat::Npz => "npz",
            FileFormat::Zip => "zip",
            FileFormat::Pickle => "pickle",
            FileFormat::Npy => "npy",
            FileFormat::Gguf => "gguf",
            FileFormat::Hdf5 => "hdf5",
            FileFormat::Gzip => "gzip",
            FileFormat::Onnx => "onnx",
            FileFormat::GitLfsPointer => "git-lfs-pointer",
            FileFormat::Json => "json",
            FileFormat::Html => "html",
            FileFormat::Text => "text",
        }
    }

    /// What the file is, as a noun phrase ("a PyTorch zip checkpoint").
    pub fn description(self) -> &'static str {
        match self {
            FileFormat::TorchZip => "a PyTorch zip checkpoint",
            FileFormat::Npz => "a NumPy .npz archive",
            FileFormat::Zip => "a zip archive",
            FileFormat::Pickle => "a pickle (legacy PyTorch checkpoint or pickled object)",
            FileFormat::Npy => "a NumPy .npy array",
            FileFormat::Gguf => "a GGUF model",
            FileFormat::Hdf5 => "an HDF5 file",
            FileFormat::Gzip => "a gzip-compressed file",
            FileFormat::Onnx => "an ONNX model (protobuf)",
            FileFormat::GitLfsPointer => "a Git LFS pointer, not the file's content",
            FileFormat::Json => "a JSON text file",
            FileFormat::Html => "an HTML page",
            FileFormat::Text => "a text file",
        }
    }

    /// What to do about it.
    pub fn advice(self) -> &'static str {
        match self {
            FileFormat::TorchZip | FileFormat::Pickle | FileFormat::Npy | FileFormat::Npz => {
                "convert it with `tensorseal convert` (which never runs pickled code)"
            }
            FileFormat::Zip => "check what the archive holds (`tensorseal scan` lists it)",
            FileFormat::Gguf => "read it with a GGUF reader (llama.cpp, the `gguf` package)",
            FileFormat::Hdf5 => "read it with h5py or Keras",
            FileFormat::Gzip => "decompress it first",
            FileFormat::Onnx => "read it with onnx or onnxruntime",
            FileFormat::GitLfsPointer => "fetch the content with `git lfs pull`",
            FileFormat::Json => {
                "if it is a `.safetensors.index.json`, open it as a sharded checkpoint"
            }
            FileFormat::Html => "the download probably failed; fetch the file again",
            FileFormat::Text => "check the path",
        }
    }
}

impl std::fmt::Display for FileFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.description())
    }
}

/// Replaces an implausible-header-length error for input starting with
/// `prefix` by [`FormatError::NotSafetensors`] when [`sniff`] names the
/// input; any other error is returned as is.
///
/// A header length past the end of the file followed by `{`, or by nothing,
/// is a truncated safetensors file, whatever its first bytes look like.
pub fn explain(err: FormatError, prefix: &[u8]) -> FormatError {
    let header_len = match err {
        FormatError::HeaderTooLarge { len, .. } => len,
        FormatError::HeaderPastEnd { len, .. } if prefix.get(8).is_some_and(|&b| b != b'{') => len,
        _ => return err,
    };
    match sniff(prefix) {
        Some(format) => FormatError::NotSafetensors { format, header_len },
        None => err,
    }
}

const ZIP_LOCAL: &[u8] = b"PK\x03\x04";
const ZIP_EMPTY: &[u8] = b"PK\x05\x06";

/// What `prefix` (the first bytes of a file, up to [`SNIFF_LEN`]) is, if it
/// is one of the [`FileFormat`]s; `None` when nothing matches. Never panics.
///
/// ```
/// use tensorseal_format::sniff::{sniff, FileFormat};
/// assert_eq!(sniff(b"GGUF\x03\0\0\0"), Some(FileFormat::Gguf));
/// assert_eq!(sniff(b"\x93NUMPY\x01\0"), Some(FileFormat::Npy));
/// assert_eq!(sniff(&[0x10, 0, 0, 0, 0, 0, 0, 0]), None);
/// ```
pub fn sniff(prefix: &[u8]) -> Option<FileFormat> {
    let p = prefix.get(..SNIFF_LEN).unwrap_or(prefix);
    if p.starts_with(ZIP_LOCAL) {
        return Some(zip_kind(p));
    }
    if p.starts_with(ZIP_EMPTY) {
        return Some(FileFormat::Zip);
    }
    if p.starts_with(b"\x93NUMPY") {
        return Some(FileFormat::Npy);
    }
    if p.starts_with(b"GGUF") {
        return Some(FileFormat::Gguf);
    }
    if p.starts_with(b"\x89HDF\r\n\x1a\n") {
        return Some(FileFormat::Hdf5);
    }
    if p.starts_with(&[0x1f, 0x8b]) {
        return Some(FileFormat::Gzip);
    }
    // PROTO opcode with protocol 2..=5 (every pickle torch.save writes starts
    // so), then another opcode: all are printable ASCII or 0x80..=0x98, so a
    // header length (at most 100,000,000: a third byte of at most 5) never
    // matches.
    if let [0x80, 2..=5, 0x20..=0x7e | 0x80..=0x98, ..] = p {
        return Some(FileFormat::Pickle);
    }
    if is_onnx(p) {
        return Some(FileFormat::Onnx);
    }
    text_kind(p)
}

/// Tells a torch checkpoint or `.npz` from another zip by the first member's
/// name (local file header: name length at 26, name at 30).
fn zip_kind(p: &[u8]) -> FileFormat {
    let name = p
        .get(26..28)
        .map(|n| usize::from(u16::from_le_bytes([n[0], n[1]])))
        .and_then(|len| p.get(30..30 + len));
    match name {
        Some(n) if n.ends_with(b".npy") => FileFormat::Npz,
        Some(n) if n.ends_with(b"data.pkl") || n.ends_with(b"/version") || n == b"version" => {
            FileFormat::TorchZip
        }
        Some(n) if n.windows(6).any(|w| w == b"/data/") || n.ends_with(b".storage") => {
            FileFormat::TorchZip
        }
        _ => FileFormat::Zip,
    }
}

/// An ONNX `ModelProto` starts with field 1 (`ir_version`, a small varint)
/// followed by `producer_name` (2), `producer_version` (3), `domain` (4),
/// `model_version` (5), `doc_string` (6), `graph` (7) or `opset_import` (8).
/// The fourth byte (a length or a varint, never 0) keeps a header length
/// prefix (whose fourth byte is 0 up to 16 MiB) from matching.
fn is_onnx(p: &[u8]) -> bool {
    matches!(p, [0x08, 1..=0x20, next, 1..=0xff, ..] if matches!(next, 0x12 | 0x1a | 0x22 | 0x28 | 0x32 | 0x3a | 0x42))
}

fn text_kind(p: &[u8]) -> Option<FileFormat> {
    // A valid UTF-8 prefix (a sequence cut at the end is fine) without
    // control characters other than whitespace.
    let text = match std::str::from_utf8(p) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => std::str::from_utf8(p.get(..e.valid_up_to())?).ok()?,
        Err(_) => return None,
    };
    if text.is_empty()
        || text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x0c'))
    {
        return None;
    }
    let t = text.trim_start_matches('\u{feff}').trim_start();
    if t.starts_with("version https://git-lfs.github.com/spec/") {
        return Some(FileFormat::GitLfsPointer);
    }
    if t.starts_with('{') || t.starts_with('[') {
        return Some(FileFormat::Json);
    }
    let head = t.get(..t.len().min(15)).unwrap_or("").to_ascii_lowercase();
    if head.starts_with("<!doctype html") || head.starts_with("<html") {
        return Some(FileFormat::Html);
    }
    Some(FileFormat::Text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip_with(name: &[u8]) -> Vec<u8> {
        let mut z = b"PK\x03\x04".to_vec();
        z.resize(26, 0);
        z.extend_from_slice(&(name.len() as u16).to_le_bytes());
        z.extend_from_slice(&[0, 0]);
        z.extend_from_slice(name);
        z
    }

    #[test]
    fn signatures() {
        assert_eq!(
            sniff(&zip_with(b"archive/data.pkl")),
            Some(FileFormat::TorchZip)
        );
        assert_eq!(sniff(&zip_with(b"x.npy")), Some(FileFormat::Npz));
        assert_eq!(sniff(&zip_with(b"readme.txt")), Some(FileFormat::Zip));
        assert_eq!(sniff(b"PK\x03\x04"), Some(FileFormat::Zip));
        assert_eq!(sniff(b"\x80\x02\x8a\x0a"), Some(FileFormat::Pickle));
        assert_eq!(sniff(b"\x89HDF\r\n\x1a\n\0"), Some(FileFormat::Hdf5));
        assert_eq!(sniff(b"\x1f\x8b\x08\0"), Some(FileFormat::Gzip));
        assert_eq!(sniff(b"\x08\x07\x12\x07pytorch"), Some(FileFormat::Onnx));
        assert_eq!(
            sniff(b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n"),
            Some(FileFormat::GitLfsPointer)
        );
        assert_eq!(sniff(b"  {\"weight_map\": {}}"), Some(FileFormat::Json));
        assert_eq!(sniff(b"<!DOCTYPE html><html>"), Some(FileFormat::Html));
        assert_eq!(sniff(b"hello world\n"), Some(FileFormat::Text));
        // A UTF-8 sequence cut by the prefix end is still text.
        assert_eq!(
            sniff("caf\u{e9}".as_bytes().get(..4).unwrap()),
            Some(FileFormat::Text)
        );
    }

    #[test]
    fn explain_keeps_truncated_safetensors() {
        let too_large = || FormatError::HeaderTooLarge {
            len: 1 << 60,
            limit: crate::MAX_HEADER_LEN,
        };
        let e = explain(too_large(), &zip_with(b"archive/data.pkl"));
        assert_eq!(e.kind(), "not_safetensors");
        assert!(e.to_string().contains("PyTorch zip checkpoint"), "{e}");
        assert!(e.to_string().contains("tensorseal convert"), "{e}");
        assert_eq!(explain(too_large(), &[0xff; 8]).kind(), "header_too_large");
        // 0x280 = 640: `80 02` also starts a pickle, but `{` follows.
        let past_end = || FormatError::HeaderPastEnd {
            len: 640,
            file_len: 100,
        };
        let mut st = 640u64.to_le_bytes().to_vec();
        st.extend_from_slice(b"{\"a\":");
        assert_eq!(explain(past_end(), &st).kind(), "header_past_end");
        // With only the 8-byte prefix there is nothing to tell it from a cut
        // file; one more byte that is not `{` decides.
        let legacy = b"\x80\x02\x8a\x0alx\x9cF\x07";
        assert_eq!(explain(past_end(), &legacy[..8]).kind(), "header_past_end");
        assert_eq!(explain(past_end(), legacy).kind(), "not_safetensors");
    }

    #[test]
    fn binary_and_truncated_input_is_not_named() {
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(&u64::MAX.to_le_bytes()), None);
        assert_eq!(sniff(&100_000_001u64.to_le_bytes()), None);
        assert_eq!(sniff(b"\x80"), None);
        assert_eq!(sniff(b"\x08"), None);
        // A zip whose name length runs past the prefix.
        let mut z = zip_with(b"archive/data.pkl");
        z.truncate(35);
        assert_eq!(sniff(&z), Some(FileFormat::Zip));
    }
}
