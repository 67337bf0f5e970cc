//! NumPy `.npy` headers read with numpy's own semantics, shared by the scanner and
//! the converter.
//!
//! numpy (`numpy/lib/_format_impl.py`) reads a 6-byte magic `\x93NUMPY`, a version
//! (1.0, 2.0 or 3.0), a little-endian header length (`u16` for 1.0, `u32` after),
//! and a header decoded as latin-1 (1.0, 2.0) or UTF-8 (3.0). The header is a
//! Python dict literal evaluated by `ast.literal_eval` — retried after dropping the
//! Python 2 `L` integer suffix for versions up to 2.0 — that must have exactly the
//! keys `descr`, `fortran_order` (a bool) and `shape` (a tuple of ints). The last of
//! duplicate keys wins. `descr` goes through `descr_to_dtype`: a string is given to
//! `numpy.dtype`, a tuple is a sub-array, anything else is iterated as the fields of
//! a structured dtype. Whenever the resulting dtype has objects in it, the array
//! data is a pickle that `numpy.load(allow_pickle=True)` runs.
//!
//! [`literal`] evaluates the literal (a strict subset of Python's, never a guess);
//! [`classify_descr`] says whether a `descr` is provably free of objects, and
//! [`Header::numeric`] gives the element type of a plain numeric array.
//!
//! Invariants: no `unsafe`, no panics on any input, no allocation larger than the
//! header (which is bounded by the caller's limit), recursion bounded by
//! [`literal::MAX_DEPTH`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod literal;

pub use literal::{literal_eval, LiteralError, Value};

/// The six bytes every `.npy` starts with.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// numpy refuses headers longer than this many characters unless
/// `allow_pickle=True` (then there is no limit).
pub const NUMPY_MAX_HEADER_SIZE: usize = 10_000;

/// The largest header this crate evaluates by default (bytes).
pub const DEFAULT_MAX_HEADER: usize = 1 << 20;

/// Why a `.npy` header was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NpyError {
    /// The file does not start with `\x93NUMPY`.
    #[error("no \\x93NUMPY magic")]
    NoMagic,
    /// The file ends inside the preamble or the header.
    #[error("truncated .npy: {0}")]
    Truncated(String),
    /// numpy reads only versions 1.0, 2.0 and 3.0.
    #[error("format version {major}.{minor} is not 1.0, 2.0 or 3.0")]
    Version {
        /// Major version byte.
        major: u8,
        /// Minor version byte.
        minor: u8,
    },
    /// The header is longer than this reader's limit (numpy with
    /// `allow_pickle=True` has none).
    #[error("header of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Declared header length.
        len: u64,
        /// The limit.
        limit: usize,
    },
    /// A version 3.0 header that is not UTF-8 (numpy fails to decode it).
    #[error("version 3.0 header is not UTF-8: {0}")]
    Encoding(String),
    /// The header is not a Python literal numpy accepts.
    // The parse error is part of the message, and so not also a `source()`.
    #[error("header {header} is not a Python literal: {reason}")]
    Literal {
        /// The header text, quoted and shortened.
        header: String,
        /// The parse error.
        reason: LiteralError,
    },
    /// The header is a literal but not the dict numpy expects.
    #[error("header {header} is not valid: {why}")]
    Header {
        /// The header text, quoted and shortened.
        header: String,
        /// What numpy would refuse.
        why: String,
    },
}

impl NpyError {
    /// True when numpy might accept what this crate refused (a construct or size
    /// it does not evaluate), so the file must be treated as possibly loadable.
    pub fn may_load(&self) -> bool {
        matches!(
            self,
            NpyError::TooLarge { .. }
                | NpyError::Literal {
                    reason: LiteralError::Unsupported { .. },
                    ..
                }
        )
    }
}

/// Quotes `s` for an error message, cut to `max` characters.
pub fn quote(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{:?}", out)
}

/// The fixed part before the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    /// Major version (1, 2 or 3).
    pub major: u8,
    /// Header length in bytes.
    pub header_len: u64,
    /// Offset of the header text.
    pub header_start: u64,
}

impl Preamble {
    /// Offset of the array data (header end).
    pub fn data_offset(&self) -> u64 {
        self.header_start + self.header_len
    }
}

/// Reads the magic, version and header length from the first (up to 12) bytes.
pub fn read_preamble(b: &[u8]) -> Result<Preamble, NpyError> {
    if b.len() < 6 {
        return Err(if MAGIC.starts_with(b) {
            NpyError::Truncated("file ends inside the magic".into())
        } else {
            NpyError::NoMagic
        });
    }
    if !b.starts_with(MAGIC) {
        return Err(NpyError::NoMagic);
    }
    let (Some(&major), Some(&minor)) = (b.get(6), b.get(7)) else {
        return Err(NpyError::Truncated("file ends inside the version".into()));
    };
    if minor != 0 || !(1..=3).contains(&major) {
        return Err(NpyError::Version { major, minor });
    }
    let (header_len, header_start) = if major == 1 {
        let s = b
            .get(8..10)
            .ok_or_else(|| NpyError::Truncated("file ends inside the header length".into()))?;
        (u64::from(u16::from_le_bytes([s[0], s[1]])), 10)
    } else {
        let s = b
            .get(8..12)
            .ok_or_else(|| NpyError::Truncated("file ends inside the header length".into()))?;
        (u64::from(u32::from_le_bytes([s[0], s[1], s[2], s[3]])), 12)
    };
    Ok(Preamble {
        major,
        header_len,
        header_start,
    })
}

/// A header that numpy accepts (up to the dtype, which [`classify_descr`] judges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The preamble.
    pub preamble: Preamble,
    /// The `descr` value (the last one written).
    pub descr: Value,
    /// `fortran_order`.
    pub fortran_order: bool,
    /// `shape`, as written (Python ints; `True`/`False` count as 1/0 in Python but
    /// are kept apart here).
    pub shape: Vec<Value>,
    /// Header length in characters, as numpy compares it with `max_header_size`.
    pub header_chars: usize,
    /// The header needed numpy's Python 2 `L`-suffix filter.
    pub python2_ints: bool,
}

impl Header {
    /// Whether `numpy.load` with the default `allow_pickle=False` refuses the header
    /// as too large (it still loads with `allow_pickle=True`).
    pub fn exceeds_numpy_default_limit(&self) -> bool {
        self.header_chars > NUMPY_MAX_HEADER_SIZE
    }

    /// Offset of the array data.
    pub fn data_offset(&self) -> u64 {
        self.preamble.data_offset()
    }

    /// The element type when `descr` is a plain numeric type string.
    pub fn numeric(&self) -> Option<Numeric> {
        match &self.descr {
            Value::Str(s) => numeric(s),
            _ => None,
        }
    }

    /// The object verdict for `descr`.
    pub fn dtype_verdict(&self) -> Verdict {
        classify_descr(&self.descr)
    }
}

/// Parses the header of the `.npy` whose bytes start `b` (which must hold at least
/// the whole header), refusing headers longer than `max_header` bytes.
pub fn parse_header(b: &[u8], max_header: usize) -> Result<Header, NpyError> {
    let preamble = read_preamble(b)?;
    if preamble.header_len > max_header as u64 {
        return Err(NpyError::TooLarge {
            len: preamble.header_len,
            limit: max_header,
        });
    }
    let start = preamble.header_start as usize;
    let raw = start
        .checked_add(preamble.header_len as usize)
        .and_then(|end| b.get(start..end))
        .ok_or_else(|| {
            NpyError::Truncated(format!(
                "header of {} bytes runs past the end",
                preamble.header_len
            ))
        })?;
    let text: String = if preamble.major == 3 {
        std::str::from_utf8(raw)
            .map_err(|e| NpyError::Encoding(e.to_string()))?
            .to_owned()
    } else {
        raw.iter().map(|&c| char::from(c)).collect()
    };
    let header_chars = text.chars().count();
    let lit_err = |reason| NpyError::Literal {
        header: quote(&text, 200),
        reason,
    };
    let (dict, python2_ints) = match literal_eval(&text, false) {
        Ok(v) => (v, false),
        Err(LiteralError::Invalid { .. }) if preamble.major <= 2 => {
            (literal_eval(&text, true).map_err(lit_err)?, true)
        }
        Err(e) => return Err(lit_err(e)),
    };
    let bad = |why: String| NpyError::Header {
        header: quote(&text, 200),
        why,
    };
    let Value::Dict(items) = &dict else {
        return Err(bad(format!("it is a {}, not a dict", dict.type_name())));
    };
    let mut keys: Vec<&str> = Vec::new();
    for (k, _) in items {
        match k {
            Value::Str(s) if ["descr", "fortran_order", "shape"].contains(&s.as_str()) => {
                if !keys.contains(&s.as_str()) {
                    keys.push(s);
                }
            }
            other => {
                return Err(bad(format!(
                    "unexpected key {}",
                    quote(&other.to_string(), 80)
                )))
            }
        }
    }
    if keys.len() != 3 {
        return Err(bad(format!(
            "keys {keys:?} are not descr, fortran_order and shape"
        )));
    }
    let descr = dict.dict_get("descr").cloned().unwrap_or(Value::None);
    let fortran_order = match dict.dict_get("fortran_order") {
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(bad(format!(
                "fortran_order {} is not a bool",
                quote(&v.to_string(), 80)
            )))
        }
        None => return Err(bad("no fortran_order".into())),
    };
    let shape = match dict.dict_get("shape") {
        Some(Value::Tuple(items))
            if items
                .iter()
                .all(|v| matches!(v, Value::Int(_) | Value::Bool(_))) =>
        {
            items.clone()
        }
        Some(v) => {
            return Err(bad(format!(
                "shape {} is not a tuple of ints",
                quote(&v.to_string(), 80)
            )))
        }
        None => return Err(bad("no shape".into())),
    };
    Ok(Header {
        preamble,
        descr,
        fortran_order,
        shape,
        header_chars,
        python2_ints,
    })
}

/// Whether a dtype description has Python objects in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Provably no objects: the data is plain bytes.
    Plain,
    /// An object dtype (its spelling): the data is a pickle.
    Object(String),
    /// Not provably free of objects (why): treat the data as a possible pickle.
    Unknown(String),
}

impl Verdict {
    fn join(self, other: Verdict) -> Verdict {
        match (self, other) {
            (o @ Verdict::Object(_), _) | (_, o @ Verdict::Object(_)) => o,
            (u @ Verdict::Unknown(_), _) | (_, u @ Verdict::Unknown(_)) => u,
            _ => Verdict::Plain,
        }
    }
}

/// Type-code letters that, with an optional byte order and ASCII size digits, numpy
/// reads as a dtype without objects (or refuses). Checked against numpy by the
/// differential tests.
const PLAIN_KINDS: &[u8] = b"?bBhHiIlLqQpPnNefdgFDGSUVacu";

/// Classifies a `descr` value the way `descr_to_dtype` builds the dtype: `Plain`
/// only for forms numpy writes (type strings, sub-array tuples, lists of
/// `(name, descr[, shape])` fields) whose every type is provably object-free.
pub fn classify_descr(descr: &Value) -> Verdict {
    match descr {
        Value::Str(s) => classify_str(s),
        Value::Tuple(items) => {
            // numpy.dtype((descr_to_dtype(descr[0]), descr[1])); extra items ignored.
            let base = items
                .first()
                .map(classify_descr)
                .unwrap_or_else(|| Verdict::Unknown("an empty sub-array tuple".into()));
            let shape = match items.get(1) {
                Some(v) if items.len() == 2 && is_shape(v) => Verdict::Plain,
                _ => Verdict::Unknown(format!(
                    "sub-array descriptor {} is not (dtype, shape)",
                    quote(&descr.to_string(), 80)
                )),
            };
            base.join(shape)
        }
        Value::List(fields) => fields
            .iter()
            .fold(Verdict::Plain, |acc, f| acc.join(classify_field(f))),
        // Dicts, sets, bytes… are iterated or rejected by numpy in ways that are
        // not worth modelling: look for object spellings inside, never call them plain.
        other => any_object(other).unwrap_or_else(|| {
            Verdict::Unknown(format!(
                "descr of type {} ({})",
                other.type_name(),
                quote(&other.to_string(), 80)
            ))
        }),
    }
}

fn classify_field(f: &Value) -> Verdict {
    let items = match f {
        Value::Tuple(v) | Value::List(v) => v,
        other => {
            return any_object(other).unwrap_or_else(|| {
                Verdict::Unknown(format!(
                    "structured field {} is not a tuple",
                    quote(&other.to_string(), 80)
                ))
            })
        }
    };
    match items.as_slice() {
        // The name (or (title, name)) cannot make objects; the descr can.
        [_, d] => classify_descr(d),
        [_, d, shape] => {
            let v = classify_descr(d);
            if is_shape(shape) {
                v
            } else {
                v.join(Verdict::Unknown(format!(
                    "field shape {} is not an int or tuple of ints",
                    quote(&shape.to_string(), 80)
                )))
            }
        }
        _ => any_object(f).unwrap_or_else(|| {
            Verdict::Unknown(format!(
                "structured field {} has {} items, not 2 or 3",
                quote(&f.to_string(), 80),
                items.len()
            ))
        }),
    }
}

fn is_shape(v: &Value) -> bool {
    match v {
        Value::Int(n) => *n >= 0,
        Value::Tuple(items) => items.iter().all(|i| matches!(i, Value::Int(n) if *n >= 0)),
        _ => false,
    }
}

/// An object verdict if any string anywhere in `v` spells an object dtype, or if
/// any string of two or three characters (which numpy unpacks as `name, descr`)
/// has one.
fn any_object(v: &Value) -> Option<Verdict> {
    match v {
        Value::Str(s) => {
            if let Verdict::Object(o) = classify_str(s) {
                return Some(Verdict::Object(o));
            }
            // A 2- or 3-character string iterated as a field: its second character
            // is a type string.
            let chars: Vec<char> = s.chars().collect();
            if (2..=3).contains(&chars.len()) {
                if let Verdict::Object(o) = classify_str(&chars[1].to_string()) {
                    return Some(Verdict::Object(format!("{o} (inside {})", quote(s, 20))));
                }
            }
            None
        }
        Value::Tuple(items) | Value::List(items) | Value::Set(items) => {
            items.iter().find_map(any_object)
        }
        Value::Dict(items) => items
            .iter()
            .find_map(|(k, v)| any_object(k).or_else(|| any_object(v))),
        _ => None,
    }
}

fn strip_order(s: &str) -> (Option<char>, &str) {
    match s.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) if s.len() > 1 => (Some(c), &s[1..]),
        _ => (None, s),
    }
}

/// Whether `s` (without byte order) spells an object dtype for `numpy.dtype`:
/// `O` with an optional `strtol` size, `\x11` (the object type number), `T`
/// (StringDType, which holds objects), `object`, `object_`.
fn object_spelling(s: &str) -> bool {
    if let Some(rest) = s.strip_prefix('O') {
        let rest = rest.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
        let rest = rest.strip_prefix(['+', '-']).unwrap_or(rest);
        return rest.bytes().all(|c| c.is_ascii_digit());
    }
    matches!(s, "\u{11}" | "T" | "object" | "object_")
}

/// numpy's `_check_for_commastring`: such strings are parsed as a list of fields.
fn is_commastring(s: &str) -> bool {
    let b = s.as_bytes();
    let order = |c: u8| matches!(c, b'<' | b'>' | b'|' | b'=');
    if b.first().is_some_and(u8::is_ascii_digit)
        || (b.len() > 1 && order(b[0]) && b[1].is_ascii_digit())
        || b.starts_with(b"()")
        || (b.len() > 3 && order(b[0]) && b[1..].starts_with(b"()"))
    {
        return true;
    }
    let mut sq = 0i64;
    for &c in b {
        match c {
            b',' if sq == 0 => return true,
            b'[' => sq += 1,
            b']' => sq -= 1,
            _ => {}
        }
    }
    false
}

/// Classifies a dtype string as `numpy.dtype(s)` reads it.
pub fn classify_str(s: &str) -> Verdict {
    if is_commastring(s) {
        // Each item: [order][repeats][order]type. Any object item makes objects.
        for part in s.split(',') {
            let t =
                part.trim_matches(|c: char| c.is_whitespace() || "()<>|=0123456789".contains(c));
            let t = t.trim_end_matches(|c: char| c.is_whitespace());
            if !t.is_empty() && (object_spelling(t) || object_spelling(strip_order(t).1)) {
                return Verdict::Object(quote(s, 80));
            }
        }
        return Verdict::Unknown(format!(
            "comma-separated dtype string {} is not evaluated",
            quote(s, 80)
        ));
    }
    let (_, rest) = strip_order(s);
    if object_spelling(rest) || object_spelling(s) {
        return Verdict::Object(quote(s, 80));
    }
    let b = rest.as_bytes();
    let plain = match b.split_first() {
        Some((k, digits)) if PLAIN_KINDS.contains(k) => {
            digits.len() <= 10 && digits.iter().all(u8::is_ascii_digit)
        }
        Some((b'M' | b'm', tail)) => {
            let tail = tail.strip_prefix(b"8").unwrap_or(tail);
            tail.is_empty()
                || (tail.len() <= 24
                    && tail.starts_with(b"[")
                    && tail.ends_with(b"]")
                    && tail.len() > 2
                    && tail[1..tail.len() - 1]
                        .iter()
                        .all(u8::is_ascii_alphanumeric))
        }
        _ => false,
    };
    if plain {
        Verdict::Plain
    } else {
        Verdict::Unknown(format!(
            "dtype string {} is not one tensorseal knows to be free of objects",
            quote(s, 80)
        ))
    }
}

/// Byte order of a numeric type string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    /// `<`.
    Little,
    /// `>`.
    Big,
    /// `=`, `|` or none: the reading machine's order.
    Native,
}

/// Numeric element kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `b` / `?`.
    Bool,
    /// `i`.
    Int,
    /// `u`.
    UInt,
    /// `f`.
    Float,
    /// `c`.
    Complex,
}

/// A plain numeric element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numeric {
    /// Kind.
    pub kind: Kind,
    /// Size in bytes.
    pub size: u8,
    /// Byte order as written.
    pub order: ByteOrder,
}

impl Numeric {
    /// Whether the data is big-endian on this machine.
    pub fn big_endian(&self) -> bool {
        match self.order {
            ByteOrder::Big => self.size > 1,
            ByteOrder::Little => false,
            ByteOrder::Native => cfg!(target_endian = "big") && self.size > 1,
        }
    }
}

/// The numeric type of `[<>|=]?(b1|?|i1|i2|i4|i8|u1|u2|u4|u8|f2|f4|f8|c8|c16)`, the
/// spellings numpy writes; `None` for anything else.
pub fn numeric(s: &str) -> Option<Numeric> {
    let (order, rest) = strip_order(s);
    let order = match order {
        Some('<') => ByteOrder::Little,
        Some('>') => ByteOrder::Big,
        _ => ByteOrder::Native,
    };
    let (kind, size) = match rest {
        "?" | "b1" => (Kind::Bool, 1),
        "i1" => (Kind::Int, 1),
        "i2" => (Kind::Int, 2),
        "i4" => (Kind::Int, 4),
        "i8" => (Kind::Int, 8),
        "u1" => (Kind::UInt, 1),
        "u2" => (Kind::UInt, 2),
        "u4" => (Kind::UInt, 4),
        "u8" => (Kind::UInt, 8),
        "f2" => (Kind::Float, 2),
        "f4" => (Kind::Float, 4),
        "f8" => (Kind::Float, 8),
        "c8" => (Kind::Complex, 8),
        "c16" => (Kind::Complex, 16),
        _ => return None,
    };
    Some(Numeric { kind, size, order })
}

#[cfg(test)]
mod tests;
