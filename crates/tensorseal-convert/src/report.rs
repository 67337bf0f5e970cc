//! What a conversion reports: [`Progress`] events while it runs and the
//! [`Report`] of what it did.

use std::path::PathBuf;

use tensorseal_format::Dtype;

use crate::sources::Format;

/// What was written for one tensor, as [`Verify::Checksum`](crate::Verify::Checksum) checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Name in the output.
    pub name: String,
    /// Its dtype.
    pub dtype: Dtype,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Bytes written.
    pub len: u64,
    /// XXH3-128 of those bytes.
    pub xxh3_128: u128,
}

/// Progress events.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    /// Conversion starts: total tensor bytes to write.
    Start {
        /// Bytes.
        total_bytes: u64,
        /// Tensors.
        tensors: usize,
    },
    /// A tensor was written.
    Tensor {
        /// Its name.
        name: &'a str,
        /// Its bytes.
        bytes: u64,
    },
    /// Verification starts.
    Verify,
}

/// What [`to_safetensors`](crate::to_safetensors) did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Input files.
    pub inputs: Vec<PathBuf>,
    /// Their format.
    pub format: Option<Format>,
    /// Nested-checkpoint key chosen by default.
    pub chosen: Option<String>,
    /// Tensors written.
    pub tensors: usize,
    /// Tensors dropped as identical to another (`alias -> kept`), recorded in
    /// the metadata as Hugging Face's converter does.
    pub aliases: Vec<(String, String)>,
    /// Non-tensor values kept as JSON in metadata (`tensorseal.values`).
    pub values: usize,
    /// Files written.
    pub outputs: Vec<PathBuf>,
    /// Index file written, if sharded.
    pub index: Option<PathBuf>,
    /// Tensor bytes written.
    pub total_bytes: u64,
    /// Whether the output was re-read and compared.
    pub verified: bool,
    /// Per output file, what was written to it (filled with
    /// [`Verify::Checksum`](crate::Verify::Checksum), empty otherwise).
    pub written: Vec<Vec<Written>>,
    /// Tensors whose bytes [`Verify::Checksum`](crate::Verify::Checksum) re-read and hashed from the
    /// output before renaming it into place (on unix; elsewhere the output
    /// is re-read after the rename and this stays 0).
    pub checked_before_rename: usize,
}
