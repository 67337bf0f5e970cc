//! Pickle opcode *framing*: where each opcode starts and ends, and where a pickle stops.
//!
//! This is not a pickle machine: it builds no values and resolves nothing. It exists to
//! identify pickles that carry no `PROTO` opcode (protocols 0 and 1) and to find the end of
//! each pickle of a stacked stream (legacy torch files: a few pickles, then raw storages) so
//! that only the pickles are read. The analysis proper is done by `tensorseal-pickle`.

/// How an opcode's argument is laid out.
#[derive(Clone, Copy)]
enum Arg {
    None,
    Fixed(usize),
    /// One newline-terminated line.
    Line,
    /// Two newline-terminated lines (GLOBAL, INST).
    TwoLines,
    /// A little-endian length of this many bytes, then that many bytes.
    Counted(usize),
}

fn arg_of(op: u8) -> Option<Arg> {
    use Arg::*;
    Some(match op {
        b'(' | b'.' | b'0' | b'1' | b'2' | b'N' | b'R' | b'a' | b'b' | b'd' | b'}' | b'e'
        | b'l' | b']' | b'o' | b's' | b't' | b')' | b'u' | b'Q' => None,
        0x81 | 0x85 | 0x86 | 0x87 | 0x88 | 0x89 | 0x8f | 0x90 | 0x91 | 0x92 | 0x93 | 0x94
        | 0x97 | 0x98 => None,
        b'F' | b'I' | b'L' | b'S' | b'V' | b'P' | b'g' | b'p' => Line,
        b'c' | b'i' => TwoLines,
        b'h' | b'q' | b'K' | 0x80 | 0x82 => Fixed(1),
        b'M' | 0x83 => Fixed(2),
        b'J' | b'j' | b'r' | 0x84 => Fixed(4),
        b'G' | 0x95 => Fixed(8),
        0x8a | b'U' | 0x8c | b'C' => Counted(1),
        b'T' | b'X' | b'B' | 0x8b => Counted(4),
        0x8d | 0x8e | 0x96 => Counted(8),
        _ => return Option::None,
    })
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
    let mut pos = start;
    let mut ops = 0usize;
    let mut proto = None;
    let mut has_global = false;
    loop {
        let Some(&op) = data.get(pos) else {
            return Frame::Truncated { ops };
        };
        let Some(arg) = arg_of(op) else {
            return Frame::Invalid { offset: pos, ops };
        };
        if ops == 0 && op == 0x80 {
            proto = data.get(pos + 1).copied();
        }
        if matches!(op, b'c' | b'i' | 0x93) {
            has_global = true;
        }
        let body = pos + 1;
        let next = match arg {
            Arg::None => Some(body),
            Arg::Fixed(n) => body.checked_add(n),
            Arg::Line => match line_end(data, body) {
                LineEnd::At(e) => Some(e),
                LineEnd::Truncated => return Frame::Truncated { ops },
                LineEnd::Bad => return Frame::Invalid { offset: pos, ops },
            },
            Arg::TwoLines => {
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
            Arg::Counted(w) => {
                let Some(len_bytes) = body.checked_add(w).and_then(|e| data.get(body..e)) else {
                    return Frame::Truncated { ops };
                };
                let mut le = [0u8; 8];
                if let Some(dst) = le.get_mut(..w) {
                    dst.copy_from_slice(len_bytes);
                }
                let n = u64::from_le_bytes(le);
                if w == 4 && (op == b'T') && n > i32::MAX as u64 {
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
        if op == b'.' {
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

/// How sure content-based identification is that bytes are a pickle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickleGuess {
    /// Not a pickle.
    No,
    /// A pickle (PROTO opcode, or a well-formed protocol 0/1 stream).
    Yes,
}

/// Content-based pickle identification for `prefix` (the first bytes of something whose
/// full length is `total`).
///
/// Protocol 2+ pickles start with PROTO. Protocol 0/1 pickles have no magic: the prefix
/// must frame as opcodes up to a STOP (or to the end of the prefix when the file is longer),
/// with a few opcodes at least, and a text-looking file must not pass by accident.
pub fn guess(prefix: &[u8], total: u64) -> PickleGuess {
    match prefix {
        [0x80, p, ..] if *p <= 5 => {
            // PROTO n followed by a valid opcode.
            return match prefix.get(2) {
                Some(&op) if arg_of(op).is_some() => PickleGuess::Yes,
                None if total <= 2 => PickleGuess::No,
                _ => PickleGuess::No,
            };
        }
        [] => return PickleGuess::No,
        _ => {}
    }
    // Protocol 0/1: typical first opcodes.
    let first = prefix.first().copied().unwrap_or(0);
    if !matches!(
        first,
        b'(' | b'c'
            | b'i'
            | b'}'
            | b']'
            | b')'
            | b'N'
            | b'I'
            | b'L'
            | b'F'
            | b'S'
            | b'V'
            | b'U'
            | b'T'
            | b'X'
            | b'K'
            | b'M'
            | b'J'
            | b'G'
            | b'P'
    ) {
        return PickleGuess::No;
    }
    match frame(prefix, 0) {
        Frame::Complete { ops, end, .. } => {
            // A lone `N.` is a pickle of None; a short text like "I am.\n" is not what we
            // want to call a pickle unless the whole input is that pickle.
            let stacked = prefix.get(end).is_some_and(|&b| arg_of(b).is_some());
            if ops >= 2 && (end as u64 == total || ops >= 3 || stacked) {
                PickleGuess::Yes
            } else {
                PickleGuess::No
            }
        }
        Frame::Truncated { ops } if (prefix.len() as u64) < total && ops >= 8 => PickleGuess::Yes,
        _ => PickleGuess::No,
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
        assert_eq!(guess(p0, p0.len() as u64), PickleGuess::Yes);
    }

    #[test]
    fn text_is_not_a_pickle() {
        for t in [
            &b"config = 1\n"[..],
            b"(this is text)",
            b"{\"a\": 1}",
            b"Ideas.\n",
            b"",
        ] {
            assert_eq!(guess(t, t.len() as u64), PickleGuess::No, "{t:?}");
        }
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
