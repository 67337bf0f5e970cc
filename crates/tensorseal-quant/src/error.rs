use tensorseal_format::{Dtype, FormatError};

/// Why recognising or dequantizing a checkpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// Reading or writing the checkpoint failed.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A config file is not valid JSON or has a field of the wrong type.
    #[error("{file}: {reason}")]
    Config {
        /// The config file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor a scheme needs is missing.
    #[error("layer {layer:?} ({scheme}): tensor {tensor:?} is missing")]
    MissingTensor {
        /// The layer prefix.
        layer: String,
        /// The scheme.
        scheme: String,
        /// The missing tensor's name.
        tensor: String,
    },
    /// A tensor has a dtype the scheme does not allow.
    #[error("tensor {tensor:?} has dtype {found}, {scheme} needs {expected}")]
    BadDtype {
        /// Tensor name.
        tensor: String,
        /// The scheme.
        scheme: String,
        /// The dtype found.
        found: Dtype,
        /// What was expected, in words.
        expected: String,
    },
    /// Tensor shapes do not fit together.
    #[error("tensor {tensor:?} has shape {shape:?}: {reason}")]
    BadShape {
        /// Tensor name.
        tensor: String,
        /// Its shape.
        shape: Vec<usize>,
        /// What does not fit.
        reason: String,
    },
    /// A scheme recognised but not dequantized by this version.
    #[error("layer {layer:?}: dequantizing {scheme} is not supported")]
    Unsupported {
        /// The layer prefix.
        layer: String,
        /// The scheme.
        scheme: String,
    },
    /// An I/O error outside the format crate (config files, output dir).
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl QuantError {
    /// Whether the error is about the environment (files, I/O) rather than
    /// the checkpoint's content.
    pub fn is_environment(&self) -> bool {
        match self {
            QuantError::Format(e) => e.is_io(),
            QuantError::Io { .. } => true,
            _ => false,
        }
    }
}
