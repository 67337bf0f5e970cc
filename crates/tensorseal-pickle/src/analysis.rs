//! Analysis mode: run the machine over every pickle of a stream, record
//! every global and how it is used, and keep going after findings.

use crate::error::PickleError;
use crate::limits::Limits;
use crate::opcode::{Opcode, Operand};
use crate::policy::{self, Class};
use crate::record::{GlobalRef, Resolution};
use crate::vm::{Machine, Mode, NestedCandidate};

/// One pickle of a (possibly stacked) stream.
#[derive(Debug, Clone, PartialEq)]
pub struct PickleReport {
    /// Offset of its first opcode.
    pub start: usize,
    /// Offset just past its `STOP` (or where it failed).
    pub end: usize,
    /// Protocol from `PROTO`, if any.
    pub protocol: Option<u8>,
    /// Why the machine stopped early, if it did.
    pub error: Option<PickleError>,
}

/// A pickle found inside a bytes argument of a call.
#[derive(Debug, Clone, PartialEq)]
pub struct NestedPickle {
    /// Offset of the call opcode in the outer pickle.
    pub offset: usize,
    /// The calling opcode.
    pub opcode: Opcode,
    /// `module.name` of the callee, or `bytes argument`.
    pub via: String,
    /// Length of the nested bytes.
    pub len: usize,
    /// Its analysis (`None` when deeper than [`Limits::max_nested`]).
    pub analysis: Option<Box<Analysis>>,
}

/// Everything found in a pickle stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Analysis {
    /// Each pickle of the stream, in order.
    pub pickles: Vec<PickleReport>,
    /// Every global reference, in order of appearance.
    pub globals: Vec<GlobalRef>,
    /// Pickles nested in bytes arguments.
    pub nested: Vec<NestedPickle>,
    /// Errors (also attached to their [`PickleReport`]).
    pub errors: Vec<PickleError>,
    /// Offset of bytes after the last pickle that are not a pickle.
    pub trailing: Option<usize>,
}

impl Analysis {
    /// Every global of this analysis and of its nested pickles.
    pub fn all_globals(&self) -> Vec<&GlobalRef> {
        let mut out: Vec<&GlobalRef> = self.globals.iter().collect();
        for n in &self.nested {
            if let Some(a) = &n.analysis {
                out.extend(a.all_globals());
            }
        }
        out
    }

    /// Globals classified dangerous (including nested pickles).
    pub fn dangerous(&self) -> Vec<&GlobalRef> {
        self.all_globals()
            .into_iter()
            .filter(|g| matches!(g.class, Class::Dangerous { .. }))
            .collect()
    }

    /// Globals classified unknown (including nested pickles).
    pub fn unknown(&self) -> Vec<&GlobalRef> {
        self.all_globals()
            .into_iter()
            .filter(|g| g.class == Class::Unknown)
            .collect()
    }

    /// True when every global is allowed and no error occurred.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
            && self.all_globals().iter().all(|g| g.class == Class::Allowed)
            && self
                .nested
                .iter()
                .all(|n| n.analysis.as_ref().is_some_and(|a| a.is_clean()))
    }
}

/// Analyses every pickle of `data` (a stacked stream is several
/// `STOP`-terminated pickles back to back). Never fails: errors are recorded.
///
/// ```
/// use tensorseal_pickle::{analyze, Limits};
/// let a = analyze(b"cos\nsystem\n(S'touch /tmp/x'\ntR.", &Limits::default());
/// let g = &a.globals[0];
/// assert_eq!(g.qualified(), "os.system");
/// assert!(g.is_called());
/// assert_eq!(a.dangerous().len(), 1);
/// ```
pub fn analyze(data: &[u8], limits: &Limits) -> Analysis {
    analyze_level(data, limits, 0)
}

fn analyze_level(data: &[u8], limits: &Limits, level: usize) -> Analysis {
    let mut out = analyze_pass(data, limits, level, false);
    if out.pickles.len() > 1 {
        // Each pickle of a stack is read with a fresh memo by `pickle.load` in a loop and by
        // torch's legacy reader; a reader that keeps one `Unpickler` shares the memo across
        // them. `MEMOIZE` numbers entries by the memo's size, so the same `GET` names
        // different objects under the two readings: globals only the shared reading
        // resolves are added.
        let shared = analyze_pass(data, limits, level, true);
        let mut known: std::collections::HashSet<(usize, String, String)> = out
            .globals
            .iter()
            .map(|g| (g.offset, g.module.clone(), g.name.clone()))
            .collect();
        for g in shared.globals {
            if known.insert((g.offset, g.module.clone(), g.name.clone())) {
                out.globals.push(g);
            }
        }
        let nested_at: std::collections::HashSet<usize> =
            out.nested.iter().map(|n| n.offset).collect();
        out.nested.extend(
            shared
                .nested
                .into_iter()
                .filter(|n| !nested_at.contains(&n.offset)),
        );
    }
    out
}

/// One reading of a stream: each pickle with a fresh memo, or (`shared_memo`) one memo for
/// all of them.
fn analyze_pass(data: &[u8], limits: &Limits, level: usize, shared_memo: bool) -> Analysis {
    let mut m = Machine::new(data, limits, Mode::Analyze);
    let mut out = Analysis::default();
    let mut pos = 0;
    while pos < data.len() {
        if out.pickles.len() >= limits.max_pickles {
            let e = PickleError::Limit {
                limit: "pickles in one stream",
                max: limits.max_pickles as u64,
                offset: pos,
            };
            out.errors.push(e);
            break;
        }
        m.reset_stack();
        if !shared_memo {
            m.reset_memo();
        }
        m.pickle_index = out.pickles.len();
        let globals_before = m.globals.len();
        let first = out.pickles.is_empty();
        match m.run_one(pos) {
            Ok(_) => {
                out.pickles.push(PickleReport {
                    start: pos,
                    end: m.pos(),
                    protocol: m.protocol,
                    error: None,
                });
                pos = m.pos();
            }
            Err(e) => {
                let starts_like_pickle =
                    matches!(data.get(pos..pos + 2), Some([0x80, p]) if *p <= 5);
                // Whether the rest still names a global when walked as opcodes: the machine
                // may refuse an operand CPython accepts, and a loader reading pickles in a
                // loop then runs what follows. Such bytes are analysed, never skipped.
                let names_globals = || {
                    let mut probe = Vec::new();
                    tail_scan(data, pos, 0, &mut probe);
                    !probe.is_empty()
                };
                if !first
                    && !starts_like_pickle
                    && m.globals.len() == globals_before
                    && !names_globals()
                {
                    // Data after the last pickle (e.g. raw tensor bytes).
                    out.trailing = Some(pos);
                    break;
                }
                let failed_at = m.op_offset;
                out.pickles.push(PickleReport {
                    start: pos,
                    end: failed_at,
                    protocol: m.protocol,
                    error: Some(e.clone()),
                });
                out.errors.push(e);
                // What Python would not reach can still matter to a reader
                // that resynchronises: list the globals named in the rest.
                let resume = if failed_at > pos { failed_at } else { pos };
                tail_scan(data, resume, m.pickle_index, &mut m.globals);
                break;
            }
        }
    }
    out.globals = std::mem::take(&mut m.globals);
    out.nested = m
        .nested
        .iter()
        .map(|c| read_nested(&m, c, limits, level))
        .collect();
    out
}

/// Analyses one nested-pickle candidate the machine recorded, one level deeper (not at all
/// past [`Limits::max_nested`]).
fn read_nested(m: &Machine, c: &NestedCandidate, limits: &Limits, level: usize) -> NestedPickle {
    let bytes = m.candidate_bytes(c).unwrap_or_default();
    let analysis =
        (level < limits.max_nested).then(|| Box::new(analyze_level(&bytes, limits, level + 1)));
    NestedPickle {
        offset: c.offset,
        opcode: c.opcode,
        via: c.via.clone(),
        len: bytes.len(),
        analysis,
    }
}

/// Linear opcode walk from `start` (skipping the opcode that failed),
/// recording `GLOBAL`/`INST` operands and `STACK_GLOBAL`s with the two most
/// recent string operands. Stops at the first undecodable byte.
fn tail_scan(data: &[u8], start: usize, pickle: usize, globals: &mut Vec<GlobalRef>) {
    let mut pos = start;
    let mut strings: Vec<String> = Vec::new();
    let mut first = true;
    let line = |pos: &mut usize| -> Option<Vec<u8>> {
        let rest = data.get(*pos..)?;
        let i = rest.iter().position(|&b| b == b'\n')?;
        let l = rest.get(..i)?.to_vec();
        *pos += i + 1;
        Some(l)
    };
    let take = |pos: &mut usize, n: u64| -> Option<Vec<u8>> {
        let n = usize::try_from(n).ok()?;
        let s = data.get(*pos..pos.checked_add(n)?)?.to_vec();
        *pos += n;
        Some(s)
    };
    let le = |b: Vec<u8>| -> u64 {
        let mut a = [0u8; 8];
        for (d, s) in a.iter_mut().zip(&b) {
            *d = *s;
        }
        u64::from_le_bytes(a)
    };
    let mut budget = 10_000_000u32;
    while let Some(&byte) = data.get(pos) {
        budget = budget.saturating_sub(1);
        if budget == 0 || globals.len() > 1_000_000 {
            return;
        }
        let off = pos;
        pos += 1;
        let Some(op) = Opcode::from_byte(byte) else {
            return;
        };
        use Opcode::*;
        let skip_first = first;
        first = false;
        let r: Option<()> = (|| {
            match op {
                GLOBAL | INST => {
                    let m = String::from_utf8_lossy(&line(&mut pos)?).into_owned();
                    let n = String::from_utf8_lossy(&line(&mut pos)?).into_owned();
                    if !(skip_first && globals.iter().any(|g| g.offset == off)) {
                        globals.push(found_after_error(pickle, m, n, off, op));
                    }
                }
                STACK_GLOBAL => {
                    let n = strings.pop().unwrap_or_else(|| "<?>".to_owned());
                    let m = strings.pop().unwrap_or_else(|| "<?>".to_owned());
                    globals.push(found_after_error(pickle, m, n, off, op));
                }
                STRING | UNICODE => {
                    let l = line(&mut pos)?;
                    strings.push(
                        String::from_utf8_lossy(l.get(1..l.len().saturating_sub(1)).unwrap_or(&l))
                            .into_owned(),
                    );
                }
                SHORT_BINSTRING | SHORT_BINUNICODE | BINSTRING | BINUNICODE | BINUNICODE8 => {
                    let Operand::Counted(w) = op.operand() else {
                        return None;
                    };
                    let n = le(take(&mut pos, w as u64)?);
                    strings.push(String::from_utf8_lossy(&take(&mut pos, n)?).into_owned());
                }
                _ => match op.operand() {
                    Operand::None => {}
                    Operand::Fixed(n) => {
                        take(&mut pos, n as u64)?;
                    }
                    Operand::Line => {
                        line(&mut pos)?;
                    }
                    Operand::TwoLines => {
                        line(&mut pos)?;
                        line(&mut pos)?;
                    }
                    Operand::Counted(w) => {
                        let n = le(take(&mut pos, w as u64)?);
                        take(&mut pos, n)?;
                    }
                },
            }
            Some(())
        })();
        if r.is_none() {
            return;
        }
    }
}

/// A global found by the linear scan that follows a structural error:
/// classified, with no call sites (the machine no longer tracks the stack).
fn found_after_error(
    pickle: usize,
    module: String,
    name: String,
    offset: usize,
    opcode: Opcode,
) -> GlobalRef {
    let class = policy::classify(&module, &name);
    GlobalRef {
        pickle,
        module,
        name,
        offset,
        opcode,
        resolution: Resolution::AfterError,
        calls: Vec::new(),
        class,
    }
}
