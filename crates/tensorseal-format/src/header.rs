//! Parsing and validating the JSON header; planning the header of a new file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
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
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, &b) in text.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING_DEPTH {
                    return Err(FormatError::NestingTooDeep {
                        depth,
                        offset,
                        limit: MAX_NESTING_DEPTH,
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    metadata: Option<BTreeMap<String, String>>,
    tensors: Vec<(String, TensorInfo)>,
    by_name: HashMap<String, usize>,
    data_len: usize,
}

impl Header {
    /// Parses and validates header JSON bytes (the `N` bytes after the length prefix).
    ///
    /// Checks every rule that does not need the data buffer; the caller compares
    /// [`Header::data_len`] with the buffer it has.
    pub fn parse(json: &[u8]) -> Result<Header, FormatError> {
        let text = std::str::from_utf8(json).map_err(|e| FormatError::InvalidUtf8 {
            valid_up_to: e.valid_up_to(),
        })?;
        check_nesting(json)?;
        // Each entry is kept as raw JSON text, parsed below: a typed fast
        // path for well-formed tensors, and a slow path (a generic value)
        // that finds the precise fault when the fast path fails.
        let raw: Pairs<&RawValue> =
            serde_json::from_str(text).map_err(|e| FormatError::InvalidJson {
                reason: e.to_string(),
            })?;

        let mut seen: HashSet<&str> = HashSet::with_capacity(raw.0.len());
        let mut metadata = None;
        let mut tensors = Vec::with_capacity(raw.0.len());
        for (name, entry) in &raw.0 {
            if !seen.insert(name.as_str()) {
                return Err(FormatError::DuplicateKey { key: name.clone() });
            }
            if name == METADATA_KEY {
                // `null` means no metadata, as in the reference.
                metadata = parse_metadata(&slow_entry(entry)?)?;
                continue;
            }
            if name.is_empty() {
                return Err(FormatError::EmptyName);
            }
            if name.contains('\0') {
                return Err(FormatError::NameContainsNul { name: name.clone() });
            }
            tensors.push((name.clone(), parse_tensor_fast(name, entry)?));
        }

        // File order: by offsets. Stable sort keeps JSON order among equal offsets.
        tensors.sort_by_key(|(_, info)| info.data_offsets);
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
        let by_name = tensors
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), i))
            .collect();
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
    pub fn parse_file_prefix(bytes: &[u8]) -> Result<(Header, usize), FormatError> {
        let n = read_header_len(bytes, bytes.len() as u64)?;
        let json = bytes.get(8..8 + n).ok_or(FormatError::HeaderPastEnd {
            len: n as u64,
            file_len: bytes.len() as u64,
        })?;
        let header = Header::parse(json)?;
        header.check_data_len((bytes.len() - 8 - n) as u64)?;
        Ok((header, 8 + n))
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
        self.by_name.get(name).map(|&i| &self.tensors[i].1)
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
    dtype: std::borrow::Cow<'a, str>,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

fn slow_entry(raw: &RawValue) -> Result<Entry, FormatError> {
    serde_json::from_str(raw.get()).map_err(|e| FormatError::InvalidJson {
        reason: e.to_string(),
    })
}

fn parse_tensor_fast(name: &str, raw: &RawValue) -> Result<TensorInfo, FormatError> {
    // Serde would also accept an array for a struct: only objects go fast.
    if raw.get().trim_start().starts_with('{') {
        if let Ok(fast) = serde_json::from_str::<FastTensor>(raw.get()) {
            let shape: Option<Vec<usize>> = fast
                .shape
                .iter()
                .map(|&d| usize::try_from(d).ok())
                .collect();
            let (start, end) = fast.data_offsets;
            if let (Ok(dtype), Some(shape), Ok(start), Ok(end)) = (
                fast.dtype.parse::<Dtype>(),
                shape,
                usize::try_from(start),
                usize::try_from(end),
            ) {
                return finish_tensor(name, dtype, shape, start, end);
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
pub(crate) struct Pairs<V>(pub(crate) Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Pairs<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = Pairs<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                // Capacity is bounded: the hint comes from the parser, not the input.
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
                while let Some((k, v)) = map.next_entry::<String, V>()? {
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

    #[test]
    fn very_deep_nesting_is_rejected_without_recursion() {
        let deep = header_with_extra(&"[".repeat(1_000_000));
        assert_eq!(
            Header::parse(deep.as_bytes()).unwrap_err().kind(),
            "nesting_too_deep"
        );
    }
}
