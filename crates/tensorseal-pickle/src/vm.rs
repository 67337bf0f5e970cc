//! The pickle machine: an arena of plain-data nodes, a stack of node ids, a
//! mark stack and a memo. Shared references (memo, `DUP`) are ids, so
//! mutations after `MEMOIZE` are seen by every holder, as in Python.

use std::collections::HashMap;

use std::borrow::Cow;

use crate::error::PickleError;
use crate::limits::Limits;
use crate::opcode::Opcode;
use crate::policy::{self, Class};
use crate::record::{CallSite, GlobalRef, Resolution};
use crate::value::{Call, CallKind, Value};

pub(crate) type Id = usize;

/// Rough cost of one node in bytes, for the allocation limit.
const NODE_COST: usize = 64;

#[derive(Debug)]
pub(crate) enum Node {
    None,
    Bool(bool),
    Int(i64),
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    ByteArray(Vec<u8>),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Set(Vec<Id>),
    FrozenSet(Vec<Id>),
    Global {
        module: String,
        name: String,
        gref: Option<usize>,
    },
    Call {
        callable: Id,
        args: Id,
        kwargs: Option<Id>,
        kind: CallKind,
        state: Option<Id>,
        list_items: Vec<Id>,
        dict_items: Vec<(Id, Id)>,
    },
    PersistentId(Id),
    Buffer,
    Ext(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Strict,
    Analyze,
}

pub(crate) struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    limits: &'a Limits,
    mode: Mode,
    nodes: Vec<Node>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
    alloc: usize,
    ops: u64,
    pub(crate) pickle_index: usize,
    pub(crate) protocol: Option<u8>,
    pub(crate) globals: Vec<GlobalRef>,
    /// Bytes arguments that may be pickles, in call order; the analysis reads them.
    pub(crate) nested: Vec<NestedCandidate>,
    /// Offset of the opcode being executed (for error reporting).
    pub(crate) op_offset: usize,
}

type R<T> = Result<T, PickleError>;

/// A bytes (or, for a pickle loader, text) argument of a call that may hold a nested
/// pickle. The machine only records it; [`crate::analyze`] reads it with
/// [`Machine::candidate_bytes`] and analyses it one level deeper.
#[derive(Debug)]
pub(crate) struct NestedCandidate {
    /// Offset of the call opcode.
    pub(crate) offset: usize,
    /// The calling opcode.
    pub(crate) opcode: Opcode,
    /// `module.name` of the callee, or `bytes argument`.
    pub(crate) via: String,
    /// The argument's node: bytes, bytearray or (handed to a loader) a string whose
    /// characters are all below 256.
    node: Id,
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Text for `STRING`/`BINSTRING` operands: UTF-8 when valid, else Latin-1.
fn text_of(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => latin1(bytes),
    }
}

impl<'a> Machine<'a> {
    pub(crate) fn new(data: &'a [u8], limits: &'a Limits, mode: Mode) -> Self {
        Machine {
            data,
            pos: 0,
            limits,
            mode,
            nodes: Vec::new(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            alloc: 0,
            ops: 0,
            pickle_index: 0,
            protocol: None,
            globals: Vec::new(),
            nested: Vec::new(),
            op_offset: 0,
        }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    // ---------------------------------------------------------------- input

    fn truncated(&self, what: &str) -> PickleError {
        PickleError::Truncated {
            what: what.to_owned(),
            offset: self.op_offset,
        }
    }

    fn take(&mut self, n: u64, what: &str) -> R<&'a [u8]> {
        let rest = self.data.len().saturating_sub(self.pos);
        let n = usize::try_from(n).map_err(|_| self.truncated(what))?;
        if n > rest {
            return Err(self.truncated(what));
        }
        let start = self.pos;
        self.pos += n;
        self.data
            .get(start..start + n)
            .ok_or_else(|| self.truncated(what))
    }

    fn array<const N: usize>(&mut self, what: &str) -> R<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, what: &str) -> R<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    fn readline(&mut self, what: &str) -> R<&'a [u8]> {
        let rest = self.data.get(self.pos..).unwrap_or(&[]);
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let line = rest.get(..i).unwrap_or(&[]);
                self.pos += i + 1;
                Ok(line)
            }
            None => Err(self.truncated(what)),
        }
    }

    // ------------------------------------------------------------ resources

    fn err_invalid(&self, op: Opcode, detail: impl Into<String>) -> PickleError {
        PickleError::Invalid {
            opcode: op,
            offset: self.op_offset,
            detail: detail.into(),
        }
    }

    fn limit(&self, limit: &'static str, max: u64) -> PickleError {
        PickleError::Limit {
            limit,
            max,
            offset: self.op_offset,
        }
    }

    fn charge(&mut self, bytes: usize) -> R<()> {
        self.alloc = self.alloc.saturating_add(bytes);
        if self.alloc > self.limits.max_alloc {
            return Err(self.limit("bytes allocated", self.limits.max_alloc as u64));
        }
        Ok(())
    }

    fn node(&mut self, node: Node) -> R<Id> {
        let payload = match &node {
            Node::BigInt(b) | Node::Bytes(b) | Node::ByteArray(b) => b.len(),
            Node::Str(s) => s.len(),
            Node::Global { module, name, .. } => module.len() + name.len(),
            Node::Tuple(v) | Node::List(v) | Node::Set(v) | Node::FrozenSet(v) => v.len() * 8,
            Node::Dict(v) => v.len() * 16,
            _ => 0,
        };
        self.charge(NODE_COST + payload)?;
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    fn push(&mut self, id: Id) -> R<()> {
        if self.stack.len() + self.marks.len() >= self.limits.max_stack {
            return Err(self.limit("stack entries", self.limits.max_stack as u64));
        }
        self.stack.push(id);
        Ok(())
    }

    fn push_node(&mut self, node: Node) -> R<()> {
        let id = self.node(node)?;
        self.push(id)
    }

    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self, op: Opcode) -> R<Id> {
        if self.stack.len() <= self.fence() {
            return Err(PickleError::StackUnderflow {
                opcode: op,
                offset: self.op_offset,
            });
        }
        self.stack.pop().ok_or(PickleError::StackUnderflow {
            opcode: op,
            offset: self.op_offset,
        })
    }

    fn top(&self, op: Opcode) -> R<Id> {
        if self.stack.len() <= self.fence() {
            return Err(PickleError::StackUnderflow {
                opcode: op,
                offset: self.op_offset,
            });
        }
        self.stack
            .last()
            .copied()
            .ok_or(PickleError::StackUnderflow {
                opcode: op,
                offset: self.op_offset,
            })
    }

    fn pop_mark(&mut self, op: Opcode) -> R<Vec<Id>> {
        let m = self.marks.pop().ok_or(PickleError::MissingMark {
            opcode: op,
            offset: self.op_offset,
        })?;
        let m = m.min(self.stack.len());
        let items = self.stack.split_off(m);
        if items.len() > self.limits.max_container {
            return Err(self.limit("items in one container", self.limits.max_container as u64));
        }
        Ok(items)
    }

    fn check_container(&self, len: usize) -> R<()> {
        if len >= self.limits.max_container {
            return Err(self.limit("items in one container", self.limits.max_container as u64));
        }
        Ok(())
    }

    fn memo_put(&mut self, key: u64, id: Id) -> R<()> {
        if !self.memo.contains_key(&key) && self.memo.len() >= self.limits.max_memo {
            return Err(self.limit("memo entries", self.limits.max_memo as u64));
        }
        self.charge(32)?;
        self.memo.insert(key, id);
        Ok(())
    }

    fn memo_get(&mut self, key: u64, op: Opcode) -> R<()> {
        match self.memo.get(&key) {
            Some(&id) => self.push(id),
            None => Err(PickleError::MemoMissing {
                key,
                opcode: op,
                offset: self.op_offset,
            }),
        }
    }

    // ------------------------------------------------------------- decoding

    /// A memo key of `PUT`/`GET`: CPython reads it with `int(line, 10)` semantics
    /// (surrounding whitespace, a sign, leading zeros and `_` between digits), and refuses
    /// negative keys (`-0` is 0).
    fn decimal_line(&mut self, op: Opcode) -> R<u64> {
        let line = self.readline(op.name())?;
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| py_int_literal(s, IntSyntax::Base10))
            .and_then(|(neg, digits, radix)| {
                let v = digits_to_u64(&digits, radix)?;
                (!neg || v == 0).then_some(v)
            })
            .ok_or_else(|| self.err_invalid(op, format!("bad decimal operand {:?}", latin1(line))))
    }

    /// `INT` and `LONG` operands with CPython's semantics: `int(text, 0)` (hex, octal and
    /// binary prefixes, `_` between digits, surrounding whitespace), C's legacy leading-zero
    /// octal for `INT`, and `00`/`01` (or any two-character 0/1) as booleans.
    fn int_line(&mut self, op: Opcode) -> R<Node> {
        let line = self.readline(op.name())?;
        let text = std::str::from_utf8(line)
            .map_err(|_| self.err_invalid(op, format!("bad integer {:?}", latin1(line))))?;
        let (text, syntax) = if op == Opcode::INT {
            (text, IntSyntax::CInt)
        } else {
            let t = text.strip_suffix('\r').unwrap_or(text);
            (t.strip_suffix('L').unwrap_or(t), IntSyntax::Base0)
        };
        let Some((neg, digits, radix)) = py_int_literal(text, syntax) else {
            return Err(self.err_invalid(op, format!("bad integer {:?}", truncate(text))));
        };
        let small = digits_to_u64(&digits, radix);
        if op == Opcode::INT && line.len() == 2 {
            if let Some(v @ (0 | 1)) = small {
                return Ok(Node::Bool(v == 1));
            }
        }
        if let Some(i) = small
            .and_then(|v| i64::try_from(v).ok())
            .map(|v| if neg { -v } else { v })
        {
            return Ok(Node::Int(i));
        }
        match digits_to_twos(neg, &digits, radix) {
            Some(b) => Ok(Node::BigInt(b)),
            None => Err(self.err_invalid(op, format!("bad integer {:?}", truncate(text)))),
        }
    }

    fn global_operands(&mut self, op: Opcode) -> R<(String, String)> {
        let module = self.readline(op.name())?;
        let name = self.readline(op.name())?;
        Ok((
            String::from_utf8_lossy(module).into_owned(),
            String::from_utf8_lossy(name).into_owned(),
        ))
    }

    fn bytes_node(&mut self, len: u64, op: Opcode, kind: fn(Vec<u8>) -> Node) -> R<()> {
        let b = self.take(len, op.name())?;
        self.charge(b.len())?;
        let n = kind(b.to_vec());
        self.push_node(n)
    }

    fn unicode_node(&mut self, len: u64, op: Opcode) -> R<()> {
        let b = self.take(len, op.name())?;
        self.charge(b.len())?;
        let s = String::from_utf8_lossy(b).into_owned();
        self.push_node(Node::Str(s))
    }

    // -------------------------------------------------------------- globals

    fn make_global(
        &mut self,
        module: String,
        name: String,
        op: Opcode,
        resolution: Resolution,
    ) -> R<Id> {
        let class = if resolution == Resolution::Dynamic {
            Class::Unknown
        } else {
            policy::classify(&module, &name)
        };
        let gref = match self.mode {
            Mode::Strict => {
                if class != Class::Allowed {
                    let why = match &class {
                        Class::Dangerous { reason } => format!("dangerous: {reason}"),
                        _ => "not on the allow-list of weight files".to_owned(),
                    };
                    return Err(PickleError::Forbidden {
                        module,
                        name,
                        opcode: op,
                        offset: self.op_offset,
                        why,
                    });
                }
                None
            }
            Mode::Analyze => {
                self.charge(NODE_COST + module.len() + name.len())?;
                self.globals.push(GlobalRef {
                    pickle: self.pickle_index,
                    module: module.clone(),
                    name: name.clone(),
                    offset: self.op_offset,
                    opcode: op,
                    resolution,
                    calls: Vec::new(),
                    class,
                });
                Some(self.globals.len() - 1)
            }
        };
        self.node(Node::Global { module, name, gref })
    }

    fn describe(&self, id: Id) -> String {
        match self.nodes.get(id) {
            Some(Node::Str(s)) => s.clone(),
            Some(Node::Global { module, name, .. }) => format!("<global {module}.{name}>"),
            Some(Node::Call { callable, .. }) => match self.nodes.get(*callable) {
                Some(Node::Global { module, name, .. }) => {
                    format!("<result of {module}.{name}(...)>")
                }
                _ => "<result of a call>".to_owned(),
            },
            Some(Node::Bytes(b)) => format!("<bytes {:?}>", truncate(&latin1(b))),
            Some(n) => format!("<{}>", node_kind(n)),
            None => "<?>".to_owned(),
        }
    }

    fn global_of(&self, id: Id) -> Option<(&str, &str, Option<usize>)> {
        match self.nodes.get(id) {
            Some(Node::Global { module, name, gref }) => Some((module, name, *gref)),
            _ => None,
        }
    }

    fn record_call(&mut self, callable: Id, kind: CallKind) {
        if let Some((_, _, Some(g))) = self.global_of(callable) {
            if let Some(gr) = self.globals.get_mut(g) {
                gr.calls.push(CallSite {
                    kind,
                    offset: self.op_offset,
                });
            }
        }
    }

    fn make_call(
        &mut self,
        op: Opcode,
        callable: Id,
        args: Id,
        kwargs: Option<Id>,
        kind: CallKind,
    ) -> R<Id> {
        let target = self
            .global_of(callable)
            .map(|(m, n, _)| (policy::normalize_module(m).to_owned(), n.to_owned()));
        if self.mode == Mode::Strict && target.is_none() {
            return Err(self.err_invalid(
                op,
                format!("calls {}, not an allowed global", self.describe(callable)),
            ));
        }
        self.record_call(callable, kind);
        if self.mode == Mode::Analyze {
            self.nested_pickles(op, target.as_ref(), args)?;
        }
        if let Some((m, n)) = &target {
            if kwargs.is_none() {
                if let Some(node) = self.pure(m, n, args) {
                    return self.node(node);
                }
            }
        }
        self.node(Node::Call {
            callable,
            args,
            kwargs,
            kind,
            state: None,
            list_items: Vec::new(),
            dict_items: Vec::new(),
        })
    }

    fn tuple_items(&self, id: Id) -> Option<&[Id]> {
        match self.nodes.get(id) {
            Some(Node::Tuple(v)) => Some(v),
            _ => None,
        }
    }

    /// Evaluates the few allow-listed constructors whose result is plain data.
    fn pure(&self, module: &str, name: &str, args: Id) -> Option<Node> {
        let items = self.tuple_items(args)?;
        let seq = |id: Id| -> Option<Vec<Id>> {
            match self.nodes.get(id)? {
                Node::List(v) | Node::Tuple(v) | Node::Set(v) | Node::FrozenSet(v) => {
                    Some(v.clone())
                }
                _ => None,
            }
        };
        match (module, name) {
            ("collections", "OrderedDict") => match items {
                [] => Some(Node::Dict(Vec::new())),
                [one] => {
                    let mut pairs = Vec::new();
                    for p in seq(*one)? {
                        match seq(p)?.as_slice() {
                            [k, v] => pairs.push((*k, *v)),
                            _ => return None,
                        }
                    }
                    Some(Node::Dict(pairs))
                }
                _ => None,
            },
            ("builtins", "set") | ("builtins", "frozenset") => {
                let v = match items {
                    [] => Vec::new(),
                    [one] => seq(*one)?,
                    _ => return None,
                };
                Some(if name == "set" {
                    Node::Set(v)
                } else {
                    Node::FrozenSet(v)
                })
            }
            ("builtins", "bytearray") => match items {
                [] => Some(Node::ByteArray(Vec::new())),
                [one] => match self.nodes.get(*one)? {
                    Node::Bytes(b) | Node::ByteArray(b) => Some(Node::ByteArray(b.clone())),
                    _ => None,
                },
                _ => None,
            },
            ("_codecs", "encode") => {
                let (s, enc) = match items {
                    [s] => (*s, None),
                    [s, e] => (*s, Some(*e)),
                    _ => return None,
                };
                let Some(Node::Str(s)) = self.nodes.get(s) else {
                    return None;
                };
                let enc = match enc {
                    None => "utf-8".to_owned(),
                    Some(e) => match self.nodes.get(e)? {
                        Node::Str(e) => e.to_ascii_lowercase().replace('_', "-"),
                        _ => return None,
                    },
                };
                match enc.as_str() {
                    "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "l1" => s
                        .chars()
                        .map(|c| u8::try_from(u32::from(c)).ok())
                        .collect::<Option<Vec<u8>>>()
                        .map(Node::Bytes),
                    "utf-8" | "utf8" => Some(Node::Bytes(s.as_bytes().to_vec())),
                    "ascii" if s.is_ascii() => Some(Node::Bytes(s.as_bytes().to_vec())),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Analysis: records bytes handed to a pickle loader (or that look like a pickle) as
    /// nested-pickle candidates.
    fn nested_pickles(&mut self, op: Opcode, target: Option<&(String, String)>, args: Id) -> R<()> {
        let via_loader = target.is_some_and(|(m, n)| policy::is_pickle_loader(m, n));
        let arg_ids: Vec<Id> = match self.nodes.get(args) {
            Some(Node::Tuple(v)) | Some(Node::List(v)) => v.clone(),
            Some(_) => vec![args],
            None => Vec::new(),
        };
        for a in arg_ids {
            let qualifies = match self.nodes.get(a) {
                Some(Node::Bytes(_)) | Some(Node::ByteArray(_)) | Some(Node::Str(_)) => self
                    .candidate_bytes_of(a, via_loader)
                    .is_some_and(|b| via_loader || matches!(*b, [0x80, p, ..] if p <= 5)),
                _ => false,
            };
            if qualifies {
                let via = target
                    .map(|(m, n)| format!("{m}.{n}"))
                    .unwrap_or_else(|| "bytes argument".to_owned());
                self.nested.push(NestedCandidate {
                    offset: self.op_offset,
                    opcode: op,
                    via,
                    node: a,
                });
            }
        }
        Ok(())
    }

    /// The bytes of a recorded [`NestedCandidate`].
    pub(crate) fn candidate_bytes(&self, c: &NestedCandidate) -> Option<Cow<'_, [u8]>> {
        self.candidate_bytes_of(c.node, true)
    }

    /// Bytes of a bytes/bytearray node or, when `text` (an argument of a pickle loader),
    /// of a string whose characters all fit a byte.
    fn candidate_bytes_of(&self, id: Id, text: bool) -> Option<Cow<'_, [u8]>> {
        match self.nodes.get(id)? {
            Node::Bytes(b) | Node::ByteArray(b) => Some(Cow::Borrowed(b.as_slice())),
            Node::Str(s) if text => s
                .chars()
                .map(|c| u8::try_from(u32::from(c)).ok())
                .collect::<Option<Vec<u8>>>()
                .map(Cow::Owned),
            _ => None,
        }
    }

    // ------------------------------------------------------------ execution

    /// Empties the memo: the next pickle is read by a fresh unpickler, as consecutive
    /// `pickle.load` calls (and torch's legacy reader) do.
    pub(crate) fn reset_memo(&mut self) {
        self.memo.clear();
    }

    /// Resets the stack and marks (not the memo) for the next pickle.
    pub(crate) fn reset_stack(&mut self) {
        self.stack.clear();
        self.marks.clear();
        self.protocol = None;
    }

    /// Runs one pickle from `start` to its `STOP`; returns the root id.
    pub(crate) fn run_one(&mut self, start: usize) -> R<Id> {
        self.pos = start;
        self.op_offset = start;
        if start >= self.data.len() {
            return Err(PickleError::Empty { offset: start });
        }
        loop {
            self.op_offset = self.pos;
            let byte = self.u8("opcode")?;
            let op = Opcode::from_byte(byte).ok_or(PickleError::UnknownOpcode {
                byte,
                offset: self.op_offset,
            })?;
            self.ops += 1;
            if self.ops > self.limits.max_ops {
                return Err(self.limit("opcodes", self.limits.max_ops));
            }
            if op == Opcode::STOP {
                return self.pop(op);
            }
            self.step(op)?;
        }
    }

    fn step(&mut self, op: Opcode) -> R<()> {
        use Opcode::*;
        match op {
            STOP => unreachable_stop(),
            PROTO => {
                let p = self.u8("PROTO")?;
                if p > 5 {
                    return Err(PickleError::Protocol {
                        protocol: p,
                        offset: self.op_offset,
                    });
                }
                self.protocol = Some(p);
            }
            FRAME => {
                // A hint for buffering; the opcodes inside are read as usual.
                self.take(8, "FRAME")?;
            }
            MARK => {
                if self.stack.len() + self.marks.len() >= self.limits.max_stack {
                    return Err(self.limit("stack entries", self.limits.max_stack as u64));
                }
                self.marks.push(self.stack.len());
            }
            POP => {
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.pop(op)?;
                }
            }
            POP_MARK => {
                self.pop_mark(op)?;
            }
            DUP => {
                let t = self.top(op)?;
                self.push(t)?;
            }
            NONE => self.push_node(Node::None)?,
            NEWTRUE => self.push_node(Node::Bool(true))?,
            NEWFALSE => self.push_node(Node::Bool(false))?,
            INT | LONG => {
                let n = self.int_line(op)?;
                self.push_node(n)?;
            }
            BININT => {
                let v = i32::from_le_bytes(self.array("BININT")?);
                self.push_node(Node::Int(i64::from(v)))?;
            }
            BININT1 => {
                let v = self.u8("BININT1")?;
                self.push_node(Node::Int(i64::from(v)))?;
            }
            BININT2 => {
                let v = u16::from_le_bytes(self.array("BININT2")?);
                self.push_node(Node::Int(i64::from(v)))?;
            }
            LONG1 | LONG4 => {
                let n = if op == LONG1 {
                    u64::from(self.u8("LONG1")?)
                } else {
                    let n = i32::from_le_bytes(self.array("LONG4")?);
                    u64::try_from(n)
                        .map_err(|_| self.err_invalid(op, format!("negative length {n}")))?
                };
                let b = self.take(n, op.name())?;
                self.charge(b.len())?;
                let node = if b.len() <= 8 {
                    Node::Int(le_signed(b))
                } else {
                    Node::BigInt(b.to_vec())
                };
                self.push_node(node)?;
            }
            FLOAT => {
                let line = self.readline("FLOAT")?;
                let f = std::str::from_utf8(line)
                    .ok()
                    .and_then(|s| s.trim().parse::<f64>().ok())
                    .ok_or_else(|| self.err_invalid(op, format!("bad float {:?}", latin1(line))))?;
                self.push_node(Node::Float(f))?;
            }
            BINFLOAT => {
                let f = f64::from_be_bytes(self.array("BINFLOAT")?);
                self.push_node(Node::Float(f))?;
            }
            STRING => {
                let line = self.readline("STRING")?;
                let b = unquote_string(line).ok_or_else(|| {
                    self.err_invalid(
                        op,
                        format!("bad string literal {:?}", truncate(&latin1(line))),
                    )
                })?;
                self.charge(b.len())?;
                self.push_node(Node::Str(text_of(&b)))?;
            }
            BINSTRING => {
                let n = i32::from_le_bytes(self.array("BINSTRING")?);
                let n = u64::try_from(n)
                    .map_err(|_| self.err_invalid(op, format!("negative length {n}")))?;
                let b = self.take(n, "BINSTRING")?;
                self.charge(b.len())?;
                self.push_node(Node::Str(text_of(b)))?;
            }
            SHORT_BINSTRING => {
                let n = self.u8("SHORT_BINSTRING")?;
                let b = self.take(u64::from(n), "SHORT_BINSTRING")?;
                self.push_node(Node::Str(text_of(b)))?;
            }
            UNICODE => {
                let line = self.readline("UNICODE")?;
                self.charge(line.len())?;
                let s = raw_unicode_escape(line);
                self.push_node(Node::Str(s))?;
            }
            BINUNICODE => {
                let n = u32::from_le_bytes(self.array("BINUNICODE")?);
                self.unicode_node(u64::from(n), op)?;
            }
            SHORT_BINUNICODE => {
                let n = self.u8("SHORT_BINUNICODE")?;
                self.unicode_node(u64::from(n), op)?;
            }
            BINUNICODE8 => {
                let n = u64::from_le_bytes(self.array("BINUNICODE8")?);
                self.unicode_node(n, op)?;
            }
            BINBYTES => {
                let n = u32::from_le_bytes(self.array("BINBYTES")?);
                self.bytes_node(u64::from(n), op, Node::Bytes)?;
            }
            SHORT_BINBYTES => {
                let n = self.u8("SHORT_BINBYTES")?;
                self.bytes_node(u64::from(n), op, Node::Bytes)?;
            }
            BINBYTES8 => {
                let n = u64::from_le_bytes(self.array("BINBYTES8")?);
                self.bytes_node(n, op, Node::Bytes)?;
            }
            BYTEARRAY8 => {
                let n = u64::from_le_bytes(self.array("BYTEARRAY8")?);
                self.bytes_node(n, op, Node::ByteArray)?;
            }
            NEXT_BUFFER => match self.mode {
                Mode::Strict => {
                    return Err(PickleError::OutOfBand {
                        opcode: op,
                        offset: self.op_offset,
                    })
                }
                Mode::Analyze => self.push_node(Node::Buffer)?,
            },
            READONLY_BUFFER => match self.mode {
                Mode::Strict => {
                    return Err(PickleError::OutOfBand {
                        opcode: op,
                        offset: self.op_offset,
                    })
                }
                Mode::Analyze => {
                    self.top(op)?;
                }
            },
            EMPTY_TUPLE => self.push_node(Node::Tuple(Vec::new()))?,
            TUPLE1 | TUPLE2 | TUPLE3 => {
                let n = match op {
                    TUPLE1 => 1,
                    TUPLE2 => 2,
                    _ => 3,
                };
                let mut items = vec![0; n];
                for slot in items.iter_mut().rev() {
                    *slot = self.pop(op)?;
                }
                self.push_node(Node::Tuple(items))?;
            }
            TUPLE => {
                let items = self.pop_mark(op)?;
                self.push_node(Node::Tuple(items))?;
            }
            EMPTY_LIST => self.push_node(Node::List(Vec::new()))?,
            LIST => {
                let items = self.pop_mark(op)?;
                self.push_node(Node::List(items))?;
            }
            EMPTY_DICT => self.push_node(Node::Dict(Vec::new()))?,
            DICT => {
                let items = self.pop_mark(op)?;
                let pairs =
                    pairs_of(&items).ok_or_else(|| self.err_invalid(op, "odd number of items"))?;
                self.push_node(Node::Dict(pairs))?;
            }
            EMPTY_SET => self.push_node(Node::Set(Vec::new()))?,
            FROZENSET => {
                let items = self.pop_mark(op)?;
                self.push_node(Node::FrozenSet(items))?;
            }
            APPEND => {
                let v = self.pop(op)?;
                let t = self.top(op)?;
                self.extend_list(op, t, vec![v])?;
            }
            APPENDS => {
                let items = self.pop_mark(op)?;
                let t = self.top(op)?;
                self.extend_list(op, t, items)?;
            }
            SETITEM => {
                let v = self.pop(op)?;
                let k = self.pop(op)?;
                let t = self.top(op)?;
                self.extend_dict(op, t, vec![(k, v)])?;
            }
            SETITEMS => {
                let items = self.pop_mark(op)?;
                let pairs =
                    pairs_of(&items).ok_or_else(|| self.err_invalid(op, "odd number of items"))?;
                let t = self.top(op)?;
                self.extend_dict(op, t, pairs)?;
            }
            ADDITEMS => {
                let items = self.pop_mark(op)?;
                let t = self.top(op)?;
                let n = items.len();
                self.charge(n * 8)?;
                match self.nodes.get_mut(t) {
                    Some(Node::Set(v)) => {
                        if v.len() + n > self.limits.max_container {
                            return Err(self.limit(
                                "items in one container",
                                self.limits.max_container as u64,
                            ));
                        }
                        v.extend(items);
                    }
                    _ if self.mode == Mode::Analyze => {}
                    _ => {
                        return Err(self
                            .err_invalid(op, format!("adds to {}, not a set", self.describe(t))))
                    }
                }
            }
            PUT => {
                let k = self.decimal_line(op)?;
                let t = self.top(op)?;
                self.memo_put(k, t)?;
            }
            BINPUT => {
                let k = self.u8("BINPUT")?;
                let t = self.top(op)?;
                self.memo_put(u64::from(k), t)?;
            }
            LONG_BINPUT => {
                let k = u32::from_le_bytes(self.array("LONG_BINPUT")?);
                let t = self.top(op)?;
                self.memo_put(u64::from(k), t)?;
            }
            MEMOIZE => {
                let t = self.top(op)?;
                let k = self.memo.len() as u64;
                self.memo_put(k, t)?;
            }
            GET => {
                let k = self.decimal_line(op)?;
                self.memo_get(k, op)?;
            }
            BINGET => {
                let k = self.u8("BINGET")?;
                self.memo_get(u64::from(k), op)?;
            }
            LONG_BINGET => {
                let k = u32::from_le_bytes(self.array("LONG_BINGET")?);
                self.memo_get(u64::from(k), op)?;
            }
            GLOBAL => {
                let (m, n) = self.global_operands(op)?;
                let id = self.make_global(m, n, op, Resolution::Operand)?;
                self.push(id)?;
            }
            STACK_GLOBAL => {
                let name = self.pop(op)?;
                let module = self.pop(op)?;
                let (m, n) = (self.nodes.get(module), self.nodes.get(name));
                let id = match (m, n) {
                    (Some(Node::Str(m)), Some(Node::Str(n))) => {
                        let (m, n) = (m.clone(), n.clone());
                        self.make_global(m, n, op, Resolution::Stack)?
                    }
                    _ => {
                        let (m, n) = (self.describe(module), self.describe(name));
                        if self.mode == Mode::Strict {
                            return Err(self.err_invalid(
                                op,
                                format!("module and name must be strings, got {m} and {n}"),
                            ));
                        }
                        self.make_global(m, n, op, Resolution::Dynamic)?
                    }
                };
                self.push(id)?;
            }
            INST => {
                let (m, n) = self.global_operands(op)?;
                let items = self.pop_mark(op)?;
                let g = self.make_global(m, n, op, Resolution::Operand)?;
                let args = self.node(Node::Tuple(items))?;
                let id = self.make_call(op, g, args, None, CallKind::Inst)?;
                self.push(id)?;
            }
            OBJ => {
                let items = self.pop_mark(op)?;
                let Some((&cls, rest)) = items.split_first() else {
                    return Err(PickleError::StackUnderflow {
                        opcode: op,
                        offset: self.op_offset,
                    });
                };
                let args = self.node(Node::Tuple(rest.to_vec()))?;
                let id = self.make_call(op, cls, args, None, CallKind::Obj)?;
                self.push(id)?;
            }
            REDUCE => {
                let args = self.pop(op)?;
                let f = self.pop(op)?;
                let id = self.make_call(op, f, args, None, CallKind::Reduce)?;
                self.push(id)?;
            }
            NEWOBJ => {
                let args = self.pop(op)?;
                let cls = self.pop(op)?;
                let id = self.make_call(op, cls, args, None, CallKind::NewObj)?;
                self.push(id)?;
            }
            NEWOBJ_EX => {
                let kwargs = self.pop(op)?;
                let args = self.pop(op)?;
                let cls = self.pop(op)?;
                let id = self.make_call(op, cls, args, Some(kwargs), CallKind::NewObjEx)?;
                self.push(id)?;
            }
            BUILD => {
                let state = self.pop(op)?;
                let obj = self.top(op)?;
                self.build(op, obj, state)?;
            }
            PERSID => {
                let line = self.readline("PERSID")?;
                let s = self.node(Node::Str(latin1(line)))?;
                self.push_node(Node::PersistentId(s))?;
            }
            BINPERSID => {
                let pid = self.pop(op)?;
                self.push_node(Node::PersistentId(pid))?;
            }
            EXT1 | EXT2 | EXT4 => {
                let code = match op {
                    EXT1 => u32::from(self.u8("EXT1")?),
                    EXT2 => u32::from(u16::from_le_bytes(self.array("EXT2")?)),
                    _ => u32::from_le_bytes(self.array("EXT4")?),
                };
                if self.mode == Mode::Strict {
                    return Err(PickleError::Extension {
                        code,
                        opcode: op,
                        offset: self.op_offset,
                    });
                }
                self.make_global(
                    "<copyreg extension>".to_owned(),
                    code.to_string(),
                    op,
                    Resolution::Dynamic,
                )?;
                self.push_node(Node::Ext(code))?;
            }
        }
        Ok(())
    }

    fn extend_list(&mut self, op: Opcode, target: Id, items: Vec<Id>) -> R<()> {
        let n = items.len();
        self.charge(n * 8)?;
        let max = self.limits.max_container;
        let strict = self.mode == Mode::Strict;
        let over = match self.nodes.get_mut(target) {
            Some(Node::List(v)) | Some(Node::Call { list_items: v, .. }) => {
                if v.len() + n > max {
                    true
                } else {
                    v.extend(items);
                    false
                }
            }
            _ if !strict => false,
            _ => {
                return Err(self.err_invalid(
                    op,
                    format!("appends to {}, not a list", self.describe(target)),
                ));
            }
        };
        if over {
            return Err(self.limit("items in one container", max as u64));
        }
        Ok(())
    }

    fn extend_dict(&mut self, op: Opcode, target: Id, pairs: Vec<(Id, Id)>) -> R<()> {
        let n = pairs.len();
        self.charge(n * 16)?;
        self.check_container(0)?;
        let max = self.limits.max_container;
        let strict = self.mode == Mode::Strict;
        let over = match self.nodes.get_mut(target) {
            Some(Node::Dict(v)) | Some(Node::Call { dict_items: v, .. }) => {
                if v.len() + n > max {
                    true
                } else {
                    v.extend(pairs);
                    false
                }
            }
            _ if !strict => false,
            _ => {
                return Err(self.err_invalid(
                    op,
                    format!("sets items of {}, not a dict", self.describe(target)),
                ));
            }
        };
        if over {
            return Err(self.limit("items in one container", max as u64));
        }
        Ok(())
    }

    fn build(&mut self, op: Opcode, obj: Id, state: Id) -> R<()> {
        // Whose __setstate__ would run: the global the object was made from,
        // or the global itself when BUILD targets a class.
        let source = match self.nodes.get(obj) {
            Some(Node::Call { callable, .. }) => Some(*callable),
            Some(Node::Global { .. }) => Some(obj),
            _ => None,
        };
        if let Some(src) = source {
            self.record_call(src, CallKind::Build);
        }
        match self.nodes.get_mut(obj) {
            Some(Node::Call { state: s, .. }) => {
                *s = Some(state);
                Ok(())
            }
            // OrderedDict attributes (torch's `_metadata`): not tensor data.
            Some(Node::Dict(_)) => Ok(()),
            _ if self.mode == Mode::Analyze => Ok(()),
            _ => Err(self.err_invalid(op, format!("sets the state of {}", self.describe(obj)))),
        }
    }

    // --------------------------------------------------------------- output

    /// Turns the graph under `root` into a [`Value`] tree, within the limits.
    pub(crate) fn value(&self, root: Id) -> R<Value> {
        let mut budget = Budget {
            bytes: 0,
            max: tree_budget(self.data.len(), self.limits.max_alloc),
            on_path: vec![false; self.nodes.len()],
        };
        self.expand(root, 0, &mut budget)
    }

    fn expand(&self, id: Id, depth: usize, b: &mut Budget) -> R<Value> {
        if depth > self.limits.max_depth {
            return Err(PickleError::TooDeep {
                max: self.limits.max_depth,
            });
        }
        let node = self.nodes.get(id).ok_or(PickleError::Cycle)?;
        let flag = b.on_path.get_mut(id).ok_or(PickleError::Cycle)?;
        if *flag {
            return Err(PickleError::Cycle);
        }
        *flag = true;
        b.bytes = b.bytes.saturating_add(NODE_COST);
        if b.bytes > b.max {
            return Err(PickleError::Limit {
                limit: "bytes in the value tree",
                max: b.max as u64,
                offset: 0,
            });
        }
        let seq = |v: &[Id], b: &mut Budget| -> R<Vec<Value>> {
            v.iter().map(|&i| self.expand(i, depth + 1, b)).collect()
        };
        let charge = |n: usize, b: &mut Budget| -> R<()> {
            b.bytes = b.bytes.saturating_add(n);
            if b.bytes > b.max {
                return Err(PickleError::Limit {
                    limit: "bytes in the value tree",
                    max: b.max as u64,
                    offset: 0,
                });
            }
            Ok(())
        };
        let v = match node {
            Node::None => Value::None,
            Node::Bool(x) => Value::Bool(*x),
            Node::Int(x) => Value::Int(*x),
            Node::BigInt(x) => {
                charge(x.len(), b)?;
                Value::BigInt(x.clone())
            }
            Node::Float(x) => Value::Float(*x),
            Node::Str(x) => {
                charge(x.len(), b)?;
                Value::Str(x.clone())
            }
            Node::Bytes(x) => {
                charge(x.len(), b)?;
                Value::Bytes(x.clone())
            }
            Node::ByteArray(x) => {
                charge(x.len(), b)?;
                Value::ByteArray(x.clone())
            }
            Node::Tuple(v) => Value::Tuple(seq(v, b)?),
            Node::List(v) => Value::List(seq(v, b)?),
            Node::Set(v) => Value::Set(seq(v, b)?),
            Node::FrozenSet(v) => Value::FrozenSet(seq(v, b)?),
            Node::Dict(v) => {
                let mut out = Vec::with_capacity(v.len());
                for &(k, x) in v {
                    out.push((self.expand(k, depth + 1, b)?, self.expand(x, depth + 1, b)?));
                }
                Value::Dict(out)
            }
            Node::Global { module, name, .. } => Value::Global {
                module: module.clone(),
                name: name.clone(),
            },
            Node::Call {
                callable,
                args,
                kwargs,
                kind,
                state,
                list_items,
                dict_items,
            } => {
                let mut di = Vec::with_capacity(dict_items.len());
                for &(k, x) in dict_items {
                    di.push((self.expand(k, depth + 1, b)?, self.expand(x, depth + 1, b)?));
                }
                Value::Call(Box::new(Call {
                    callable: self.expand(*callable, depth + 1, b)?,
                    args: self.expand(*args, depth + 1, b)?,
                    kwargs: kwargs.map(|k| self.expand(k, depth + 1, b)).transpose()?,
                    kind: *kind,
                    state: state.map(|s| self.expand(s, depth + 1, b)).transpose()?,
                    list_items: seq(list_items, b)?,
                    dict_items: di,
                }))
            }
            Node::PersistentId(p) => {
                Value::PersistentId(Box::new(self.expand(*p, depth + 1, b)?))
            }
            Node::Buffer => Value::Buffer,
            Node::Ext(c) => Value::Ext(*c),
        };
        if let Some(flag) = b.on_path.get_mut(id) {
            *flag = false;
        }
        Ok(v)
    }
}

struct Budget {
    bytes: usize,
    max: usize,
    on_path: Vec<bool>,
}

/// Bytes the value tree of one pickle may take: `max_alloc`, and at most
/// 256 bytes per input byte plus 16 MiB, so that a small input sharing one
/// object many times (x = (x, x), repeated) cannot expand into gigabytes.
fn tree_budget(input_len: usize, max_alloc: usize) -> usize {
    input_len
        .saturating_mul(256)
        .saturating_add(16 << 20)
        .min(max_alloc)
}

fn unreachable_stop() {}

fn node_kind(n: &Node) -> &'static str {
    match n {
        Node::None => "None",
        Node::Bool(_) => "bool",
        Node::Int(_) | Node::BigInt(_) => "int",
        Node::Float(_) => "float",
        Node::Str(_) => "str",
        Node::Bytes(_) => "bytes",
        Node::ByteArray(_) => "bytearray",
        Node::Tuple(_) => "tuple",
        Node::List(_) => "list",
        Node::Dict(_) => "dict",
        Node::Set(_) => "set",
        Node::FrozenSet(_) => "frozenset",
        Node::Global { .. } => "global",
        Node::Call { .. } => "object",
        Node::PersistentId(_) => "persistent id",
        Node::Buffer => "buffer",
        Node::Ext(_) => "extension",
    }
}

fn pairs_of(items: &[Id]) -> Option<Vec<(Id, Id)>> {
    if items.len() & 1 == 1 {
        return None;
    }
    Some(items.chunks_exact(2).map(|c| (c[0], c[1])).collect())
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 60 {
        let mut t: String = s.chars().take(60).collect();
        t.push_str("...");
        t
    } else {
        s.to_owned()
    }
}

/// Little-endian two's complement of at most 8 bytes.
fn le_signed(b: &[u8]) -> i64 {
    if b.is_empty() {
        return 0;
    }
    let neg = b.last().is_some_and(|&x| x & 0x80 != 0);
    let mut a = if neg { [0xffu8; 8] } else { [0u8; 8] };
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    i64::from_le_bytes(a)
}

/// Which integer text syntax an opcode operand follows in CPython's unpickler.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IntSyntax {
    /// `int(text, 10)`: `PUT`/`GET` memo keys.
    Base10,
    /// `int(text, 0)`: `LONG`.
    Base0,
    /// `INT`: C's `strtol(text, 0)` first (a leading zero means octal), then `int(text, 0)`.
    CInt,
}

/// Whitespace as Python's `int()` strips it.
fn is_py_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Parses integer text as CPython's unpickler does for `syntax`: returns the sign, the
/// digit values (most significant first) and the radix. At most 4300 digits (CPython's
/// limit for decimal text; also a bound on the work done here).
fn py_int_literal(text: &str, syntax: IntSyntax) -> Option<(bool, Vec<u8>, u32)> {
    let t = text.trim_matches(is_py_space);
    let (neg, body) = match t.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        rest => (false, rest),
    };
    let lower = |i: usize| body.get(i).map(u8::to_ascii_lowercase);
    let (radix, mut digits) = if syntax != IntSyntax::Base10 && lower(0) == Some(b'0') {
        match lower(1) {
            Some(b'x') => (16, body.get(2..)?),
            Some(b'o') => (8, body.get(2..)?),
            Some(b'b') => (2, body.get(2..)?),
            _ => (10, body),
        }
    } else {
        (10, body)
    };
    if radix != 10 {
        // `0x_1f`: one underscore may follow the prefix.
        digits = digits.strip_prefix(b"_").unwrap_or(digits);
    }
    if digits.is_empty()
        || digits.len() > 4300
        || digits.first() == Some(&b'_')
        || digits.last() == Some(&b'_')
        || digits.windows(2).any(|w| w == b"__")
    {
        return None;
    }
    let mut radix = radix;
    let significant = digits.iter().filter(|&&c| c != b'_' && c != b'0').count();
    if radix == 10 && digits.first() == Some(&b'0') && significant > 0 {
        match syntax {
            IntSyntax::Base10 => {}
            // strtol reads a leading zero as octal.
            IntSyntax::CInt => radix = 8,
            IntSyntax::Base0 => return None,
        }
    }
    let mut out = Vec::with_capacity(digits.len());
    for &c in digits {
        if c == b'_' {
            continue;
        }
        let v = char::from(c).to_digit(radix)?;
        out.push(v as u8);
    }
    Some((neg, out, radix))
}

/// The magnitude of `digits` in `radix`, if it fits a u64.
fn digits_to_u64(digits: &[u8], radix: u32) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(u64::from(radix))?.checked_add(u64::from(d))
    })
}

/// Converts digit values in `radix` (at most 4300 of them) to little-endian two's
/// complement bytes.
fn digits_to_twos(neg: bool, digits: &[u8], radix: u32) -> Option<Vec<u8>> {
    if digits.is_empty() || digits.len() > 4300 {
        return None;
    }
    // Magnitude in base 256, little-endian.
    let mut mag: Vec<u8> = vec![0];
    for &d in digits {
        let mut carry = u32::from(d);
        for limb in mag.iter_mut() {
            let v = u32::from(*limb) * radix + carry;
            *limb = (v & 0xff) as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            mag.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    mag.push(0); // room for the sign bit
    if neg {
        let mut carry = 1u16;
        for limb in mag.iter_mut() {
            let v = u16::from(!*limb) + carry;
            *limb = (v & 0xff) as u8;
            carry = v >> 8;
        }
    }
    Some(mag)
}

/// Converts a decimal integer to little-endian two's complement bytes.
#[cfg(test)]
fn decimal_to_twos(text: &str) -> Option<Vec<u8>> {
    let (neg, digits, radix) = py_int_literal(text, IntSyntax::Base10)?;
    digits_to_twos(neg, &digits, radix)
}

/// Decodes a protocol-0 `STRING` operand: a quoted Python literal with escapes.
fn unquote_string(line: &[u8]) -> Option<Vec<u8>> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let (&q, rest) = line.split_first()?;
    if q != b'\'' && q != b'"' {
        return None;
    }
    let (&last, body) = rest.split_last()?;
    if last != q {
        return None;
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while let Some(&c) = body.get(i) {
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = body.get(i) else {
            out.push(b'\\');
            break;
        };
        i += 1;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'\\' | b'\'' | b'"' => out.push(e),
            b'\n' => {}
            b'x' => {
                let h = body.get(i..i + 2)?;
                let s = std::str::from_utf8(h).ok()?;
                out.push(u8::from_str_radix(s, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

/// Decodes a protocol-0 `UNICODE` operand (`raw-unicode-escape`).
fn raw_unicode_escape(line: &[u8]) -> String {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while let Some(&c) = line.get(i) {
        if c == b'\\' {
            let (n, digits) = match line.get(i + 1) {
                Some(b'u') => (4, line.get(i + 2..i + 6)),
                Some(b'U') => (8, line.get(i + 2..i + 10)),
                _ => (0, None),
            };
            if let Some(ch) = digits
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|s| u32::from_str_radix(s, 16).ok())
                .and_then(char::from_u32)
            {
                out.push(ch);
                i += 2 + n;
                continue;
            }
        }
        out.push(char::from(c));
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigint_decimal() {
        assert_eq!(decimal_to_twos("255"), Some(vec![0xff, 0]));
        assert_eq!(decimal_to_twos("-1"), Some(vec![0xff, 0xff]));
        assert_eq!(decimal_to_twos("x"), None);
        assert_eq!(le_signed(&[0xff]), -1);
        assert_eq!(le_signed(&[0x00, 0x80]), -32768);
    }

    /// Operands CPython's unpickler accepts (checked against CPython 3.11): the machine
    /// must accept them with the same value, or a loader runs what the machine never saw.
    #[test]
    fn integer_operands_follow_cpython() {
        let int =
            |t: &str| py_int_literal(t, IntSyntax::CInt).map(|(n, d, r)| (n, digits_to_u64(&d, r)));
        assert_eq!(int("0x10"), Some((false, Some(16))));
        assert_eq!(int(" -0X1f\r"), Some((true, Some(31))));
        assert_eq!(int("0o17"), Some((false, Some(15))));
        assert_eq!(int("0b1_0"), Some((false, Some(2))));
        assert_eq!(int("1_000"), Some((false, Some(1000))));
        assert_eq!(int("0x_1f"), Some((false, Some(31))));
        assert_eq!(int("010"), Some((false, Some(8))));
        assert_eq!(int("0_0"), Some((false, Some(0))));
        for bad in ["1__0", "_1", "1_", "0x", "+-1", "1e3", "", "12L"] {
            assert_eq!(int(bad), None, "{bad}");
        }
        let key = |t: &str| {
            py_int_literal(t, IntSyntax::Base10).map(|(n, d, r)| (n, digits_to_u64(&d, r)))
        };
        assert_eq!(key("1_0"), Some((false, Some(10))));
        assert_eq!(key("010"), Some((false, Some(10))));
        assert_eq!(key("-0"), Some((true, Some(0))));
        assert_eq!(key("0x10"), None);
        assert_eq!(py_int_literal("010", IntSyntax::Base0), None);
        assert_eq!(digits_to_twos(false, &[1, 0, 0], 16), Some(vec![0, 1, 0]));
    }

    #[test]
    fn string_escapes() {
        assert_eq!(
            unquote_string(b"'a\\nb\\x41\\101'"),
            Some(b"a\nbAA".to_vec())
        );
        assert_eq!(unquote_string(b"'abc"), None);
        assert_eq!(
            raw_unicode_escape(b"a\\u00e9\\U0001F600"),
            "a\u{e9}\u{1F600}"
        );
    }
}
