//! Typed errors of planning, reading and writing.

use tensorseal_format::FormatError;

/// Everything that can go wrong while planning or performing a rank's I/O.
/// Messages quote the value at fault.
#[derive(Debug, thiserror::Error)]
pub enum ParallelError {
    /// The checkpoint itself is invalid or unreadable.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The plan is malformed (JSON, a pattern, a rule).
    #[error("invalid sharding plan: {reason}")]
    BadPlan {
        /// What is wrong, quoting the value.
        reason: String,
    },
    /// `rank` is not below `world_size`, or `world_size` is 0.
    #[error("rank {rank} is out of range for world size {world_size}")]
    BadRank {
        /// The rank given.
        rank: usize,
        /// The world size given.
        world_size: usize,
    },
    /// A shard rule names a dimension the tensor does not have.
    #[error("tensor {tensor:?} of shape {shape:?} has no dimension {dim} to shard")]
    BadDim {
        /// Tensor name.
        tensor: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The dimension asked for.
        dim: i64,
    },
    /// A sub-byte dtype cannot be split on a byte boundary there.
    #[error("tensor {tensor:?} ({dtype}, shape {shape:?}) cannot be sharded along dimension {dim} on byte boundaries")]
    Unaligned {
        /// Tensor name.
        tensor: String,
        /// Its dtype.
        dtype: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The dimension.
        dim: usize,
    },
    /// A size computation overflowed.
    #[error("tensor {tensor:?}: size of shape {shape:?} overflows")]
    Overflow {
        /// Tensor name.
        tensor: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// A caller-provided buffer has the wrong length.
    #[error("buffer for tensor {tensor:?} holds {found} bytes, {expected} needed")]
    BufferSize {
        /// Tensor name.
        tensor: String,
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        found: usize,
    },
    /// A local tensor given to the writer does not match what the plan says
    /// this rank holds.
    #[error("tensor {tensor:?}: {reason}")]
    BadLocal {
        /// Tensor name.
        tensor: String,
        /// What does not match.
        reason: String,
    },
    /// An I/O error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl ParallelError {
    pub(crate) fn plan(reason: impl Into<String>) -> Self {
        ParallelError::BadPlan {
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        ParallelError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// A stable identifier of the kind of error (for JSON output and tests).
    pub fn kind(&self) -> &'static str {
        match self {
            ParallelError::Format(e) => e.kind(),
            ParallelError::BadPlan { .. } => "bad_plan",
            ParallelError::BadRank { .. } => "bad_rank",
            ParallelError::BadDim { .. } => "bad_dim",
            ParallelError::Unaligned { .. } => "unaligned_shard",
            ParallelError::Overflow { .. } => "overflow",
            ParallelError::BufferSize { .. } => "buffer_size",
            ParallelError::BadLocal { .. } => "bad_local",
            ParallelError::Io { .. } => "io",
        }
    }
}
