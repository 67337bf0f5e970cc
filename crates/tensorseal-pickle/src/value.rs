//! Plain data built from a pickle: no Python object is ever created.

use crate::opcode::Opcode;

/// A value built by the pickle machine.
///
/// Calls are never made: a `REDUCE`, `NEWOBJ`, `INST`, ... becomes a
/// [`Value::Call`] that records what *would* have been called, with what.
/// A few pure constructors of the allow-list are evaluated because the result
/// is plain data: `collections.OrderedDict()` (a [`Value::Dict`]),
/// `builtins.set/frozenset/bytearray(...)` and `_codecs.encode(str, "latin1")`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// A larger integer, little-endian two's complement (as `LONG1`/`LONG4`).
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A text string.
    Str(String),
    /// A bytes object.
    Bytes(Vec<u8>),
    /// A bytearray.
    ByteArray(Vec<u8>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A dict or `OrderedDict`, in insertion order (later duplicates replace earlier ones).
    Dict(Vec<(Value, Value)>),
    /// A set.
    Set(Vec<Value>),
    /// A frozenset.
    FrozenSet(Vec<Value>),
    /// A reference to `module.name`, never imported.
    Global {
        /// Module name (Python 2 names as written).
        module: String,
        /// Attribute name, possibly dotted.
        name: String,
    },
    /// A call that was *not* made.
    Call(Box<Call>),
    /// A persistent id (`PERSID`/`BINPERSID`): in torch files, a storage reference.
    PersistentId(Box<Value>),
    /// An out-of-band buffer placeholder (`NEXT_BUFFER`), analysis mode only.
    Buffer,
    /// A copyreg extension code (`EXT1/2/4`), analysis mode only.
    Ext(u32),
}

/// A call recorded instead of made.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// What would have been called (usually a [`Value::Global`]).
    pub callable: Value,
    /// The positional arguments (a tuple, or whatever the pickle supplied).
    pub args: Value,
    /// Keyword arguments (`NEWOBJ_EX` only).
    pub kwargs: Option<Value>,
    /// Which opcode made the call.
    pub kind: CallKind,
    /// The state given by `BUILD`, if any.
    pub state: Option<Value>,
    /// Items appended with `APPEND(S)`.
    pub list_items: Vec<Value>,
    /// Items set with `SETITEM(S)`.
    pub dict_items: Vec<(Value, Value)>,
}

impl Value {
    /// The text, for [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, for [`Value::Int`] and [`Value::Bool`].
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The items of a tuple or list.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// The entries of a dict.
    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(v) => Some(v),
            _ => None,
        }
    }

    /// `(module, name)` for a [`Value::Global`].
    pub fn as_global(&self) -> Option<(&str, &str)> {
        match self {
            Value::Global { module, name } => Some((module, name)),
            _ => None,
        }
    }

    /// The call, for a [`Value::Call`].
    pub fn as_call(&self) -> Option<&Call> {
        match self {
            Value::Call(c) => Some(c),
            _ => None,
        }
    }

    /// `module.name` of the callable when this is a call of a global.
    pub fn call_target(&self) -> Option<(&str, &str)> {
        self.as_call().and_then(|c| c.callable.as_global())
    }

    /// Looks up a string key in a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?
            .iter()
            .rev()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// A short name of the variant, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::ByteArray(_) => "bytearray",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::FrozenSet(_) => "frozenset",
            Value::Global { .. } => "global",
            Value::Call(_) => "call",
            Value::PersistentId(_) => "persistent id",
            Value::Buffer => "buffer",
            Value::Ext(_) => "extension",
        }
    }
}

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
