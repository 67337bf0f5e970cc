//! NumPy `.npy` headers: numeric dtypes only (object arrays are pickles and
//! are refused), both byte orders, C and Fortran order.

use std::path::Path;

use tensorseal_format::Dtype;

use crate::tensor::{contiguous_strides, TensorRef};
use crate::ConvertError;

/// The 6 bytes that start every `.npy` file.
pub const MAGIC: &[u8] = b"\x93NUMPY";

/// Parses the `.npy` at `bytes[base..]`; returns the tensor (its data after
/// the header, in the storage `key`) and the header length.
pub(crate) fn parse(
    path: &Path,
    bytes: &[u8],
    base: usize,
    key: &str,
) -> Result<(TensorRef, usize), ConvertError> {
    let bad = |why: String| ConvertError::format(path, format!("npy `{key}`: {why}"));
    let b = bytes.get(base..).unwrap_or(&[]);
    if !b.starts_with(MAGIC) {
        return Err(bad("no \\x93NUMPY magic".into()));
    }
    let major = *b.get(6).ok_or_else(|| bad("truncated header".into()))?;
    let (hlen, hstart) = match major {
        1 => (
            usize::from(u16::from_le_bytes([
                *b.get(8).unwrap_or(&0),
                *b.get(9).unwrap_or(&0),
            ])),
            10,
        ),
        2 | 3 => {
            let s = b.get(8..12).ok_or_else(|| bad("truncated header".into()))?;
            (u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize, 12)
        }
        v => return Err(bad(format!("unsupported format version {v}"))),
    };
    if hlen > 1 << 20 {
        return Err(bad(format!("header of {hlen} bytes is too large")));
    }
    let header = b
        .get(hstart..hstart + hlen)
        .ok_or_else(|| bad("header runs past the end of the data".into()))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text".into()))?;
    let dict = parse_literal(header)
        .ok_or_else(|| bad(format!("header {:?} is not a dict literal", header.trim())))?;
    let Lit::Dict(entries) = dict else {
        return Err(bad("header is not a dict".into()));
    };
    let get = |k: &str| entries.iter().find(|(kk, _)| kk == k).map(|(_, v)| v);
    let descr = match get("descr") {
        Some(Lit::Str(s)) => s.clone(),
        Some(_) => return Err(bad("structured dtypes are not supported".into())),
        None => return Err(bad("no `descr`".into())),
    };
    let fortran = match get("fortran_order") {
        Some(Lit::Bool(b)) => *b,
        _ => return Err(bad("no boolean `fortran_order`".into())),
    };
    let shape: Vec<usize> = match get("shape") {
        Some(Lit::Tuple(items)) => items
            .iter()
            .map(|i| match i {
                Lit::Int(n) => usize::try_from(*n).ok(),
                _ => None,
            })
            .collect::<Option<_>>()
            .ok_or_else(|| bad("bad `shape`".into()))?,
        _ => return Err(bad("no `shape` tuple".into())),
    };
    let (dtype, big_endian) = descr_dtype(&descr).map_err(bad)?;
    let stride = contiguous_strides(&shape, fortran);
    let data_start = base + hstart + hlen;
    Ok((
        TensorRef {
            storage: key.to_owned(),
            dtype,
            shape,
            stride,
            offset: 0,
            byte_offset: data_start,
            big_endian,
        },
        hstart + hlen,
    ))
}

/// The dtype of a NumPy type string such as `<f4`, `>i8`, `|b1`.
pub(crate) fn descr_dtype(descr: &str) -> Result<(Dtype, bool), String> {
    let (order, rest) = match descr.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
        _ => ('=', descr),
    };
    let dtype = match rest {
        "b1" | "?" => Dtype::BOOL,
        "i1" => Dtype::I8,
        "u1" => Dtype::U8,
        "i2" => Dtype::I16,
        "u2" => Dtype::U16,
        "f2" => Dtype::F16,
        "i4" => Dtype::I32,
        "u4" => Dtype::U32,
        "f4" => Dtype::F32,
        "i8" => Dtype::I64,
        "u8" => Dtype::U64,
        "f8" => Dtype::F64,
        "c8" => Dtype::C64,
        "O" | "O8" | "O4" => {
            return Err(format!(
                "dtype `{descr}` is an object array, i.e. a pickle that runs code when loaded; refusing"
            ))
        }
        _ => return Err(format!("dtype `{descr}` has no safetensors equivalent")),
    };
    Ok((dtype, order == '>'))
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Int(i64),
    Bool(bool),
    None,
    Tuple(Vec<Lit>),
    Dict(Vec<(String, Lit)>),
}

/// Parses the tiny subset of Python literals that `.npy` headers use.
fn parse_literal(s: &str) -> Option<Lit> {
    let mut p = LitParser {
        s: s.as_bytes(),
        i: 0,
        depth: 0,
    };
    let v = p.value()?;
    p.ws();
    if p.i == p.s.len() {
        Some(v)
    } else {
        None
    }
}

struct LitParser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl LitParser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn value(&mut self) -> Option<Lit> {
        self.ws();
        self.depth += 1;
        if self.depth > 32 {
            return None;
        }
        let c = *self.s.get(self.i)?;
        let v = match c {
            b'\'' | b'"' => {
                self.i += 1;
                let start = self.i;
                while *self.s.get(self.i)? != c {
                    self.i += 1;
                }
                let text = std::str::from_utf8(self.s.get(start..self.i)?)
                    .ok()?
                    .to_owned();
                self.i += 1;
                Lit::Str(text)
            }
            b'(' | b'[' => {
                let close = if c == b'(' { b')' } else { b']' };
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    if *self.s.get(self.i)? == close {
                        self.i += 1;
                        break;
                    }
                    items.push(self.value()?);
                    self.ws();
                    match *self.s.get(self.i)? {
                        b',' => self.i += 1,
                        x if x == close => {}
                        _ => return None,
                    }
                }
                Lit::Tuple(items)
            }
            b'{' => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    if *self.s.get(self.i)? == b'}' {
                        self.i += 1;
                        break;
                    }
                    let Lit::Str(k) = self.value()? else {
                        return None;
                    };
                    self.ws();
                    if *self.s.get(self.i)? != b':' {
                        return None;
                    }
                    self.i += 1;
                    let v = self.value()?;
                    items.push((k, v));
                    self.ws();
                    match *self.s.get(self.i)? {
                        b',' => self.i += 1,
                        b'}' => {}
                        _ => return None,
                    }
                }
                Lit::Dict(items)
            }
            _ => {
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
                {
                    self.i += 1;
                }
                match std::str::from_utf8(self.s.get(start..self.i)?).ok()? {
                    "True" => Lit::Bool(true),
                    "False" => Lit::Bool(false),
                    "None" => Lit::None,
                    t => Lit::Int(t.trim_end_matches('L').parse().ok()?),
                }
            }
        };
        self.depth -= 1;
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_literals() {
        let v = parse_literal("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }    \n")
            .unwrap();
        let Lit::Dict(d) = v else { panic!() };
        assert_eq!(d[2].1, Lit::Tuple(vec![Lit::Int(2), Lit::Int(3)]));
        assert!(parse_literal("{'a': ").is_none());
        assert_eq!(descr_dtype(">i8"), Ok((Dtype::I64, true)));
        assert!(descr_dtype("|O").unwrap_err().contains("object array"));
        assert!(descr_dtype("<U3").is_err());
    }
}
