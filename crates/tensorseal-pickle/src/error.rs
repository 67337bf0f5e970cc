//! Typed errors; every message names the opcode and byte offset.

use crate::opcode::Opcode;

/// Why a pickle was refused or could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PickleError {
    /// A global outside the allow-list (strict mode).
    #[error("refusing global `{module}.{name}` ({opcode} at byte {offset}): {why}")]
    Forbidden {
        /// Module.
        module: String,
        /// Name.
        name: String,
        /// Opcode that named it.
        opcode: Opcode,
        /// Byte offset of the opcode.
        offset: usize,
        /// `dangerous: <reason>` or `not on the allow-list of weight files`.
        why: String,
    },
    /// A byte that is no pickle opcode.
    #[error("unknown opcode 0x{byte:02x} at byte {offset}")]
    UnknownOpcode {
        /// The byte.
        byte: u8,
        /// Its offset.
        offset: usize,
    },
    /// The input ends inside an opcode or before `STOP`.
    #[error("pickle truncated: {what} at byte {offset} runs past the end of the data")]
    Truncated {
        /// What was being read.
        what: String,
        /// Offset where it started.
        offset: usize,
    },
    /// An opcode needed more stack items than there are (above the last mark).
    #[error("stack underflow at {opcode} (byte {offset})")]
    StackUnderflow {
        /// Opcode.
        opcode: Opcode,
        /// Offset.
        offset: usize,
    },
    /// An opcode needed a MARK and there is none.
    #[error("{opcode} at byte {offset} needs a MARK and there is none")]
    MissingMark {
        /// Opcode.
        opcode: Opcode,
        /// Offset.
        offset: usize,
    },
    /// A memo lookup of a key never stored.
    #[error("memo key {key} not found ({opcode} at byte {offset})")]
    MemoMissing {
        /// Key.
        key: u64,
        /// Opcode.
        opcode: Opcode,
        /// Offset.
        offset: usize,
    },
    /// An operand or stack item of the wrong kind.
    #[error("invalid {opcode} at byte {offset}: {detail}")]
    Invalid {
        /// Opcode.
        opcode: Opcode,
        /// Offset.
        offset: usize,
        /// What is wrong, quoting the value.
        detail: String,
    },
    /// A hard limit was reached.
    #[error("limit exceeded at byte {offset}: more than {max} {limit}")]
    Limit {
        /// Which limit.
        limit: &'static str,
        /// Its value.
        max: u64,
        /// Offset where it was hit.
        offset: usize,
    },
    /// A protocol number above 5.
    #[error("unsupported pickle protocol {protocol} at byte {offset}")]
    Protocol {
        /// The protocol byte.
        protocol: u8,
        /// Offset.
        offset: usize,
    },
    /// Out-of-band buffers (protocol 5) are not part of weight files.
    #[error("out-of-band buffer ({opcode} at byte {offset}) is not supported")]
    OutOfBand {
        /// Opcode.
        opcode: Opcode,
        /// Offset.
        offset: usize,
    },
    /// A copyreg extension code: resolving it means importing whatever the
    /// loading process registered.
    #[error("extension code {code} ({opcode} at byte {offset}) names an unknown global")]
    Extension {
        /// The code.
        code: u32,
        /// Opcode.
        opcode: Opcode,
        /// Offset.
        offset: usize,
    },
    /// The object graph refers to itself (only rejected when turned into a
    /// [`crate::Value`] tree).
    #[error("the object graph contains a cycle")]
    Cycle,
    /// The object graph nests deeper than the limit.
    #[error("the object graph nests deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// No data at the offset.
    #[error("no pickle data at byte {offset}")]
    Empty {
        /// Offset.
        offset: usize,
    },
}

impl PickleError {
    /// The byte offset the error refers to, when it has one.
    pub fn offset(&self) -> Option<usize> {
        match self {
            PickleError::Forbidden { offset, .. }
            | PickleError::UnknownOpcode { offset, .. }
            | PickleError::Truncated { offset, .. }
            | PickleError::StackUnderflow { offset, .. }
            | PickleError::MissingMark { offset, .. }
            | PickleError::MemoMissing { offset, .. }
            | PickleError::Invalid { offset, .. }
            | PickleError::Limit { offset, .. }
            | PickleError::Protocol { offset, .. }
            | PickleError::OutOfBand { offset, .. }
            | PickleError::Extension { offset, .. }
            | PickleError::Empty { offset } => Some(*offset),
            PickleError::Cycle | PickleError::TooDeep { .. } => None,
        }
    }
}
