//! Typed errors of the converter; messages quote the file and value at fault.

use std::path::PathBuf;

use tensorseal_format::FormatError;
use tensorseal_pickle::PickleError;

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// Reading or writing a file failed.
    // The I/O error is part of the message, and so not also a `source()`.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// The pickle was refused (a global off the allow-list) or is malformed.
    #[error("{}: pickle {member}: {error}", path.display())]
    Pickle {
        /// The file.
        path: PathBuf,
        /// Which pickle in the file (`data.pkl`, `legacy object pickle`, ...).
        member: String,
        /// The error (in the message, so not also a `source()`).
        error: Box<PickleError>,
    },
    /// The container (zip, legacy stream, npy header) is malformed.
    #[error("{}: {why}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A tensor cannot be converted (dtype, layout, out-of-range view).
    #[error("{}: tensor `{name}`: {why}", path.display())]
    Tensor {
        /// The file.
        path: PathBuf,
        /// Tensor path in the checkpoint.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// `--select` names nothing.
    #[error("{}: --select `{select}`: {why}", path.display())]
    Select {
        /// The file.
        path: PathBuf,
        /// The selection.
        select: String,
        /// What is wrong.
        why: String,
    },
    /// The safetensors side failed.
    #[error(transparent)]
    Safetensors(#[from] FormatError),
    /// The output would exceed the output size limit (`--max-output-size`);
    /// nothing was written.
    #[error("{}: the output would hold {total} bytes of tensors, over the limit of {limit}{}{detail}", path.display(), if *default { " (default: twice the input's data plus 256 MiB; raise it with --max-output-size)" } else { " (--max-output-size)" })]
    OutputTooLarge {
        /// The input.
        path: PathBuf,
        /// Tensor bytes the output would hold.
        total: u64,
        /// The limit.
        limit: u64,
        /// Whether the limit is the default one.
        default: bool,
        /// Which tensor is largest.
        detail: String,
    },
    /// The conversion was cancelled (a signal); the temporary output file
    /// was removed.
    #[error("conversion interrupted; its temporary file was removed")]
    Interrupted,
    /// The output differs from the input after writing.
    #[error("verification failed: {}: tensor `{name}` {why}", path.display())]
    Verify {
        /// The output file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// How it differs.
        why: String,
    },
}

impl ConvertError {
    pub(crate) fn format(path: &std::path::Path, why: impl Into<String>) -> Self {
        ConvertError::Format {
            path: path.to_owned(),
            why: why.into(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, error: std::io::Error) -> Self {
        ConvertError::Io {
            path: path.to_owned(),
            error,
        }
    }

    /// True when the input itself is at fault (bad or unsafe data), false for
    /// I/O problems.
    pub fn is_invalid_input(&self) -> bool {
        !matches!(self, ConvertError::Io { .. } | ConvertError::Interrupted)
            && !matches!(self, ConvertError::Safetensors(e) if e.is_io())
    }
}
