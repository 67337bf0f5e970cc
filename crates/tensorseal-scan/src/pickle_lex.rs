//! Pickle opcode *framing*: where each opcode starts and ends, and where a pickle stops.
//!
//! This is not a pickle machine: it builds no values and resolves nothing. It gives the
//! cheap positive sniff (a leading `PROTO`), the length an opcode needs (to grow a read
//! window only when the content could still be a pickle), and the end of each pickle of a
//! stacked stream. Whether content *is* a pickle is decided by running the analysis machine
//! of `tensorseal-pickle` over it (see `pickles::probe`), never by a list of start bytes.

use tensorseal_pickle::{Opcode, Operand};

/// The opcode of a byte and its operand layout, from the pickle crate's one opcode table.
fn opcode_of(byte: u8) -> Option<(Opcode, Operand)> {
    Opcode::from_byte(byte).map(|op| (op, op.operand()))
}

/// Longest text line accepted in a protocol-0 opcode argument while framing.
const MAX_LINE: usize = 1 << 20;

/// The outcome of framing one pickle starting at some offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete pickle: `end` is the offset just past its STOP opcode.
    Complete {
        /// Offset just past STOP.
        end: usize,
        /// Number of opcodes, STOP included.
        ops: usize,
        /// The protocol from a leading PROTO opcode, if any.
        proto: Option<u8>,
        /// Whether any GLOBAL/INST/STACK_GLOBAL opcode occurred.
        has_global: bool,
    },
    /// The input ended inside the pickle after this many valid opcodes.
    Truncated {
        /// Number of complete opcodes seen.
        ops: usize,
    },
    /// A byte that is not an opcode (or a malformed argument) at `offset`.
    Invalid {
        /// Offset of the bad opcode.
        offset: usize,
        /// Number of complete opcodes before it.
        ops: usize,
    },
}

/// Frames the pickle that starts at `start` in `data`.
pub fn frame(data: &[u8], start: usize) -> Frame {
    frame_with(data, start, &mut |_, _| true)
}

/// Offset of the first `PERSID` opcode of the pickle at `start`, if it has one. `PERSID`
/// calls the unpickler's `persistent_load` with a text id: plain `pickle.load` has none and
/// raises, and torch's legacy readers refuse text ids, so no loader runs what follows it.
pub fn first_persid(data: &[u8], start: usize) -> Option<usize> {
    let mut found = None;
    frame_with(data, start, &mut |op, pos| {
        if op == Opcode::PERSID {
            found = Some(pos);
            return false;
        }
        true
    });
    found
}

/// Whether the pickle at `start` frames (every byte an opcode with its argument) up to
/// `STOP` and calls something named by a global on the way: a `GLOBAL`/`INST`/
/// `STACK_GLOBAL` (or extension) opcode, then a calling opcode (`REDUCE`, `INST`, `OBJ`,
/// `NEWOBJ`, `NEWOBJ_EX`, `BUILD`). This judges by layout alone, without the values the
/// analysis machine builds: where the machine refuses an operand, this still says whether a
/// loader that accepts it would make a call.
pub fn frames_call(data: &[u8], start: usize) -> bool {
    let mut named = false;
    let mut calls = false;
    let f = frame_with(data, start, &mut |op, _| {
        use Opcode::*;
        if matches!(op, GLOBAL | INST | STACK_GLOBAL | EXT1 | EXT2 | EXT4) {
            named = true;
        }
        if named && matches!(op, REDUCE | INST | OBJ | NEWOBJ | NEWOBJ_EX | BUILD) {
            calls = true;
        }
        true
    });
    calls && matches!(f, Frame::Complete { .. })
}

/// [`frame`], calling `visit(opcode, offset)` before each opcode; framing stops (reported as
/// truncated) when it returns false.
fn frame_with(data: &[u8], start: usize, visit: &mut dyn FnMut(Opcode, usize) -> bool) -> Frame {
    let mut pos = start;
    let mut ops = 0usize;
    let mut proto = None;
    let mut has_global = false;
    loop {
        let Some(&byte) = data.get(pos) else {
            return Frame::Truncated { ops };
        };
        let Some((op, arg)) = opcode_of(byte) else {
            return Frame::Invalid { offset: pos, ops };
        };
        if !visit(op, pos) {
            return Frame::Truncated { ops };
        }
        if ops == 0 && op == Opcode::PROTO {
            proto = data.get(pos + 1).copied();
        }
        if matches!(op, Opcode::GLOBAL | Opcode::INST | Opcode::STACK_GLOBAL) {
            has_global = true;
        }
        let body = pos + 1;
        let next = match arg {
            Operand::None => Some(body),
            Operand::Fixed(n) => body.checked_add(n),
            Operand::Line => match line_end(data, body) {
                LineEnd::At(e) => Some(e),
                LineEnd::Truncated => return Frame::Truncated { ops },
                LineEnd::Bad => return Frame::Invalid { offset: pos, ops },
            },
            Operand::TwoLines => {
                let first = match line_end(data, body) {
                    LineEnd::At(e) => e,
                    LineEnd::Truncated => return Frame::Truncated { ops },
                    LineEnd::Bad => return Frame::Invalid { offset: pos, ops },
                };
                match line_end(data, first) {
                    LineEnd::At(e) => Some(e),
                    LineEnd::Truncated => return Frame::Truncated { ops },
                    LineEnd::Bad => return Frame::Invalid { offset: pos, ops },
                }
            }
            Operand::Counted(w) => {
                let Some(len_bytes) = body.checked_add(w).and_then(|e| data.get(body..e)) else {
                    return Frame::Truncated { ops };
                };
                let mut le = [0u8; 8];
                if let Some(dst) = le.get_mut(..w) {
                    dst.copy_from_slice(len_bytes);
                }
                let n = u64::from_le_bytes(le);
                if op == Opcode::BINSTRING && n > i32::MAX as u64 {
                    return Frame::Invalid { offset: pos, ops };
                }
                usize::try_from(n)
                    .ok()
                    .and_then(|n| (body + w).checked_add(n))
            }
        };
        let Some(next) = next else {
            return Frame::Invalid { offset: pos, ops };
        };
        if next > data.len() {
            return Frame::Truncated { ops };
        }
        ops += 1;
        pos = next;
        if op == Opcode::STOP {
            return Frame::Complete {
                end: pos,
                ops,
                proto,
                has_global,
            };
        }
    }
}

enum LineEnd {
    At(usize),
    Truncated,
    Bad,
}

fn line_end(data: &[u8], from: usize) -> LineEnd {
    let Some(rest) = data.get(from..) else {
        return LineEnd::Truncated;
    };
    let window = rest.get(..MAX_LINE.min(rest.len())).unwrap_or(rest);
    match window.iter().position(|&b| b == b'\n') {
        Some(i) => LineEnd::At(from + i + 1),
        None if rest.len() > MAX_LINE => LineEnd::Bad,
        None => LineEnd::Truncated,
    }
}

/// How sure the cheap sniff is that bytes are a pickle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickleGuess {
    /// The sniff cannot tell: run the analysis machine over the content (see
    /// `pickles::probe`), which decides by what `pickle.load` would do.
    Unsure,
    /// A pickle: a `PROTO` opcode that CPython accepts (0 to 5) followed by an opcode.
    Yes,
}

/// The cheap sniff: only a leading `PROTO` (the one opcode a protocol 2+ writer always puts
/// first) counts as a positive identification. Everything else, including protocol 0/1
/// streams, streams whose first opcode is `FRAME`, `NEWTRUE`, `SHORT_BINUNICODE` or any
/// other opcode, and streams whose first opcode is longer than any window, is
/// [`PickleGuess::Unsure`]: the caller runs the analysis machine from offset 0 over the
/// whole content (within its limits) instead of trusting a list of start bytes.
pub fn guess(prefix: &[u8]) -> PickleGuess {
    match prefix {
        [0x80, p, op, ..] if *p <= 5 && opcode_of(*op).is_some() => PickleGuess::Yes,
        _ => PickleGuess::Unsure,
    }
}

/// Where the opcode at `pos` ends, when its length is known without a line search: fixed
/// arguments and counted ones (whose declared length may run past the end of `data`).
/// `None` for unknown opcodes, text-line arguments and lengths cut off by the end of `data`.
pub fn needed_end(data: &[u8], pos: usize) -> Option<u64> {
    let (_, operand) = opcode_of(*data.get(pos)?)?;
    let body = pos as u64 + 1;
    match operand {
        Operand::None => Some(body),
        Operand::Fixed(n) => Some(body + n as u64),
        Operand::Line | Operand::TwoLines => None,
        Operand::Counted(w) => {
            let start = pos.checked_add(1)?;
            let bytes = data.get(start..start.checked_add(w)?)?;
            let mut le = [0u8; 8];
            le.get_mut(..w)?.copy_from_slice(bytes);
            Some((body + w as u64).saturating_add(u64::from_le_bytes(le)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_protocol2_and_0() {
        let p2 = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s.";
        assert_eq!(
            frame(p2, 0),
            Frame::Complete {
                end: p2.len(),
                ops: 8,
                proto: Some(2),
                has_global: false
            }
        );
        let p0 = b"cos\nsystem\n(S'echo'\ntR.";
        assert!(matches!(
            frame(p0, 0),
            Frame::Complete {
                has_global: true,
                ..
            }
        ));
        assert_eq!(guess(p0), PickleGuess::Unsure);
        assert_eq!(guess(p2), PickleGuess::Yes);
    }

    #[test]
    fn only_proto_is_a_sure_pickle() {
        for t in [
            &b"config = 1\n"[..],
            b"(this is text)",
            b"\x80\x06N.",
            b"\x95\x05\x00\x00\x00\x00\x00\x00\x00N.",
            b"",
        ] {
            assert_eq!(guess(t), PickleGuess::Unsure, "{t:?}");
        }
        assert_eq!(needed_end(b"X\xff\xff\x00\x00", 0), Some(5 + 0xffff));
        assert_eq!(needed_end(b"X\xff", 0), None);
        assert_eq!(needed_end(b"cos\n", 0), None);
        assert_eq!(needed_end(b"K\x01", 0), Some(2));
    }

    #[test]
    fn truncated_and_invalid() {
        assert_eq!(
            frame(b"\x80\x02X\xff\xff\xff\x7f", 0),
            Frame::Truncated { ops: 1 }
        );
        assert!(matches!(
            frame(b"\x80\x02\xff", 0),
            Frame::Invalid { offset: 2, .. }
        ));
        assert!(matches!(
            frame(b"\x8e\xff\xff\xff\xff\xff\xff\xff\xff", 0),
            Frame::Invalid { .. } | Frame::Truncated { .. }
        ));
    }
}
