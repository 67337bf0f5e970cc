//! A bounded evaluator for the Python literals that can appear in a `.npy` header,
//! with the semantics of `ast.literal_eval` (CPython 3.11): both quote styles,
//! triple quotes, `r`/`u`/`b` prefixes, every escape except `\N{...}`, implicit
//! concatenation, tuples, lists, sets, dicts, `True`/`False`/`None`, signed integers
//! in every base with underscores, comments and whitespace.
//!
//! It accepts a strict subset of what Python accepts: whatever it does accept
//! evaluates to the value Python computes. Anything else (floats, complex numbers,
//! `...`, `set()`, `\N{...}` escapes, surrogates, line continuations, carriage
//! returns, non-ASCII outside strings, nesting deeper than [`MAX_DEPTH`]) is an
//! error, never a guess.

use std::fmt;

/// Deepest nesting of brackets accepted (CPython's own parser stops at 200).
pub const MAX_DEPTH: usize = 64;

/// A Python literal value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `str`.
    Str(String),
    /// `bytes`.
    Bytes(Vec<u8>),
    /// `int` (those that fit in an `i128`).
    Int(i128),
    /// `True` / `False`.
    Bool(bool),
    /// `None`.
    None,
    /// `tuple`.
    Tuple(Vec<Value>),
    /// `list`.
    List(Vec<Value>),
    /// `set` (in source order; duplicates kept).
    Set(Vec<Value>),
    /// `dict` as written, duplicates included (the last one wins in Python).
    Dict(Vec<(Value, Value)>),
}

impl Value {
    /// The value of the last `key` entry of a dict whose key is the string `key`
    /// (Python keeps the last of duplicate keys).
    pub fn dict_get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .rev()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Whether Python can hash it (only hashable values can be dict keys or set items).
    pub fn is_hashable(&self) -> bool {
        match self {
            Value::List(_) | Value::Set(_) | Value::Dict(_) => false,
            Value::Tuple(items) => items.iter().all(Value::is_hashable),
            _ => true,
        }
    }

    /// Python's name for the type of this value.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Int(_) => "int",
            Value::Bool(_) => "bool",
            Value::None => "NoneType",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::Dict(_) => "dict",
        }
    }
}

fn write_seq(f: &mut fmt::Formatter<'_>, open: &str, items: &[Value], close: &str) -> fmt::Result {
    f.write_str(open)?;
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{v}")?;
    }
    if open == "(" && items.len() == 1 {
        f.write_str(",")?;
    }
    f.write_str(close)
}

/// Python `repr`-like rendering (strings use Rust escapes for control characters).
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => write!(f, "'{}'", s.escape_debug()),
            Value::Bytes(b) => write!(f, "b'{}'", b.escape_ascii()),
            Value::Int(n) => write!(f, "{n}"),
            Value::Bool(true) => f.write_str("True"),
            Value::Bool(false) => f.write_str("False"),
            Value::None => f.write_str("None"),
            Value::Tuple(v) => write_seq(f, "(", v, ")"),
            Value::List(v) => write_seq(f, "[", v, "]"),
            Value::Set(v) => write_seq(f, "{", v, "}"),
            Value::Dict(items) => {
                f.write_str("{")?;
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

/// Why a literal was not evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiteralError {
    /// Python itself rejects this text (a `SyntaxError` or `ValueError`).
    #[error("invalid Python literal at byte {at}: {why}")]
    Invalid {
        /// Byte offset into the text.
        at: usize,
        /// What is wrong.
        why: String,
    },
    /// Python may accept it, but tensorseal does not evaluate this construct.
    #[error("unsupported Python literal construct at byte {at}: {what}")]
    Unsupported {
        /// Byte offset into the text.
        at: usize,
        /// The construct.
        what: String,
    },
}

/// Evaluates `text` like `ast.literal_eval(text)`. With `drop_long_suffix`, an
/// `L` name right after an integer is dropped first, as numpy's `_filter_header`
/// does for Python 2 headers.
pub fn literal_eval(text: &str, drop_long_suffix: bool) -> Result<Value, LiteralError> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        i: 0,
        depth: 0,
        drop_long_suffix,
    };
    // ast.literal_eval strips leading spaces and tabs.
    while matches!(p.peek(), Some(b' ' | b'\t')) {
        p.i += 1;
    }
    if matches!(p.peek(), Some(b'\n' | b'#')) {
        return Err(p.unsupported("a leading blank line or comment"));
    }
    let v = p.expr()?;
    // Trailing blanks, newlines and comments end the expression.
    loop {
        match p.peek() {
            Some(b' ' | b'\t' | b'\x0c' | b'\n') => p.i += 1,
            Some(b'#') => p.comment(),
            None => return Ok(v),
            Some(b'\r') => return Err(p.unsupported("a carriage return")),
            Some(b',') => return Err(p.unsupported("a tuple without parentheses")),
            Some(_) => return Err(p.invalid("text after the literal")),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
    depth: usize,
    drop_long_suffix: bool,
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn invalid(&self, why: impl Into<String>) -> LiteralError {
        LiteralError::Invalid {
            at: self.i,
            why: why.into(),
        }
    }

    fn unsupported(&self, what: impl Into<String>) -> LiteralError {
        LiteralError::Unsupported {
            at: self.i,
            what: what.into(),
        }
    }

    fn comment(&mut self) {
        while self.peek().is_some_and(|c| c != b'\n') {
            self.i += 1;
        }
    }

    /// Skips blanks; inside brackets newlines and comments too.
    fn ws(&mut self) -> Result<(), LiteralError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\x0c') => self.i += 1,
                Some(b'\n') | Some(b'#') if self.depth > 0 => {
                    if self.peek() == Some(b'#') {
                        self.comment();
                    } else {
                        self.i += 1;
                    }
                }
                Some(b'\r') => return Err(self.unsupported("a carriage return")),
                Some(b'\\') => return Err(self.unsupported("a line continuation")),
                Some(0) => return Err(self.invalid("a NUL byte")),
                _ => return Ok(()),
            }
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), LiteralError> {
        self.ws()?;
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.invalid(format!("expected `{}`", c as char)))
        }
    }

    fn enter(&mut self) -> Result<(), LiteralError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.unsupported(format!("nesting deeper than {MAX_DEPTH}")));
        }
        Ok(())
    }

    /// A whole expression: an atom, or a signed integer.
    fn expr(&mut self) -> Result<Value, LiteralError> {
        self.ws()?;
        match self.peek() {
            Some(b'-' | b'+') => {
                let neg = self.peek() == Some(b'-');
                self.i += 1;
                self.ws()?;
                if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    return Err(self.invalid("a sign not followed by a number"));
                }
                let n = self.number()?;
                let n = if neg { n.checked_neg() } else { Some(n) };
                n.map(Value::Int)
                    .ok_or_else(|| self.unsupported("an integer beyond 128 bits"))
            }
            _ => self.atom(),
        }
    }

    fn atom(&mut self) -> Result<Value, LiteralError> {
        self.ws()?;
        let Some(c) = self.peek() else {
            return Err(self.invalid("unexpected end of text"));
        };
        match c {
            b'(' => {
                self.enter()?;
                self.i += 1;
                let (items, trailing_comma) = self.items(b')')?;
                self.depth -= 1;
                if items.len() == 1 && !trailing_comma {
                    // Parentheses only group.
                    Ok(items.into_iter().next().unwrap_or(Value::None))
                } else {
                    Ok(Value::Tuple(items))
                }
            }
            b'[' => {
                self.enter()?;
                self.i += 1;
                let (items, _) = self.items(b']')?;
                self.depth -= 1;
                Ok(Value::List(items))
            }
            b'{' => {
                self.enter()?;
                self.i += 1;
                let v = self.brace()?;
                self.depth -= 1;
                Ok(v)
            }
            b'0'..=b'9' => Ok(Value::Int(self.number()?)),
            b'.' => Err(self.unsupported("a float or `...`")),
            _ if c == b'\'' || c == b'"' || c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                self.word_or_string()
            }
            _ => Err(self.invalid(format!("unexpected character {:?}", c as char))),
        }
    }

    /// Comma-separated expressions up to `close`; says whether a trailing comma ended them.
    fn items(&mut self, close: u8) -> Result<(Vec<Value>, bool), LiteralError> {
        let mut items = Vec::new();
        loop {
            self.ws()?;
            if self.peek() == Some(close) {
                self.i += 1;
                let trailing = !items.is_empty();
                return Ok((items, trailing));
            }
            items.push(self.expr()?);
            self.ws()?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(x) if x == close => {
                    self.i += 1;
                    return Ok((items, false));
                }
                _ => return Err(self.invalid(format!("expected `,` or `{}`", close as char))),
            }
        }
    }

    /// After `{`: a dict or a set.
    fn brace(&mut self) -> Result<Value, LiteralError> {
        self.ws()?;
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Value::Dict(Vec::new()));
        }
        let first = self.expr()?;
        self.ws()?;
        if self.peek() == Some(b':') {
            self.i += 1;
            let mut items = vec![(first, self.expr()?)];
            loop {
                self.ws()?;
                match self.peek() {
                    Some(b'}') => {
                        self.i += 1;
                        return self.hashable(Value::Dict(items));
                    }
                    Some(b',') => {
                        self.i += 1;
                        self.ws()?;
                        if self.peek() == Some(b'}') {
                            self.i += 1;
                            return self.hashable(Value::Dict(items));
                        }
                        if self.s.get(self.i..self.i + 2) == Some(b"**") {
                            return Err(self.invalid("`**` in a literal"));
                        }
                        let k = self.expr()?;
                        self.expect(b':')?;
                        let v = self.expr()?;
                        items.push((k, v));
                    }
                    _ => return Err(self.invalid("expected `,` or `}` in a dict")),
                }
            }
        }
        let mut items = vec![first];
        loop {
            self.ws()?;
            match self.peek() {
                Some(b'}') => {
                    self.i += 1;
                    return self.hashable(Value::Set(items));
                }
                Some(b',') => {
                    self.i += 1;
                    self.ws()?;
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        return self.hashable(Value::Set(items));
                    }
                    items.push(self.expr()?);
                }
                _ => return Err(self.invalid("expected `,` or `}` in a set")),
            }
        }
    }

    /// `v` (a dict or set) if every key or item is hashable (Python raises
    /// `TypeError` otherwise).
    fn hashable(&self, v: Value) -> Result<Value, LiteralError> {
        let bad = match &v {
            Value::Dict(items) => items.iter().map(|(k, _)| k).find(|k| !k.is_hashable()),
            Value::Set(items) => items.iter().find(|k| !k.is_hashable()),
            _ => None,
        };
        match bad {
            Some(k) => {
                Err(self.invalid(format!("unhashable {} as a key or set item", k.type_name())))
            }
            None => Ok(v),
        }
    }

    /// An integer literal (decimal, 0x, 0o, 0b, with single underscores between digits).
    fn number(&mut self) -> Result<i128, LiteralError> {
        let start = self.i;
        let (radix, body_start) = match self.s.get(self.i..self.i + 2) {
            Some([b'0', b'x' | b'X']) => (16, self.i + 2),
            Some([b'0', b'o' | b'O']) => (8, self.i + 2),
            Some([b'0', b'b' | b'B']) => (2, self.i + 2),
            _ => (10, self.i),
        };
        self.i = body_start;
        let mut digits = String::new();
        let mut prev_underscore = false;
        while let Some(c) = self.peek() {
            if c == b'_' {
                // One underscore between digits, or right after a base prefix.
                if prev_underscore || (digits.is_empty() && radix == 10) {
                    return Err(self.invalid("misplaced underscore in a number"));
                }
                prev_underscore = true;
                self.i += 1;
                continue;
            }
            if !(c as char).is_digit(radix) {
                break;
            }
            digits.push(c as char);
            prev_underscore = false;
            self.i += 1;
        }
        if digits.is_empty() || prev_underscore {
            return Err(self.invalid("malformed number"));
        }
        if radix == 10
            && digits.len() > 1
            && digits.starts_with('0')
            && digits.bytes().any(|d| d != b'0')
        {
            return Err(self.invalid("leading zeros in a decimal integer"));
        }
        let quoted = self.text.get(start..self.i).unwrap_or("").to_owned();
        // Whatever follows a number must not continue it (floats, complex, names).
        match self.peek() {
            Some(b'.' | b'e' | b'E' | b'j' | b'J') if radix == 10 => {
                return Err(self.unsupported(format!("a float or complex number after {quoted:?}")))
            }
            Some(c) if is_ident(c) || c == b'.' => {
                if self.drop_long_suffix
                    && (c == b'L')
                    && !self.s.get(self.i + 1).is_some_and(|&n| is_ident(n))
                {
                    self.i += 1;
                } else {
                    return Err(self.invalid(format!("a name right after the number {quoted:?}")));
                }
            }
            _ => {}
        }
        if self.drop_long_suffix {
            // `3 L`: tokenize sees NUMBER, NAME 'L' and numpy drops the name.
            let save = self.i;
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\x0c')) {
                self.i += 1;
            }
            if self.peek() == Some(b'L') && !self.s.get(self.i + 1).is_some_and(|&n| is_ident(n)) {
                self.i += 1;
            } else {
                self.i = save;
            }
        }
        i128::from_str_radix(&digits, radix)
            .map_err(|_| self.unsupported(format!("the integer {quoted:?} beyond 128 bits")))
    }

    /// `True`/`False`/`None`, or one or more adjacent (possibly prefixed) string literals.
    fn word_or_string(&mut self) -> Result<Value, LiteralError> {
        let mut acc: Option<Value> = None;
        loop {
            self.ws()?;
            let start = self.i;
            let mut j = self.i;
            while self.s.get(j).is_some_and(|&c| is_ident(c)) {
                j += 1;
            }
            let word = self.text.get(start..j).unwrap_or("");
            let quote = self.s.get(j).copied();
            if !matches!(quote, Some(b'\'' | b'"')) {
                if acc.is_some() {
                    return Ok(acc.unwrap_or(Value::None));
                }
                if !word.is_ascii() {
                    return Err(self.unsupported("a non-ASCII name"));
                }
                self.i = j;
                return match word {
                    "set" => {
                        // `set()` is the one call literal_eval allows.
                        self.expect(b'(')?;
                        self.depth += 1;
                        self.expect(b')')?;
                        self.depth -= 1;
                        Ok(Value::Set(Vec::new()))
                    }
                    "True" => Ok(Value::Bool(true)),
                    "False" => Ok(Value::Bool(false)),
                    "None" => Ok(Value::None),
                    "" => Err(self.invalid("expected a value")),
                    w => Err(self.invalid(format!("the name {w:?} is not a literal"))),
                };
            }
            let lower = word.to_ascii_lowercase();
            let (raw, bytes) = match lower.as_str() {
                "" | "u" => (false, false),
                "r" => (true, false),
                "b" => (false, true),
                "br" | "rb" => (true, true),
                "f" | "rf" | "fr" => return Err(self.invalid("an f-string is not a literal")),
                _ => return Err(self.invalid(format!("unknown string prefix {word:?}"))),
            };
            self.i = j;
            let piece = self.string_body(raw, bytes)?;
            acc = match (acc, piece) {
                (None, p) => Some(p),
                (Some(Value::Str(mut a)), Value::Str(b)) => {
                    a.push_str(&b);
                    Some(Value::Str(a))
                }
                (Some(Value::Bytes(mut a)), Value::Bytes(b)) => {
                    a.extend_from_slice(&b);
                    Some(Value::Bytes(a))
                }
                _ => return Err(self.invalid("cannot mix bytes and str literals")),
            };
            // Implicit concatenation: another string may follow (whitespace, or inside
            // brackets newlines and comments, in between).
            self.ws()?;
            let next = self.peek();
            let starts_string = match next {
                Some(b'\'' | b'"') => true,
                Some(c) if c.is_ascii_alphabetic() => {
                    let mut k = self.i;
                    while self.s.get(k).is_some_and(|&c| c.is_ascii_alphabetic()) {
                        k += 1;
                    }
                    matches!(self.s.get(k), Some(b'\'' | b'"'))
                }
                _ => false,
            };
            if !starts_string {
                return Ok(acc.unwrap_or(Value::None));
            }
        }
    }

    /// The body of a string literal starting at its opening quote.
    fn string_body(&mut self, raw: bool, bytes: bool) -> Result<Value, LiteralError> {
        let q = self
            .peek()
            .ok_or_else(|| self.invalid("expected a quote"))?;
        let triple = self.s.get(self.i..self.i + 3) == Some(&[q, q, q][..]);
        self.i += if triple { 3 } else { 1 };
        let mut out: Vec<u8> = Vec::new(); // UTF-8 for str, raw for bytes
        let push_char = |out: &mut Vec<u8>, c: char| {
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        };
        loop {
            let Some(c) = self.peek() else {
                return Err(self.invalid("unterminated string"));
            };
            if c == q {
                if !triple {
                    self.i += 1;
                    break;
                }
                if self.s.get(self.i..self.i + 3) == Some(&[q, q, q][..]) {
                    self.i += 3;
                    break;
                }
            }
            match c {
                b'\r' => return Err(self.unsupported("a carriage return")),
                0 => return Err(self.invalid("a NUL byte")),
                b'\n' if !triple => return Err(self.invalid("unterminated string (newline)")),
                _ if bytes && c >= 0x80 => {
                    return Err(self.invalid("a bytes literal with a non-ASCII character"))
                }
                b'\\' => {
                    self.i += 1;
                    let Some(e) = self.peek() else {
                        return Err(self.invalid("unterminated string"));
                    };
                    if raw {
                        // The backslash stays; it only keeps the next character from
                        // closing the string.
                        out.push(b'\\');
                        if e == b'\r' {
                            return Err(self.unsupported("a carriage return"));
                        }
                        if e == 0 {
                            return Err(self.invalid("a NUL byte"));
                        }
                        if e >= 0x80 {
                            // A non-ASCII char after a backslash: copy it whole below.
                            continue;
                        }
                        out.push(e);
                        self.i += 1;
                        continue;
                    }
                    self.i += 1;
                    match e {
                        b'\n' => {}
                        b'\\' => out.push(b'\\'),
                        b'\'' => out.push(b'\''),
                        b'"' => out.push(b'"'),
                        b'a' => out.push(0x07),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'v' => out.push(0x0b),
                        b'0'..=b'7' => {
                            let mut v = u32::from(e - b'0');
                            for _ in 0..2 {
                                match self.peek() {
                                    Some(d @ b'0'..=b'7') => {
                                        v = v * 8 + u32::from(d - b'0');
                                        self.i += 1;
                                    }
                                    _ => break,
                                }
                            }
                            if bytes {
                                out.push((v & 0xff) as u8);
                            } else {
                                push_char(&mut out, char::from_u32(v).unwrap_or('\u{fffd}'));
                            }
                        }
                        b'x' => {
                            let v = self.hex(2)?;
                            if bytes {
                                out.push(v as u8);
                            } else {
                                push_char(&mut out, char::from_u32(v).unwrap_or('\u{fffd}'));
                            }
                        }
                        b'u' | b'U' if !bytes => {
                            let v = self.hex(if e == b'u' { 4 } else { 8 })?;
                            if v > 0x10ffff {
                                return Err(self.invalid(format!("\\U{v:08x} is beyond Unicode")));
                            }
                            let ch = char::from_u32(v).ok_or_else(|| {
                                self.unsupported(format!("the surrogate \\u{v:04x}"))
                            })?;
                            push_char(&mut out, ch);
                        }
                        b'N' if !bytes => return Err(self.unsupported("a \\N{...} escape")),
                        b'\r' => return Err(self.unsupported("a carriage return")),
                        0 => return Err(self.invalid("a NUL byte")),
                        _ => {
                            // Unknown escape: the backslash stays (Python warns only).
                            out.push(b'\\');
                            self.i -= 1;
                        }
                    }
                }
                _ => {
                    // Copy one whole UTF-8 character.
                    let len = match c {
                        0x00..=0x7f => 1,
                        0xc0..=0xdf => 2,
                        0xe0..=0xef => 3,
                        _ => 4,
                    };
                    let ch = self
                        .s
                        .get(self.i..self.i + len)
                        .ok_or_else(|| self.invalid("truncated character"))?;
                    out.extend_from_slice(ch);
                    self.i += len;
                }
            }
        }
        if bytes {
            Ok(Value::Bytes(out))
        } else {
            String::from_utf8(out)
                .map(Value::Str)
                .map_err(|_| self.invalid("string is not valid text"))
        }
    }

    fn hex(&mut self, n: usize) -> Result<u32, LiteralError> {
        let digits = self
            .s
            .get(self.i..self.i + n)
            .filter(|d| d.iter().all(u8::is_ascii_hexdigit))
            .ok_or_else(|| self.invalid(format!("an escape needs {n} hex digits")))?;
        let text = std::str::from_utf8(digits).unwrap_or("0");
        let v = u32::from_str_radix(text, 16).map_err(|_| self.invalid("bad hex escape"))?;
        self.i += n;
        Ok(v)
    }
}
