//! A pickle reader that never imports or calls anything.
//!
//! Pickle is a small stack machine whose `GLOBAL` opcodes import
//! arbitrary Python objects and whose `REDUCE`/`NEWOBJ`/`INST`/`OBJ`/`BUILD`
//! opcodes call them. This crate interprets the opcode stream of protocols
//! 0 to 5 with plain data only: a global becomes [`Value::Global`], a call
//! becomes [`Value::Call`] describing what would have been called. Nothing
//! is ever imported, called or evaluated, whatever the input.
//!
//! Two modes run on the same machine:
//!
//! - [`load`] (strict): every global must be on the weights allow-list
//!   ([`policy::is_allowed`]); the first other global is refused with
//!   [`PickleError::Forbidden`], naming `module.name`, the opcode and the
//!   byte offset. Used to convert checkpoints.
//! - [`analyze`] (for scanners): records every global reference, how it is
//!   called, nested pickles in bytes arguments and every pickle of a stacked
//!   stream, and keeps going after findings.
//!
//! Hard [`Limits`] bound operations, memo entries, stack depth, container
//! sizes and total allocation, so a crafted input cannot exhaust memory or
//! time. Parsing never panics.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod analysis;
mod error;
mod limits;
mod opcode;
pub mod policy;
mod record;
mod value;
mod vm;

pub use analysis::{analyze, Analysis, NestedPickle, PickleReport};
pub use error::PickleError;
pub use limits::Limits;
pub use opcode::{Opcode, Operand};
pub use record::{CallSite, GlobalRef, Resolution};
pub use value::{Call, CallKind, Value};

/// Loads the first pickle of `data` in strict mode: plain data, every global
/// on the allow-list.
///
/// ```
/// use tensorseal_pickle::{load, Limits, Value};
/// // pickle.dumps({"a": 1}, protocol=2)
/// let v = load(b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s.", &Limits::default()).unwrap();
/// assert_eq!(v.get("a"), Some(&Value::Int(1)));
/// let err = load(b"cos\nsystem\n(S'id'\ntR.", &Limits::default()).unwrap_err();
/// assert!(err.to_string().contains("os.system"));
/// ```
pub fn load(data: &[u8], limits: &Limits) -> Result<Value, PickleError> {
    load_at(data, 0, limits).map(|(v, _)| v)
}

/// Loads one pickle starting at byte `offset` in strict mode; returns the
/// value and the offset just past its `STOP`. Used to walk formats that put
/// several pickles and raw data in one file (legacy torch checkpoints).
pub fn load_at(data: &[u8], offset: usize, limits: &Limits) -> Result<(Value, usize), PickleError> {
    let mut m = vm::Machine::new(data, limits, vm::Mode::Strict);
    let root = m.run_one(offset)?;
    let value = m.value(root)?;
    Ok((value, m.pos()))
}

/// Reads one pickle starting at byte `offset` without refusing anything:
/// every global becomes a [`Value::Global`] and every call a [`Value::Call`]
/// (nothing is imported or called). Returns the value and the offset just
/// past its `STOP`. Used by scanners to walk layouts whose raw data lengths
/// are given by the pickles themselves (legacy torch storages).
///
/// ```
/// use tensorseal_pickle::{value_at, Limits, Value};
/// // Two pickles: `2`, then `("0", os.system)`, a global strict mode would refuse.
/// let data = b"K\x02.X\x01\x00\x00\x000cos\nsystem\n\x86.";
/// assert_eq!(value_at(data, 0, &Limits::default()).unwrap(), (Value::Int(2), 3));
/// let (v, end) = value_at(data, 3, &Limits::default()).unwrap();
/// assert_eq!(end, data.len());
/// assert!(matches!(v, Value::Tuple(t) if t.len() == 2));
/// ```
pub fn value_at(
    data: &[u8],
    offset: usize,
    limits: &Limits,
) -> Result<(Value, usize), PickleError> {
    let mut m = vm::Machine::new(data, limits, vm::Mode::Analyze);
    let root = m.run_one(offset)?;
    let value = m.value(root)?;
    Ok((value, m.pos()))
}

/// Loads every pickle of a stacked stream in strict mode, each with a fresh
/// memo (as consecutive `pickle.load` calls do).
pub fn load_all(data: &[u8], limits: &Limits) -> Result<Vec<Value>, PickleError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        if out.len() >= limits.max_pickles {
            return Err(PickleError::Limit {
                limit: "pickles in one stream",
                max: limits.max_pickles as u64,
                offset: pos,
            });
        }
        let (v, end) = load_at(data, pos, limits)?;
        out.push(v);
        pos = end;
    }
    Ok(out)
}
