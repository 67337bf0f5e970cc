//! Typed errors. Every message quotes the value at fault.
//!
//! A variant that wraps another error ([`FormatError::InFile`],
//! [`FormatError::Io`]) returns it from [`std::error::Error::source`] and does
//! not repeat it in its own message: print the chain (`{:#}` with `anyhow`,
//! or [`FormatError::report`]) to show both.

use std::path::PathBuf;

use crate::sniff::FileFormat;
use crate::Dtype;

/// Everything that can be wrong with safetensors bytes, one kind per rule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Fewer than the 8 bytes of the header-length prefix.
    #[error("{}", if *len == 0 { "file is empty (0 bytes); a safetensors file starts with an 8-byte header length".to_string() } else { format!("file is {len} bytes long, shorter than the 8-byte header length prefix") })]
    FileTooSmall {
        /// Length of the input.
        len: u64,
    },
    /// The header length prefix exceeds the 100,000,000-byte limit.
    #[error("header length {len} exceeds the limit of {limit} bytes")]
    HeaderTooLarge {
        /// Declared header length.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// The header length prefix points past the end of the input.
    #[error("header length {len} runs past the end of the file ({file_len} bytes)")]
    HeaderPastEnd {
        /// Declared header length.
        len: u64,
        /// Length of the input.
        file_len: u64,
    },
    /// The input is not a safetensors file but another known format (found
    /// from its first bytes after the header length prefix proved
    /// implausible).
    #[error("not a safetensors file: this is {}; {}", format.description(), format.advice())]
    NotSafetensors {
        /// What the input is.
        format: FileFormat,
        /// The header length its first 8 bytes would declare.
        header_len: u64,
    },
    /// The header is not valid UTF-8.
    #[error("header is not valid UTF-8 (invalid byte at header offset {valid_up_to})")]
    InvalidUtf8 {
        /// Offset of the first invalid byte inside the header.
        valid_up_to: usize,
    },
    /// The header is not JSON, or not a JSON object.
    #[error("header is not a JSON object: {reason}")]
    InvalidJson {
        /// What the JSON parser said.
        reason: String,
    },
    /// Arrays and objects in the header nest deeper than [`crate::MAX_NESTING_DEPTH`].
    #[error("header nests arrays/objects {depth} deep at byte {offset}; the limit is {limit}")]
    NestingTooDeep {
        /// The depth reached (the top-level object is depth 1).
        depth: usize,
        /// Byte offset in the header JSON of the bracket that went past the limit.
        offset: usize,
        /// The limit.
        limit: usize,
    },
    /// A key appears twice in a JSON object of the header.
    #[error("duplicate key {key:?} in header")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// A tensor has an empty name.
    #[error("tensor name is empty")]
    EmptyName,
    /// A tensor name contains a NUL character.
    #[error("tensor name {name:?} contains a NUL character")]
    NameContainsNul {
        /// The name.
        name: String,
    },
    /// A tensor entry is not an object with `dtype`, `shape` and `data_offsets`.
    #[error("tensor {tensor:?}: {reason}")]
    InvalidTensorEntry {
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// The dtype string is not one of the 22 known dtypes.
    #[error("tensor {tensor:?}: unknown dtype {dtype:?}")]
    UnknownDtype {
        /// Tensor name.
        tensor: String,
        /// The dtype string as found.
        dtype: String,
    },
    /// A shape entry is negative, fractional, or not a number.
    #[error("tensor {tensor:?}: shape entry {value} is not a non-negative integer")]
    InvalidShape {
        /// Tensor name.
        tensor: String,
        /// The offending JSON value.
        value: String,
    },
    /// `data_offsets` is not a pair of non-negative integers.
    #[error("tensor {tensor:?}: data_offsets {value} is not a pair of non-negative integers")]
    InvalidOffsets {
        /// Tensor name.
        tensor: String,
        /// The offending JSON value.
        value: String,
    },
    /// `data_offsets` end lies before its start.
    #[error("tensor {tensor:?}: data_offsets end {end} is before start {start}")]
    OffsetsReversed {
        /// Tensor name.
        tensor: String,
        /// Start offset.
        start: u64,
        /// End offset.
        end: u64,
    },
    /// The tensors do not tile the data buffer from offset 0 (gap or overlap).
    #[error("tensor {tensor:?}: data starts at offset {start}, expected {expected} (tensors must be contiguous from 0, without gaps or overlaps)")]
    NonContiguous {
        /// Tensor name.
        tensor: String,
        /// Where the tensor starts.
        start: u64,
        /// Where it should have started.
        expected: u64,
    },
    /// Number of elements times element size overflows.
    #[error("tensor {tensor:?}: size of shape {shape:?} overflows")]
    SizeOverflow {
        /// Tensor name.
        tensor: String,
        /// The shape.
        shape: Vec<u64>,
    },
    /// A sub-byte tensor whose bit count is not a whole number of bytes.
    #[error("tensor {tensor:?}: {elements} elements of {dtype} ({bits} bits) are not a whole number of bytes")]
    PartialByte {
        /// Tensor name.
        tensor: String,
        /// The dtype.
        dtype: Dtype,
        /// Number of elements.
        elements: u64,
        /// Total bits.
        bits: u128,
    },
    /// The byte range length does not equal elements × element size.
    #[error("tensor {tensor:?}: {dtype} shape {shape:?} needs {expected} bytes but data_offsets span {found}")]
    SizeMismatch {
        /// Tensor name.
        tensor: String,
        /// The dtype.
        dtype: Dtype,
        /// The shape.
        shape: Vec<u64>,
        /// Bytes implied by dtype and shape.
        expected: u64,
        /// Bytes spanned by data_offsets.
        found: u64,
    },
    /// The data buffer is longer or shorter than the last tensor's end offset.
    #[error("data buffer is {found} bytes but the tensors cover {expected} bytes ({})", if found > expected { "trailing bytes" } else { "truncated" })]
    BufferLengthMismatch {
        /// Bytes the tensors cover.
        expected: u64,
        /// Bytes actually present.
        found: u64,
    },
    /// `__metadata__` is not an object of string values.
    #[error("__metadata__ is invalid: {reason}")]
    InvalidMetadata {
        /// What is wrong, quoting the key or value.
        reason: String,
    },
    /// The tensor asked for is not in the file.
    #[error("no tensor named {name:?}")]
    TensorNotFound {
        /// The name asked for.
        name: String,
    },
    /// A slice request that does not fit the tensor.
    #[error("tensor {tensor:?}: invalid slice: {reason}")]
    InvalidSlice {
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// Invalid input to the writer.
    #[error("cannot write tensor {tensor:?}: {reason}")]
    InvalidWrite {
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// A sharded checkpoint index that is malformed or inconsistent.
    #[error("sharded index {}: {reason}", path.display())]
    InvalidIndex {
        /// Path of the index file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A weight_map entry names a file outside the checkpoint's directory.
    #[error("sharded index {}: tensor {tensor:?} maps to {file:?}, which is not a plain relative path inside the checkpoint directory", path.display())]
    IndexPathEscape {
        /// Path of the index file.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// The offending file name.
        file: String,
    },
    /// The index maps a tensor to a shard that does not hold it.
    #[error("sharded index {}: tensor {tensor:?} is mapped to {file:?} but that shard does not contain it", path.display())]
    IndexTensorMissing {
        /// Path of the index file.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// The shard file.
        file: String,
    },
    /// A shard holds a tensor the index does not map to it.
    #[error("sharded index {}: shard {file:?} contains tensor {tensor:?}, which the index {}", path.display(), match mapped_to { Some(f) => format!("maps to {f:?}"), None => "does not list".to_string() })]
    IndexTensorUnlisted {
        /// Path of the index file.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// The shard file holding it.
        file: String,
        /// Where the index maps it, if anywhere.
        mapped_to: Option<String>,
    },
    /// An error in a specific file (a shard of a checkpoint).
    #[error("{}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// The error found in it.
        #[source]
        source: Box<FormatError>,
    },
    /// An I/O error, with the path it concerns.
    #[error("{}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl FormatError {
    /// A short stable identifier for the error kind, for JSON output and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            FormatError::FileTooSmall { .. } => "file_too_small",
            FormatError::HeaderTooLarge { .. } => "header_too_large",
            FormatError::HeaderPastEnd { .. } => "header_past_end",
            FormatError::NotSafetensors { .. } => "not_safetensors",
            FormatError::InvalidUtf8 { .. } => "invalid_utf8",
            FormatError::InvalidJson { .. } => "invalid_json",
            FormatError::NestingTooDeep { .. } => "nesting_too_deep",
            FormatError::DuplicateKey { .. } => "duplicate_key",
            FormatError::EmptyName => "empty_name",
            FormatError::NameContainsNul { .. } => "name_contains_nul",
            FormatError::InvalidTensorEntry { .. } => "invalid_tensor_entry",
            FormatError::UnknownDtype { .. } => "unknown_dtype",
            FormatError::InvalidShape { .. } => "invalid_shape",
            FormatError::InvalidOffsets { .. } => "invalid_offsets",
            FormatError::OffsetsReversed { .. } => "offsets_reversed",
            FormatError::NonContiguous { .. } => "non_contiguous",
            FormatError::SizeOverflow { .. } => "size_overflow",
            FormatError::PartialByte { .. } => "partial_byte",
            FormatError::SizeMismatch { .. } => "size_mismatch",
            FormatError::BufferLengthMismatch { .. } => "buffer_length_mismatch",
            FormatError::InvalidMetadata { .. } => "invalid_metadata",
            FormatError::TensorNotFound { .. } => "tensor_not_found",
            FormatError::InvalidSlice { .. } => "invalid_slice",
            FormatError::InvalidWrite { .. } => "invalid_write",
            FormatError::InvalidIndex { .. } => "invalid_index",
            FormatError::IndexPathEscape { .. } => "index_path_escape",
            FormatError::IndexTensorMissing { .. } => "index_tensor_missing",
            FormatError::IndexTensorUnlisted { .. } => "index_tensor_unlisted",
            FormatError::InFile { source, .. } => source.kind(),
            FormatError::Io { .. } => "io",
        }
    }

    /// Whether this is an I/O error (as opposed to invalid content).
    pub fn is_io(&self) -> bool {
        match self {
            FormatError::Io { .. } => true,
            FormatError::InFile { source, .. } => source.is_io(),
            _ => false,
        }
    }

    /// Attaches the path of the file the error was found in.
    pub fn in_file(self, path: impl AsRef<std::path::Path>) -> Self {
        match self {
            e @ (FormatError::Io { .. } | FormatError::InFile { .. }) => e,
            e => FormatError::InFile {
                path: path.as_ref().to_owned(),
                source: Box::new(e),
            },
        }
    }

    /// The message with every cause in the chain, joined by `": "` (what
    /// `anyhow` prints with `{:#}`): one line for a log or an exception.
    pub fn report(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        FormatError::Io {
            path: path.as_ref().to_owned(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn a_cause_is_printed_once() {
        let e = FormatError::io("m.safetensors", std::io::Error::other("disk on fire"));
        assert_eq!(e.to_string(), "m.safetensors");
        assert!(e.source().is_some());
        assert_eq!(e.report(), "m.safetensors: disk on fire");
        let e = FormatError::EmptyName.in_file("shard-1.safetensors");
        assert_eq!(e.to_string(), "shard-1.safetensors");
        assert_eq!(e.report(), "shard-1.safetensors: tensor name is empty");
    }
}
