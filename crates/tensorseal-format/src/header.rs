//! Parsing and validating the JSON header; planning the header of a new file.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::{Dtype, FormatError};

/// The largest header the reader accepts, as in the reference implementation.
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// The deepest nesting of JSON arrays and objects a header may have, counting the
/// top-level object as 1. The reference (serde_json with its default recursion limit of
/// 128) accepts 127 levels and rejects 128 (measured with pip safetensors 0.8; see
/// `docs/header-acceptance.md`). Parsing the top level into raw values would otherwise
/// skip over any depth, so the bound is checked on the text first.
pub const MAX_NESTING_DEPTH: usize = 127;

/// Checks that `text` nests arrays and objects at most [`MAX_NESTING_DEPTH`] deep.
/// Brackets inside strings do not count. One pass, no allocation; the JSON parser
/// afterwards still rejects anything that is not valid JSON.
fn check_nesting(text: &[u8]) -> Result<(), FormatError> {
    /// Bytes the scan stops at outside strings.
    const STOP: [bool; 256] = {
        let mut t = [false; 256];
        t[b'"' as usize] = true;
        t[b'[' as usize] = true;
        t[b'{' as usize] = true;
        t[b']' as usize] = true;
        t[b'}' as usize] = true;
        t
    };
    let mut depth = 0usize;
    let mut offset = 0usize;
    loop {
        let rest = text.get(offset..).unwrap_or_default();
        let Some(k) = rest.iter().position(|&b| STOP[usize::from(b)]) else {
            return Ok(());
        };
        offset += k;
        match rest.get(k) {
            Some(b'"') => {
                // Skip the string: jump from one quote or backslash to the next.
                let mut at = offset + 1;
                loop {
                    let rest = text.get(at..).unwrap_or_default();
                    match memchr::memchr2(b'"', b'\\', rest) {
                        // Unterminated: nothing after it nests; the parser rejects it.
                        None => return Ok(()),
                        Some(k) if rest.get(k) == Some(&b'\\') => at += k + 2,
                        Some(k) => {
                            at += k + 1;
                            break;
                        }
                    }
                }
                offset = at;
                continue;
            }
            Some(b'[' | b'{') => {
                depth += 1;
                if depth > MAX_NESTING_DEPTH {
                    return Err(FormatError::NestingTooDeep {
                        depth,
                        offset,
                        limit: MAX_NESTING_DEPTH,
                    });
                }
            }
            _ => depth = depth.saturating_sub(1),
        }
        offset += 1;
    }
}

/// Key of the free-form string→string metadata map.
pub const METADATA_KEY: &str = "__metadata__";

/// One tensor's entry in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Element type.
    pub dtype: Dtype,
    /// Shape; empty for a 0-d tensor.
    pub shape: Vec<usize>,
    /// Start and end of the tensor's bytes, relative to the start of the data buffer.
    pub data_offsets: (usize, usize),
}

impl TensorInfo {
    /// Number of elements (product of the shape; 1 for a 0-d tensor).
    pub fn num_elements(&self) -> usize {
        // Validated at parse time not to overflow; saturate for hand-built values.
        self.shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .unwrap_or(usize::MAX)
    }

    /// Number of bytes of the tensor's data.
    pub fn byte_len(&self) -> usize {
        self.data_offsets.1.saturating_sub(self.data_offsets.0)
    }
}

/// A validated header: metadata plus tensors ordered by their data offsets.
#[derive(Debug, Clone)]
pub struct Header {
    metadata: Option<BTreeMap<String, String>>,
    tensors: Vec<(String, TensorInfo)>,
    by_name: NameIndex,
    data_len: usize,
}

// The name index is derived from `tensors`: equal tensors, equal headers.
impl PartialEq for Header {
    fn eq(&self, other: &Self) -> bool {
        self.metadata == other.metadata
            && self.tensors == other.tensors
            && self.data_len == other.data_len
    }
}

impl Eq for Header {}

/// Tensor name -> position in `Header::tensors`, without a second copy of
/// every name: the table holds positions and hashes the names they point at.
/// The hasher is std's randomly keyed SipHash, so crafted names cannot
/// force collisions.
#[derive(Clone, Default)]
struct NameIndex {
    table: HashTable<usize>,
    hasher: RandomState,
}

impl fmt::Debug for NameIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NameIndex")
            .field("len", &self.table.len())
            .finish()
    }
}

impl NameIndex {
    fn with_capacity(n: usize) -> Self {
        NameIndex {
            table: HashTable::with_capacity(n),
            hasher: RandomState::new(),
        }
    }

    fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    /// Position of `name` (whose [`NameIndex::hash`] is `hash`) among `tensors`.
    fn find(&self, tensors: &[(String, TensorInfo)], name: &str, hash: u64) -> Option<usize> {
        self.table
            .find(hash, |&i| tensors.get(i).is_some_and(|(n, _)| n == name))
            .copied()
    }

    /// Records position `at` of a name not yet in the index, whose hash is `hash`.
    fn insert_new(&mut self, tensors: &[(String, TensorInfo)], hash: u64, at: usize) {
        let hasher = &self.hasher;
        self.table.insert_unique(hash, at, |&i| {
            tensors
                .get(i)
                .map_or(0, |(n, _)| hasher.hash_one(n.as_str()))
        });
    }
}

/// The header being built, entry by entry, in document order.
struct Builder {
    metadata: Option<BTreeMap<String, String>>,
    metadata_seen: bool,
    tensors: Vec<(String, TensorInfo)>,
    by_name: NameIndex,
    /// The first fault found; later entries are then only checked for syntax.
    error: Option<FormatError>,
}

impl Builder {
    fn new(text_len: usize) -> Self {
        // A tensor entry takes at least 50 bytes of text, and ~70-120 in
        // real files: this guess rarely has to grow (growing the name
        // index rehashes every name) and never reserves more than about
        // twice what the header can hold, which is bounded by
        // MAX_HEADER_LEN.
        let guess = text_len / 64;
        Builder {
            metadata: None,
            metadata_seen: false,
            tensors: Vec::with_capacity(guess),
            by_name: NameIndex::with_capacity(guess),
            error: None,
        }
    }

    /// Empties the builder for a second pass over the same text, keeping
    /// its allocations.
    fn reset(&mut self) {
        self.metadata = None;
        self.metadata_seen = false;
        self.tensors.clear();
        self.by_name.table.clear();
        self.error = None;
    }

    /// Checks a top-level key that names a tensor (not yet seen, not empty,
    /// no NUL); returns its hash for [`Builder::push`].
    fn check_name(&self, name: &str) -> Result<u64, FormatError> {
        let hash = self.by_name.hash(name);
        if self.by_name.find(&self.tensors, name, hash).is_some() {
            return Err(FormatError::DuplicateKey {
                key: name.to_owned(),
            });
        }
        if name.is_empty() {
            return Err(FormatError::EmptyName);
        }
        if name.contains('\0') {
            return Err(FormatError::NameContainsNul {
                name: name.to_owned(),
            });
        }
        Ok(hash)
    }

    /// Adds a checked tensor; `hash` is from [`Builder::check_name`].
    fn push(&mut self, name: String, info: TensorInfo, hash: u64) {
        self.tensors.push((name, info));
        self.by_name
            .insert_new(&self.tensors, hash, self.tensors.len() - 1);
    }

    /// Validates one top-level entry: a fast typed parse for well-formed
    /// tensors, and a slow path (a generic value) that finds the precise
    /// fault when the fast path fails.
    fn entry(&mut self, name: Cow<'_, str>, entry: &RawValue) -> Result<(), FormatError> {
        if name == METADATA_KEY {
            if std::mem::replace(&mut self.metadata_seen, true) {
                return Err(FormatError::DuplicateKey {
                    key: name.into_owned(),
                });
            }
            // `null` means no metadata, as in the reference.
            self.metadata = parse_metadata(&slow_entry(entry)?)?;
            return Ok(());
        }
        let hash = self.check_name(&name)?;
        let info = parse_tensor_fast(&name, entry)?;
        self.push(name.into_owned(), info, hash);
        Ok(())
    }

    /// Reads a whole header written in the layout writers emit (see
    /// [`Canonical`]) in one pass over the text, without serde. `None` as
    /// soon as anything differs from that layout or any rule fails: the
    /// caller then resets the builder and takes the general path, which
    /// finds the same result or the precise first fault. So this path only
    /// ever accepts headers the general path accepts, with the same result.
    fn canonical(&mut self, text: &str) -> Option<()> {
        let mut c = Canonical {
            src: text,
            text: text.as_bytes(),
            at: 0,
        };
        c.eat(b"{")?;
        if c.eat(b"}").is_none() {
            loop {
                let name = c.string()?;
                c.eat(b":")?;
                if name == METADATA_KEY {
                    if std::mem::replace(&mut self.metadata_seen, true) {
                        return None;
                    }
                    self.metadata = c.metadata()?;
                } else {
                    let hash = self.check_name(name).ok()?;
                    let (dtype, shape, start, end) = c.tensor_value()?;
                    let info = finish_tensor(name, dtype, shape, start, end).ok()?;
                    self.push(name.to_owned(), info, hash);
                }
                if c.eat(b"}").is_some() {
                    break;
                }
                c.eat(b",")?;
            }
        }
        c.skip_ws();
        (c.at == c.text.len()).then_some(())
    }
}

/// Reads the top-level object into a [`Builder`] without keeping the pairs.
struct TopLevel<'b>(&'b mut Builder);

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(name)) = map.next_key::<Key>()? {
            if self.0.error.is_some() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let raw: &RawValue = map.next_value()?;
            if let Err(e) = self.0.entry(name, raw) {
                self.0.error = Some(e);
            }
        }
        Ok(())
    }
}

/// A top-level header key, borrowed from the header text unless it holds
/// escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// A whole in-memory file's validated header and where its data starts
/// ([`Header::parse_file_prefix`]).
#[derive(Debug, Clone)]
pub struct FilePrefix {
    /// The validated header (its data length checked against the bytes).
    pub header: Header,
    /// Offset of the data buffer: 8 plus the header's length.
    pub data_start: usize,
}

impl Header {
    /// Parses and validates header JSON bytes (the `N` bytes after the length prefix).
    ///
    /// Checks every rule that does not need the data buffer; the caller compares
    /// [`Header::data_len`] with the buffer it has.
    pub fn parse(json: &[u8]) -> Result<Header, FormatError> {
        Header::parse_with(json, true)
    }

    /// [`Header::parse`] by the general (serde) path only, never the
    /// one-pass reader: for the fuzzer, which checks that both agree.
    #[cfg(feature = "fuzzing")]
    #[doc(hidden)]
    pub fn parse_general(json: &[u8]) -> Result<Header, FormatError> {
        Header::parse_with(json, false)
    }

    /// [`Header::parse`], with the one-pass reader of the usual layout
    /// tried first or (for tests comparing the two) not at all.
    fn parse_with(json: &[u8], try_canonical: bool) -> Result<Header, FormatError> {
        let text = std::str::from_utf8(json).map_err(|e| FormatError::InvalidUtf8 {
            valid_up_to: e.valid_up_to(),
        })?;
        let mut builder = Builder::new(text.len());
        // Nearly every file: one pass, no serde (see `Builder::canonical`).
        if !try_canonical || builder.canonical(text).is_none() {
            builder.reset();
            check_nesting(json)?;
            // One pass over the text: each entry is taken as raw JSON text
            // and validated at once (see `Builder::entry`). Keys stay
            // borrowed from `text`; each tensor name is copied once, into
            // the header.
            let mut de = serde_json::Deserializer::from_str(text);
            TopLevel(&mut builder)
                .deserialize(&mut de)
                .and_then(|()| de.end())
                .map_err(|e| FormatError::InvalidJson {
                    reason: e.to_string(),
                })?;
        }
        // A syntax error anywhere is reported first; then the first fault in
        // document order.
        if let Some(e) = builder.error {
            return Err(e);
        }
        let Builder {
            metadata,
            mut tensors,
            mut by_name,
            ..
        } = builder;

        // File order: by offsets. Stable sort keeps JSON order among equal
        // offsets. Writers emit offsets in order, so this is usually a check.
        if !tensors.is_sorted_by_key(|(_, info)| info.data_offsets) {
            let mut order: Vec<usize> = (0..tensors.len()).collect();
            order.sort_by_key(|&i| tensors.get(i).map(|(_, info)| info.data_offsets));
            let mut position = vec![0usize; order.len()];
            for (sorted, &doc) in order.iter().enumerate() {
                if let Some(p) = position.get_mut(doc) {
                    *p = sorted;
                }
            }
            let mut slots: Vec<Option<(String, TensorInfo)>> =
                tensors.into_iter().map(Some).collect();
            tensors = order
                .iter()
                .filter_map(|&i| slots.get_mut(i).and_then(Option::take))
                .collect();
            for at in by_name.table.iter_mut() {
                *at = position.get(*at).copied().unwrap_or(usize::MAX);
            }
        }
        let mut expected = 0usize;
        for (name, info) in &tensors {
            let (start, end) = info.data_offsets;
            if start != expected {
                return Err(FormatError::NonContiguous {
                    tensor: name.clone(),
                    start: start as u64,
                    expected: expected as u64,
                });
            }
            expected = end;
        }
        Ok(Header {
            metadata,
            tensors,
            by_name,
            data_len: expected,
        })
    }

    /// Parses a whole in-memory file: prefix, header and data buffer.
    ///
    /// Returns the header and the offset at which the data buffer starts.
    pub fn parse_file_prefix(bytes: &[u8]) -> Result<FilePrefix, FormatError> {
        let n = read_header_len(bytes, bytes.len() as u64)?;
        let json = bytes.get(8..8 + n).ok_or(FormatError::HeaderPastEnd {
            len: n as u64,
            file_len: bytes.len() as u64,
        })?;
        let header = Header::parse(json)?;
        header.check_data_len((bytes.len() - 8 - n) as u64)?;
        Ok(FilePrefix {
            header,
            data_start: 8 + n,
        })
    }

    /// Checks that a data buffer of `found` bytes is exactly what the tensors cover.
    pub fn check_data_len(&self, found: u64) -> Result<(), FormatError> {
        if found != self.data_len as u64 {
            return Err(FormatError::BufferLengthMismatch {
                expected: self.data_len as u64,
                found,
            });
        }
        Ok(())
    }

    /// The `__metadata__` map, if the file has one.
    pub fn metadata(&self) -> Option<&BTreeMap<String, String>> {
        self.metadata.as_ref()
    }

    /// Tensors in file order (ascending data offsets).
    pub fn tensors(&self) -> &[(String, TensorInfo)] {
        &self.tensors
    }

    /// Looks a tensor up by name.
    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name
            .find(&self.tensors, name, self.by_name.hash(name))
            .and_then(|i| self.tensors.get(i))
            .map(|(_, info)| info)
    }

    /// Looks a tensor up by name, with an error naming it if absent.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, FormatError> {
        self.get(name).ok_or_else(|| FormatError::TensorNotFound {
            name: name.to_owned(),
        })
    }

    /// Tensor names in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(n, _)| n.as_str())
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the file holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Length of the data buffer the tensors cover.
    pub fn data_len(&self) -> usize {
        self.data_len
    }
}

/// Reads and bounds the 8-byte little-endian header length.
///
/// `file_len` is the total length of the file the prefix came from.
pub fn read_header_len(prefix: &[u8], file_len: u64) -> Result<usize, FormatError> {
    let bytes: [u8; 8] = prefix
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or(FormatError::FileTooSmall { len: file_len })?;
    let n = u64::from_le_bytes(bytes);
    if n > MAX_HEADER_LEN {
        return Err(FormatError::HeaderTooLarge {
            len: n,
            limit: MAX_HEADER_LEN,
        });
    }
    if n > file_len.saturating_sub(8) {
        return Err(FormatError::HeaderPastEnd { len: n, file_len });
    }
    // n <= MAX_HEADER_LEN, which fits usize on every supported target.
    Ok(n as usize)
}

fn parse_metadata(entry: &Entry) -> Result<Option<BTreeMap<String, String>>, FormatError> {
    if matches!(entry, Entry::Other(Value::Null)) {
        return Ok(None);
    }
    let Entry::Object(pairs) = entry else {
        return Err(FormatError::InvalidMetadata {
            reason: format!("expected an object of strings, found {}", entry.describe()),
        });
    };
    let mut map = BTreeMap::new();
    for (k, v) in pairs {
        let Value::String(s) = v else {
            return Err(FormatError::InvalidMetadata {
                reason: format!("value of key {k:?} is {v}, not a string"),
            });
        };
        if map.insert(k.clone(), s.clone()).is_some() {
            return Err(FormatError::DuplicateKey {
                key: format!("{METADATA_KEY}.{k}"),
            });
        }
    }
    Ok(Some(map))
}

/// The shape of a well-formed tensor entry; anything else fails to
/// deserialise and goes to [`parse_tensor`] for a precise error.
#[derive(Deserialize)]
struct FastTensor<'a> {
    #[serde(borrow)]
    dtype: Cow<'a, str>,
    shape: Vec<usize>,
    data_offsets: (usize, usize),
}

fn slow_entry(raw: &RawValue) -> Result<Entry, FormatError> {
    serde_json::from_str(raw.get()).map_err(|e| FormatError::InvalidJson {
        reason: e.to_string(),
    })
}

/// A cursor over header text in the layout writers emit: strings without
/// escapes, non-negative integers, tensor entries with their three fields in
/// the order `dtype`, `shape`, `data_offsets`. Every method returns `None`
/// where the text differs from that layout (even where it is valid JSON);
/// what it accepts, it reads exactly as serde_json would.
struct Canonical<'a> {
    src: &'a str,
    text: &'a [u8],
    at: usize,
}

impl<'a> Canonical<'a> {
    #[inline(always)]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.at) {
            self.at += 1;
        }
    }

    /// Consumes `token` (after whitespace).
    // Inlined, the comparison with a constant token becomes a few integer
    // compares rather than a call to memcmp.
    #[inline(always)]
    fn eat(&mut self, token: &[u8]) -> Option<()> {
        self.skip_ws();
        let rest = self.text.get(self.at..)?;
        (rest.get(..token.len()) == Some(token)).then(|| self.at += token.len())
    }

    /// A string without escapes or control characters (which JSON forbids
    /// unescaped).
    fn string(&mut self) -> Option<&'a str> {
        /// Bytes that end the body of such a string: its closing quote, or
        /// what it may not contain.
        const STOP: [bool; 256] = {
            let mut t = [false; 256];
            let mut b = 0;
            while b < 0x20 {
                t[b] = true;
                b += 1;
            }
            t[b'"' as usize] = true;
            t[b'\\' as usize] = true;
            t
        };
        self.eat(b"\"")?;
        let rest = self.text.get(self.at..)?;
        // Names are short: a table lookup per byte beats memchr's setup.
        let end = rest.iter().position(|&b| STOP[usize::from(b)])?;
        if rest.get(end) != Some(&b'"') {
            return None;
        }
        // Between two ASCII quotes, so on character boundaries.
        let body = self.src.get(self.at..self.at + end)?;
        self.at += end + 1;
        Some(body)
    }

    /// A non-negative integer that fits `usize` (not a float: no `.`/`e`).
    fn uint(&mut self) -> Option<usize> {
        self.skip_ws();
        let start = self.at;
        let mut n = 0usize;
        while let Some(&d) = self.text.get(self.at).filter(|d| d.is_ascii_digit()) {
            n = n.checked_mul(10)?.checked_add(usize::from(d - b'0'))?;
            self.at += 1;
        }
        let float = matches!(self.text.get(self.at), Some(b'.' | b'e' | b'E'));
        // JSON has no leading zeros ("01").
        let leading_zero = self.at - start > 1 && self.text.get(start) == Some(&b'0');
        (self.at > start && !float && !leading_zero).then_some(n)
    }

    /// An array of such integers.
    fn uints(&mut self) -> Option<Vec<usize>> {
        self.eat(b"[")?;
        let mut out = Vec::new();
        if self.eat(b"]").is_some() {
            return Some(out);
        }
        loop {
            out.push(self.uint()?);
            if self.eat(b"]").is_some() {
                return Some(out);
            }
            self.eat(b",")?;
        }
    }

    /// `{"dtype": S, "shape": [N...], "data_offsets": [N, N]}` in that
    /// order (how writers lay entries out), whitespace allowed between
    /// tokens; `None` for any other form, which serde then handles.
    fn tensor(text: &'a str) -> Option<(Dtype, Vec<usize>, usize, usize)> {
        let mut c = Canonical {
            src: text,
            text: text.as_bytes(),
            at: 0,
        };
        let tensor = c.tensor_value()?;
        c.skip_ws();
        (c.at == c.text.len()).then_some(tensor)
    }

    /// One tensor entry, the object after its name (see [`Canonical::tensor`]).
    fn tensor_value(&mut self) -> Option<(Dtype, Vec<usize>, usize, usize)> {
        self.eat(b"{")?;
        self.eat(b"\"dtype\"")?;
        self.eat(b":")?;
        let dtype = self.string()?.parse::<Dtype>().ok()?;
        self.eat(b",")?;
        self.eat(b"\"shape\"")?;
        self.eat(b":")?;
        let shape = self.uints()?;
        self.eat(b",")?;
        self.eat(b"\"data_offsets\"")?;
        self.eat(b":")?;
        self.eat(b"[")?;
        let start = self.uint()?;
        self.eat(b",")?;
        let end = self.uint()?;
        self.eat(b"]")?;
        self.eat(b"}")?;
        Some((dtype, shape, start, end))
    }

    /// The metadata value: `null`, or an object of strings with distinct
    /// keys.
    fn metadata(&mut self) -> Option<Option<BTreeMap<String, String>>> {
        if self.eat(b"null").is_some() {
            return Some(None);
        }
        self.eat(b"{")?;
        let mut map = BTreeMap::new();
        if self.eat(b"}").is_some() {
            return Some(Some(map));
        }
        loop {
            let key = self.string()?;
            self.eat(b":")?;
            let value = self.string()?;
            if map.insert(key.to_owned(), value.to_owned()).is_some() {
                return None;
            }
            if self.eat(b"}").is_some() {
                return Some(Some(map));
            }
            self.eat(b",")?;
        }
    }
}

fn parse_tensor_fast(name: &str, raw: &RawValue) -> Result<TensorInfo, FormatError> {
    // The common layout, read without serde; it yields exactly what the
    // typed parse below would for the same text.
    if let Some((dtype, shape, start, end)) = Canonical::tensor(raw.get()) {
        return finish_tensor(name, dtype, shape, start, end);
    }
    // Serde would also accept an array for a struct: only objects go fast.
    if raw.get().trim_start().starts_with('{') {
        if let Ok(fast) = serde_json::from_str::<FastTensor>(raw.get()) {
            if let Ok(dtype) = fast.dtype.parse::<Dtype>() {
                let (start, end) = fast.data_offsets;
                return finish_tensor(name, dtype, fast.shape, start, end);
            }
        }
    }
    parse_tensor(name, &slow_entry(raw)?)
}

fn parse_tensor(name: &str, entry: &Entry) -> Result<TensorInfo, FormatError> {
    let invalid = |reason: String| FormatError::InvalidTensorEntry {
        tensor: name.to_owned(),
        reason,
    };
    let Entry::Object(pairs) = entry else {
        return Err(invalid(format!(
            "expected an object, found {}",
            entry.describe()
        )));
    };
    let mut dtype = None;
    let mut shape = None;
    let mut offsets = None;
    for (k, v) in pairs {
        let slot = match k.as_str() {
            "dtype" => &mut dtype,
            "shape" => &mut shape,
            "data_offsets" => &mut offsets,
            // Unknown fields are ignored, as the reference does.
            _ => continue,
        };
        if slot.replace(v).is_some() {
            return Err(FormatError::DuplicateKey {
                key: format!("{name}.{k}"),
            });
        }
    }
    let dtype = match dtype {
        Some(Value::String(s)) => s.parse::<Dtype>().map_err(|_| FormatError::UnknownDtype {
            tensor: name.to_owned(),
            dtype: s.clone(),
        })?,
        Some(other) => {
            return Err(FormatError::UnknownDtype {
                tensor: name.to_owned(),
                dtype: other.to_string(),
            })
        }
        None => return Err(invalid("missing field \"dtype\"".into())),
    };
    let shape = match shape {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                as_usize(v).ok_or_else(|| FormatError::InvalidShape {
                    tensor: name.to_owned(),
                    value: v.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(FormatError::InvalidShape {
                tensor: name.to_owned(),
                value: other.to_string(),
            })
        }
        None => return Err(invalid("missing field \"shape\"".into())),
    };
    let (start, end) = match offsets {
        Some(v @ Value::Array(items)) => {
            let bad = || FormatError::InvalidOffsets {
                tensor: name.to_owned(),
                value: v.to_string(),
            };
            match items.as_slice() {
                [a, b] => (as_usize(a).ok_or_else(bad)?, as_usize(b).ok_or_else(bad)?),
                _ => return Err(bad()),
            }
        }
        Some(other) => {
            return Err(FormatError::InvalidOffsets {
                tensor: name.to_owned(),
                value: other.to_string(),
            })
        }
        None => return Err(invalid("missing field \"data_offsets\"".into())),
    };
    finish_tensor(name, dtype, shape, start, end)
}

/// Checks offsets against dtype and shape.
fn finish_tensor(
    name: &str,
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
) -> Result<TensorInfo, FormatError> {
    if end < start {
        return Err(FormatError::OffsetsReversed {
            tensor: name.to_owned(),
            start: start as u64,
            end: end as u64,
        });
    }
    let expected = byte_size(name, dtype, &shape)?;
    if expected != end - start {
        return Err(FormatError::SizeMismatch {
            tensor: name.to_owned(),
            dtype,
            shape: shape.iter().map(|&d| d as u64).collect(),
            expected: expected as u64,
            found: (end - start) as u64,
        });
    }
    Ok(TensorInfo {
        dtype,
        shape,
        data_offsets: (start, end),
    })
}

/// Bytes needed by a tensor of `dtype` and `shape`, with overflow and
/// partial-byte checks. `name` is used in error messages.
pub fn byte_size(name: &str, dtype: Dtype, shape: &[usize]) -> Result<usize, FormatError> {
    let overflow = || FormatError::SizeOverflow {
        tensor: name.to_owned(),
        shape: shape.iter().map(|&d| d as u64).collect(),
    };
    let elements = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(overflow)?;
    let bits = elements.checked_mul(dtype.bits()).ok_or_else(overflow)?;
    if bits % 8 != 0 {
        return Err(FormatError::PartialByte {
            tensor: name.to_owned(),
            dtype,
            elements: elements as u64,
            bits: bits as u128,
        });
    }
    Ok(bits / 8)
}

fn as_usize(v: &Value) -> Option<usize> {
    v.as_u64().and_then(|n| usize::try_from(n).ok())
}

/// A JSON object kept as its list of pairs, duplicates included, in document order.
pub(crate) struct Pairs<V, K = String>(pub(crate) Vec<(K, V)>);

impl<'de, V: Deserialize<'de>, K: Deserialize<'de>> Deserialize<'de> for Pairs<V, K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V, K>(std::marker::PhantomData<(V, K)>);
        impl<'de, V: Deserialize<'de>, K: Deserialize<'de>> Visitor<'de> for V2<V, K> {
            type Value = Pairs<V, K>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                // Capacity is bounded: the hint comes from the parser, not the input.
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
                while let Some((k, v)) = map.next_entry::<K, V>()? {
                    out.push((k, v));
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_map(V2(std::marker::PhantomData))
    }
}

/// A header entry: an object (pairs kept to detect duplicate fields) or anything else.
pub(crate) enum Entry {
    Object(Vec<(String, Value)>),
    Other(Value),
}

impl Entry {
    pub(crate) fn describe(&self) -> String {
        match self {
            Entry::Object(_) => "an object".into(),
            Entry::Other(v) => v.to_string(),
        }
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = Entry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(Entry::Object(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Entry, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<Value>()? {
                    out.push(v);
                }
                Ok(Entry::Other(Value::Array(out)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Entry, E> {
                Ok(Entry::Other(Value::Bool(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Entry, E> {
                Ok(Entry::Other(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Entry, E> {
                Ok(Entry::Other(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Entry, E> {
                Ok(Entry::Other(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Entry, E> {
                Ok(Entry::Other(Value::String(v.to_owned())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Entry, E> {
                Ok(Entry::Other(Value::Null))
            }
        }
        d.deserialize_any(EntryVisitor)
    }
}

#[cfg(test)]
mod nesting_tests {
    use super::*;

    fn header_with_extra(extra: &str) -> String {
        format!(r#"{{"t":{{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":{extra}}}}}"#)
    }

    #[test]
    fn depth_127_accepted_128_rejected_as_the_reference() {
        // Top-level object and the tensor entry are two levels.
        let ok = header_with_extra(&format!("{}{}", "[".repeat(125), "]".repeat(125)));
        assert!(Header::parse(ok.as_bytes()).is_ok());
        let deep = header_with_extra(&format!("{}{}", "[".repeat(126), "]".repeat(126)));
        let e = Header::parse(deep.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), "nesting_too_deep");
        assert!(e.to_string().contains("128 deep"), "{e}");
    }

    #[test]
    fn brackets_in_strings_and_escapes_do_not_count() {
        let s = format!(r#""\"{}\\""#, "[{".repeat(200));
        assert!(Header::parse(header_with_extra(&s).as_bytes()).is_ok());
        // Unbalanced closers never underflow into a pass for deeper nesting.
        assert!(check_nesting(b"]]]]").is_ok());
        let e = check_nesting(format!("]]{}", "[".repeat(128)).as_bytes()).unwrap_err();
        assert!(matches!(
            e,
            FormatError::NestingTooDeep {
                depth: 128,
                offset: 129,
                ..
            }
        ));
    }

    fn t(dtype: &str, shape: &str, offsets: &str) -> String {
        format!(r#"{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offsets}}}"#)
    }

    #[test]
    fn offsets_out_of_document_order_are_sorted_and_found_by_name() {
        let json = format!(
            r#"{{"c":{},"__metadata__":{{"k":"v"}},"a":{},"b":{}}}"#,
            t("F32", "[2]", "[4,12]"),
            t("U8", "[4]", "[0,4]"),
            t("F32", "[]", "[12,16]")
        );
        let h = Header::parse(json.as_bytes()).unwrap();
        assert_eq!(h.names().collect::<Vec<_>>(), ["a", "c", "b"]);
        assert_eq!(h.get("a").unwrap().data_offsets, (0, 4));
        assert_eq!(h.get("c").unwrap().shape, vec![2]);
        assert_eq!(h.get("b").unwrap().data_offsets, (12, 16));
        assert!(h.get("d").is_none());
        assert_eq!(h.data_len(), 16);
        assert_eq!(h.clone(), h);
    }

    #[test]
    fn first_fault_in_document_order_wins_and_syntax_errors_come_first() {
        let ok = t("F32", "[1]", "[0,4]");
        let bad = t("F32", "[2]", "[0,4]");
        let dup = format!(r#"{{"a":{ok},"a":{ok},"b":{bad}}}"#);
        assert_eq!(
            Header::parse(dup.as_bytes()).unwrap_err().kind(),
            "duplicate_key"
        );
        let meta = r#"{"__metadata__":null,"__metadata__":null}"#;
        assert_eq!(
            Header::parse(meta.as_bytes()).unwrap_err().kind(),
            "duplicate_key"
        );
        let broken = format!(r#"{{"b":{bad},"a":{ok},}}"#);
        assert_eq!(
            Header::parse(broken.as_bytes()).unwrap_err().kind(),
            "invalid_json"
        );
    }

    #[test]
    fn canonical_reader_agrees_with_the_typed_parse() {
        let texts = [
            t("F32", "[8,16]", "[0,512]"),
            t("BF16", "[]", "[0,2]"),
            " { \"dtype\" : \"F32\" ,\n\"shape\":[ 1 , 2 ] ,\"data_offsets\":[0 ,8] } ".into(),
            t("F32", "[1.0]", "[0,4]"),
            t("F32", "[1e0]", "[0,4]"),
            t("F32", "[-1]", "[0,4]"),
            t("F32", "[99999999999999999999]", "[0,4]"),
            t("F32", "[1]", "[0,4,8]"),
            t("F\\u0033 2", "[1]", "[0,4]"),
            t("XYZ", "[1]", "[0,4]"),
            r#"{"shape":[1],"dtype":"F32","data_offsets":[0,4]}"#.into(),
            r#"{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}"#.into(),
        ];
        for text in &texts {
            let typed = serde_json::from_str::<FastTensor>(text).ok().and_then(|f| {
                let dtype = f.dtype.parse::<Dtype>().ok()?;
                Some((dtype, f.shape, f.data_offsets.0, f.data_offsets.1))
            });
            if let Some(canonical) = Canonical::tensor(text) {
                assert_eq!(Some(canonical), typed, "{text}");
            }
        }
        assert!(Canonical::tensor(&texts[2]).is_some());
        assert!(Canonical::tensor(&texts[3]).is_none());
    }

    #[test]
    fn very_deep_nesting_is_rejected_without_recursion() {
        let deep = header_with_extra(&"[".repeat(1_000_000));
        assert_eq!(
            Header::parse(deep.as_bytes()).unwrap_err().kind(),
            "nesting_too_deep"
        );
    }

    /// Both readers on the same text: equal headers, or equal errors.
    fn same_either_way(text: &[u8]) -> Result<(), String> {
        let fast = Header::parse_with(text, true).map_err(|e| e.to_string());
        let general = Header::parse_with(text, false).map_err(|e| e.to_string());
        if fast == general {
            Ok(())
        } else {
            Err(format!(
                "{:?}: one pass {fast:?}, general {general:?}",
                String::from_utf8_lossy(text)
            ))
        }
    }

    #[test]
    fn the_one_pass_reader_agrees_with_serde_on_edge_cases() {
        let ok =
            r#"{"__metadata__":{"a":"b"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        assert!(Header::parse(ok.as_bytes()).is_ok());
        let mut b = Builder::new(ok.len());
        assert!(
            b.canonical(ok).is_some(),
            "the usual layout takes the one pass"
        );
        let cases = [
            ok.to_owned(),
            "{}".into(),
            " {\n} \n".into(),
            r#"{"__metadata__":null}"#.into(),
            r#"{"__metadata__":{}}"#.into(),
            r#"{"__metadata__":{"a":"b","a":"c"}}"#.into(),
            r#"{"__metadata__":{"a":1}}"#.into(),
            r#"{"__metadata__":{},"__metadata__":{}}"#.into(),
            ok.replace("[0,8]", "[00,8]"),
            ok.replace("[0,8]", "[0,08]"),
            ok.replace("[2]", "[02]"),
            ok.replace("[2]", "[2.0]"),
            ok.replace("[2]", "[-2]"),
            ok.replace("[2]", "[3]"),
            ok.replace("\"w\"", "\"\""),
            ok.replace("\"w\"", "\"w\\u0000\""),
            ok.replace("\"w\"", "\"w\u{1}\""),
            ok.replace("\"w\"", "\"w\\n\""),
            ok.replace("\"b\"", "\"b\u{7}\""),
            ok.replace("\"F32\"", "\"f32\""),
            ok.replace(
                "}}",
                "},\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}",
            ),
            ok.replace(
                "}}",
                "},\"v\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}",
            ),
            ok.replace("}}", "}},"),
            ok.replace("}}", "}} x"),
            format!("\u{feff}{ok}"),
            format!("{ok}\t\r\n "),
            ok.replace(":", " : ").replace(",", " ,\n"),
            ok.replace("[0,8]", "[0,8,]"),
            ok.replace("[0,8]", "[0 8]"),
            ok.replace("null", "nul"),
            r#"{"__metadata__":nullx}"#.into(),
            r#"{"w":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,4]}}"#.into(),
        ];
        for case in &cases {
            same_either_way(case.as_bytes()).unwrap();
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Well-formed headers, then bytes overwritten, inserted or removed
        /// at random: the one-pass reader never accepts what serde would
        /// not, and never reads it differently.
        #[test]
        fn the_one_pass_reader_agrees_with_serde(
            shapes in proptest::collection::vec(proptest::collection::vec(0usize..4, 0..3), 0..4),
            meta in proptest::option::of(proptest::collection::btree_map("[a-z\\\\\"]{0,3}", "[ -~]{0,3}", 0..3)),
            edits in proptest::collection::vec((0usize..400, 0u8..3, proptest::sample::select(b" \t\n0123456789,:[]{}\"\\-.eE_ZFUI8".to_vec())), 0..3),
        ) {
            let mut text = String::from("{");
            if let Some(m) = &meta {
                text += &format!("\"__metadata__\":{},", serde_json::to_string(m).unwrap());
            }
            let mut offset = 0usize;
            for (i, shape) in shapes.iter().enumerate() {
                let n: usize = shape.iter().product();
                text += &format!(
                    "\"t{i}\":{{\"dtype\":\"U8\",\"shape\":{},\"data_offsets\":[{offset},{}]}},",
                    serde_json::to_string(shape).unwrap(),
                    offset + n
                );
                offset += n;
            }
            if text.ends_with(',') {
                text.pop();
            }
            text.push('}');
            let mut bytes = text.into_bytes();
            for (at, op, byte) in edits {
                let at = at % (bytes.len() + 1);
                match op {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ if at < bytes.len() => { bytes.remove(at); }
                    _ => {}
                }
            }
            if let Err(e) = same_either_way(&bytes) {
                proptest::prop_assert!(false, "{}", e);
            }
        }
    }
}
