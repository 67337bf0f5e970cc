//! What the machine records about the globals a pickle names: where, how
//! the name was obtained, how it is judged and every place it is called.

use crate::opcode::Opcode;
use crate::policy::Class;
use crate::value::CallKind;

/// How the module and name of a global reference were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Operands of `GLOBAL`/`INST`.
    Operand,
    /// Strings on the stack consumed by `STACK_GLOBAL` (whatever opcodes,
    /// memo lookups or `DUP`s put them there).
    Stack,
    /// `STACK_GLOBAL` operands that are not strings (e.g. results of calls),
    /// or an extension code: `module`/`name` describe them. Always unknown.
    Dynamic,
    /// Found by a linear opcode scan after the machine stopped on an error:
    /// `STACK_GLOBAL` names come from the two preceding string operands.
    AfterError,
}

/// One place where a global is called (or gets its state set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSite {
    /// How.
    pub kind: CallKind,
    /// Byte offset of the calling opcode.
    pub offset: usize,
}

/// One global reference in a pickle.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalRef {
    /// Index of the pickle in the stream ([`crate::Analysis::pickles`]).
    pub pickle: usize,
    /// Module, as written (see [`crate::policy::normalize_module`]).
    pub module: String,
    /// Name.
    pub name: String,
    /// Byte offset of the opcode that named it.
    pub offset: usize,
    /// `GLOBAL`, `STACK_GLOBAL`, `INST`, or `EXT1/2/4`.
    pub opcode: Opcode,
    /// How module and name were obtained.
    pub resolution: Resolution,
    /// Every call of it (empty: only referenced).
    pub calls: Vec<CallSite>,
    /// Allowed, dangerous or unknown.
    pub class: Class,
}

impl GlobalRef {
    /// `module.name`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.module, self.name)
    }

    /// Whether it is called (by any opcode other than `BUILD`).
    pub fn is_called(&self) -> bool {
        self.calls.iter().any(|c| c.kind != CallKind::Build)
    }
}
