//! Error type of the crate. Every message quotes the path or value at fault.

use std::path::PathBuf;

/// Everything that can go wrong while hashing, signing or verifying.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// An I/O operation on a path failed.
    // The I/O error is part of the message, and so not also a `source()`.
    #[error("{}: {error}", path.display())]
    Io {
        /// The path being read, listed or written.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A symbolic link was found and links are not allowed.
    #[error("{path} is a symbolic link; links are refused unless allowed (--allow-symlinks)")]
    SymlinkRefused {
        /// The link.
        path: PathBuf,
    },
    /// A path is neither a regular file nor a directory (socket, FIFO, device,
    /// or a dangling symbolic link).
    #[error("{path} is neither a regular file nor a directory (special file or dangling link)")]
    SpecialFile {
        /// The path.
        path: PathBuf,
    },
    /// A file name is not valid UTF-8, so it cannot be written in the manifest.
    #[error("{path}: file name is not valid UTF-8 and cannot be named in a manifest")]
    NonUtf8Name {
        /// The path.
        path: PathBuf,
    },
    /// A file was listed but changed kind or vanished while hashing.
    #[error("{path}: file changed while it was being hashed ({detail})")]
    Raced {
        /// The path.
        path: PathBuf,
        /// What happened.
        detail: String,
    },
    /// A PEM key could not be read.
    #[error("{what}: {detail}")]
    Key {
        /// Which key (usually the file name).
        what: String,
        /// Why it was rejected.
        detail: String,
    },
    /// The signature file is not a well-formed bundle of the supported kind.
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// The signature uses a feature this implementation does not support.
    #[error("unsupported signature: {0}")]
    Unsupported(String),
    /// The public key given is not the one the signature names.
    #[error(
        "key mismatch: the signature was made with the key whose hint is {expected}, \
         but the public key given has hint {actual}"
    )]
    KeyMismatch {
        /// The hint recorded in the bundle.
        expected: String,
        /// The hint of the key given.
        actual: String,
    },
    /// The ECDSA signature does not verify with the key given.
    #[error("invalid signature: the DSSE signature does not verify with the {curve} key given")]
    BadSignature {
        /// The curve of the key.
        curve: &'static str,
    },
    /// The signed manifest contradicts itself.
    #[error("inconsistent manifest: {0}")]
    Inconsistent(String),
}

impl SignError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        SignError::Io {
            path: path.into(),
            error,
        }
    }

    /// True for errors about the local environment (files, keys) rather than
    /// about the signature's content or validity.
    pub fn is_environment(&self) -> bool {
        matches!(
            self,
            SignError::Io { .. }
                | SignError::SymlinkRefused { .. }
                | SignError::SpecialFile { .. }
                | SignError::NonUtf8Name { .. }
                | SignError::Raced { .. }
                | SignError::Key { .. }
        )
    }
}

/// Result alias of the crate.
pub type Result<T, E = SignError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_cause_is_printed_once() {
        let e = SignError::io("model/w.bin", std::io::Error::other("disk on fire"));
        assert_eq!(e.to_string(), "model/w.bin: disk on fire");
        // Quoted in the message, so not also the source: a chain prints it once.
        assert!(std::error::Error::source(&e).is_none());
    }
}
