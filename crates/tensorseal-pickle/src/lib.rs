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
mod opcode;
pub mod policy;
mod value;
mod vm;

pub use analysis::{
    analyze, Analysis, CallSite, GlobalRef, NestedPickle, PickleReport, Resolution,
};
pub use error::PickleError;
pub use opcode::Opcode;
pub use value::{Call, Value};

/// How a global was called (or had its state set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// `REDUCE`: `callable(*args)`.
    Reduce,
    /// `NEWOBJ`: `cls.__new__(cls, *args)`.
    NewObj,
    /// `NEWOBJ_EX`: `cls.__new__(cls, *args, **kwargs)`.
    NewObjEx,
    /// `INST`: `module.name(*args)` (protocol 0).
    Inst,
    /// `OBJ`: `cls(*args)` (protocol 1).
    Obj,
    /// `BUILD`: `obj.__setstate__(state)` on an object made from this global.
    Build,
}

impl CallKind {
    /// The opcode that performs this call.
    pub fn opcode(self) -> Opcode {
        match self {
            CallKind::Reduce => Opcode::REDUCE,
            CallKind::NewObj => Opcode::NEWOBJ,
            CallKind::NewObjEx => Opcode::NEWOBJ_EX,
            CallKind::Inst => Opcode::INST,
            CallKind::Obj => Opcode::OBJ,
            CallKind::Build => Opcode::BUILD,
        }
    }
}

/// Hard limits on what one input may cost. The defaults fit any real
/// checkpoint's pickle (hundreds of thousands of tensors) and stay far below
/// a machine's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Opcodes executed, over all pickles of a stream.
    pub max_ops: u64,
    /// Memo entries.
    pub max_memo: usize,
    /// Stack depth (objects plus marks).
    pub max_stack: usize,
    /// Items in one container (tuple, list, dict, set).
    pub max_container: usize,
    /// Bytes the machine may allocate for objects (strings, containers,
    /// nodes), and again for the [`Value`] tree handed out (which is also
    /// capped at 256 bytes per input byte plus 16 MiB).
    pub max_alloc: usize,
    /// Nesting depth of the [`Value`] tree handed out.
    pub max_depth: usize,
    /// Pickles in one stacked stream.
    pub max_pickles: usize,
    /// Depth of nested pickles (`pickle.loads(b"...")`) analysed.
    pub max_nested: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_ops: 50_000_000,
            max_memo: 4_000_000,
            max_stack: 1_000_000,
            max_container: 16_000_000,
            max_alloc: 1 << 30,
            max_depth: 128,
            max_pickles: 10_000,
            max_nested: 4,
        }
    }
}

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
    let mut m = vm::Machine::new(data, limits, vm::Mode::Strict, 0);
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
    let mut m = vm::Machine::new(data, limits, vm::Mode::Analyze, 0);
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
