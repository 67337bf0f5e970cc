//! The pickle opcodes of protocols 0 to 5: byte, name and operand layout.
//!
//! This is the one opcode table of the workspace: the machine decodes with it and
//! scanners that only frame opcodes (`tensorseal-scan`'s lexer, the analysis's walk
//! after an error) read operand lengths from [`Opcode::operand`].

use std::fmt;

/// How an opcode's operand is laid out in the stream, as `pickletools` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    /// No operand.
    None,
    /// This many bytes.
    Fixed(usize),
    /// One newline-terminated line (decimal numbers, quoted strings, memo keys, ids).
    Line,
    /// Two newline-terminated lines: module and name (`GLOBAL`, `INST`).
    TwoLines,
    /// A little-endian unsigned length of this many bytes, then that many bytes.
    Counted(usize),
}

macro_rules! opcodes {
    ($($name:ident = $byte:expr, $operand:expr;)*) => {
        /// One pickle opcode. `Display` gives the name used by `pickletools`.
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Opcode {
            $(
                #[doc = concat!("`", stringify!($name), "`")]
                $name,
            )*
        }

        impl Opcode {
            /// The opcode for a byte, `None` if the byte is no opcode.
            pub const fn from_byte(b: u8) -> Option<Opcode> {
                match b {
                    $($byte => Some(Opcode::$name),)*
                    _ => None,
                }
            }

            /// The byte of this opcode.
            pub const fn byte(self) -> u8 {
                match self {
                    $(Opcode::$name => $byte,)*
                }
            }

            /// How its operand is laid out.
            pub const fn operand(self) -> Operand {
                match self {
                    $(Opcode::$name => $operand,)*
                }
            }

            /// The `pickletools` name.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Opcode::$name => stringify!($name),)*
                }
            }
        }
    };
}

opcodes! {
    MARK = b'(', Operand::None;
    STOP = b'.', Operand::None;
    POP = b'0', Operand::None;
    POP_MARK = b'1', Operand::None;
    DUP = b'2', Operand::None;
    FLOAT = b'F', Operand::Line;
    INT = b'I', Operand::Line;
    BININT = b'J', Operand::Fixed(4);
    BININT1 = b'K', Operand::Fixed(1);
    LONG = b'L', Operand::Line;
    BININT2 = b'M', Operand::Fixed(2);
    NONE = b'N', Operand::None;
    PERSID = b'P', Operand::Line;
    BINPERSID = b'Q', Operand::None;
    REDUCE = b'R', Operand::None;
    STRING = b'S', Operand::Line;
    BINSTRING = b'T', Operand::Counted(4);
    SHORT_BINSTRING = b'U', Operand::Counted(1);
    UNICODE = b'V', Operand::Line;
    BINUNICODE = b'X', Operand::Counted(4);
    APPEND = b'a', Operand::None;
    BUILD = b'b', Operand::None;
    GLOBAL = b'c', Operand::TwoLines;
    DICT = b'd', Operand::None;
    EMPTY_DICT = b'}', Operand::None;
    APPENDS = b'e', Operand::None;
    GET = b'g', Operand::Line;
    BINGET = b'h', Operand::Fixed(1);
    INST = b'i', Operand::TwoLines;
    LONG_BINGET = b'j', Operand::Fixed(4);
    LIST = b'l', Operand::None;
    EMPTY_LIST = b']', Operand::None;
    OBJ = b'o', Operand::None;
    PUT = b'p', Operand::Line;
    BINPUT = b'q', Operand::Fixed(1);
    LONG_BINPUT = b'r', Operand::Fixed(4);
    SETITEM = b's', Operand::None;
    TUPLE = b't', Operand::None;
    EMPTY_TUPLE = b')', Operand::None;
    SETITEMS = b'u', Operand::None;
    BINFLOAT = b'G', Operand::Fixed(8);
    PROTO = 0x80, Operand::Fixed(1);
    NEWOBJ = 0x81, Operand::None;
    EXT1 = 0x82, Operand::Fixed(1);
    EXT2 = 0x83, Operand::Fixed(2);
    EXT4 = 0x84, Operand::Fixed(4);
    TUPLE1 = 0x85, Operand::None;
    TUPLE2 = 0x86, Operand::None;
    TUPLE3 = 0x87, Operand::None;
    NEWTRUE = 0x88, Operand::None;
    NEWFALSE = 0x89, Operand::None;
    LONG1 = 0x8a, Operand::Counted(1);
    LONG4 = 0x8b, Operand::Counted(4);
    BINBYTES = b'B', Operand::Counted(4);
    SHORT_BINBYTES = b'C', Operand::Counted(1);
    SHORT_BINUNICODE = 0x8c, Operand::Counted(1);
    BINUNICODE8 = 0x8d, Operand::Counted(8);
    BINBYTES8 = 0x8e, Operand::Counted(8);
    EMPTY_SET = 0x8f, Operand::None;
    ADDITEMS = 0x90, Operand::None;
    FROZENSET = 0x91, Operand::None;
    NEWOBJ_EX = 0x92, Operand::None;
    STACK_GLOBAL = 0x93, Operand::None;
    MEMOIZE = 0x94, Operand::None;
    FRAME = 0x95, Operand::Fixed(8);
    BYTEARRAY8 = 0x96, Operand::Counted(8);
    NEXT_BUFFER = 0x97, Operand::None;
    READONLY_BUFFER = 0x98, Operand::None;
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let mut n = 0;
        for b in 0..=255u8 {
            if let Some(op) = Opcode::from_byte(b) {
                assert_eq!(op.byte(), b);
                n += 1;
            }
        }
        // pickletools lists 68 opcodes for protocols 0-5.
        assert_eq!(n, 68);
    }
}
