//! Dict keys as Python sees them, and the tensor names made from them.
//!
//! A pickled dict is a list of `(key, value)` assignments (SETITEMS). Python
//! keeps one entry per *equal* key: `1`, `1.0` and `True` are one key (and
//! `0`, `0.0`, `-0.0`, `False`), the entry keeps the first key object and its
//! position, and the last value assigned. [`entries`] rebuilds exactly that.
//!
//! Each key becomes a name part by Python's `str(key)`: a string is itself,
//! `1` is `1`, `True` is `True`, `1.5` is `1.5`, `None` is `None`, `b'x'` is
//! `b'x'`, `(1, 'a')` is `(1, 'a')`. Keys whose equality or text tensorseal
//! does not reproduce exactly (NaN, integers past 64 bits, integral floats
//! past 2^63, non-ASCII text inside tuples, frozensets, objects) are refused
//! when their value holds a tensor. Two entries whose names are equal (`1`
//! and `'1'`) are an error naming both keys.

use tensorseal_pickle::Value;

/// A key's identity under Python's `==` (and `hash`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Ident {
    Int(i64),
    /// Bits of a float that equals no integer.
    Float(u64),
    Str(String),
    Bytes(Vec<u8>),
    None,
    Tuple(Vec<Ident>),
}

/// One dict entry as Python keeps it.
pub(crate) struct Entry<'v> {
    /// `str(key)`: the name part.
    pub name: String,
    /// `repr(key)`, for messages.
    pub repr: String,
    /// The last value assigned.
    pub value: &'v Value,
}

/// The little-endian two's-complement integer `b` as an i64, when it fits.
fn big_to_i64(b: &[u8]) -> Option<i64> {
    let neg = b.last().is_some_and(|&x| x & 0x80 != 0);
    let fill = if neg { 0xff } else { 0 };
    if b.iter().skip(8).any(|&x| x != fill) {
        return None;
    }
    let mut a = [fill; 8];
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    let v = i64::from_le_bytes(a);
    // The sign must survive the truncation to 8 bytes.
    ((v < 0) == neg).then_some(v)
}

fn ident(k: &Value) -> Result<Ident, String> {
    Ok(match k {
        Value::Bool(b) => Ident::Int(i64::from(*b)),
        Value::Int(i) => Ident::Int(*i),
        Value::BigInt(b) => {
            Ident::Int(big_to_i64(b).ok_or_else(|| "an integer key wider than 64 bits".to_owned())?)
        }
        Value::Float(f) => {
            if f.is_nan() {
                return Err("a NaN key (Python compares NaN keys by identity)".into());
            }
            if f.is_finite() && f.fract() == 0.0 {
                // -2^63 <= f < 2^63 converts exactly.
                if *f >= -9.223_372_036_854_776e18 && *f < 9.223_372_036_854_776e18 {
                    Ident::Int(*f as i64)
                } else {
                    return Err(format!(
                        "an integral float key past 2^63 ({})",
                        float_repr(*f)
                    ));
                }
            } else {
                Ident::Float(f.to_bits())
            }
        }
        Value::Str(s) => Ident::Str(s.clone()),
        Value::Bytes(b) => Ident::Bytes(b.clone()),
        Value::None => Ident::None,
        Value::Tuple(x) => Ident::Tuple(x.iter().map(ident).collect::<Result<_, _>>()?),
        other => return Err(format!("a {} key", other.kind_name())),
    })
}

/// Python's `repr` of a float (shortest round-trip digits; fixed notation
/// for exponents from -4 to 15, else `1e+16` style).
pub(crate) fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sci = format!("{:e}", f.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let sign = if f.is_sign_negative() { "-" } else { "" };
    let n = digits.len() as i32;
    let body = if (-4..16).contains(&exp) {
        if exp >= 0 {
            if n <= exp + 1 {
                format!("{digits}{}.0", "0".repeat((exp + 1 - n) as usize))
            } else {
                let (a, b) = digits.split_at((exp + 1) as usize);
                format!("{a}.{b}")
            }
        } else {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        }
    } else {
        let (a, b) = digits.split_at(1);
        let frac = if b.is_empty() {
            String::new()
        } else {
            format!(".{b}")
        };
        let es = if exp < 0 { '-' } else { '+' };
        format!("{a}{frac}e{es}{:02}", exp.abs())
    };
    format!("{sign}{body}")
}

/// Python's `repr` of ASCII text or bytes (`prefix` is `b` for bytes).
fn quoted(bytes: &[u8], prefix: &str) -> String {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    let mut s = String::from(prefix);
    s.push(quote as char);
    for &c in bytes {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\t' => s.push_str("\\t"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            c if c == quote => {
                s.push('\\');
                s.push(c as char);
            }
            0x20..=0x7e => s.push(c as char),
            c => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push(quote as char);
    s
}

/// `str(key)` (`repr == false`) or `repr(key)`.
fn text(k: &Value, repr: bool) -> Result<String, String> {
    Ok(match k {
        Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        Value::Int(i) => i.to_string(),
        Value::BigInt(b) => big_to_i64(b)
            .ok_or_else(|| "an integer key wider than 64 bits".to_owned())?
            .to_string(),
        Value::Float(f) => float_repr(*f),
        Value::Str(s) if !repr => s.clone(),
        Value::Str(s) if s.is_ascii() => quoted(s.as_bytes(), ""),
        Value::Str(s) => return Err(format!("a tuple key holding non-ASCII text {s:?}")),
        Value::Bytes(b) => quoted(b, "b"),
        Value::None => "None".to_owned(),
        Value::Tuple(x) => {
            let parts = x
                .iter()
                .map(|e| text(e, true))
                .collect::<Result<Vec<_>, _>>()?;
            if parts.len() == 1 {
                format!("({},)", parts[0])
            } else {
                format!("({})", parts.join(", "))
            }
        }
        other => return Err(format!("a {} key", other.kind_name())),
    })
}

/// `repr(key)` for messages, never failing.
pub(crate) fn key_repr(k: &Value) -> String {
    match k {
        Value::Str(s) if s.is_ascii() => quoted(s.as_bytes(), ""),
        Value::Str(s) => format!("{s:?}"),
        _ => text(k, true).unwrap_or_else(|why| why),
    }
}

/// The entries of a dict as Python builds it from `pairs`, named by
/// `str(key)`. A key tensorseal cannot name faithfully is an error when
/// `needed(value)` says its value matters, and is skipped otherwise; two
/// entries with the same name are an error naming both keys.
pub(crate) fn entries<'v>(
    pairs: &'v [(Value, Value)],
    needed: impl Fn(&Value) -> bool,
) -> Result<Vec<Entry<'v>>, String> {
    use std::collections::HashMap;
    // Identity -> index in `out` (first key object, last value).
    let mut index: HashMap<Ident, usize> = HashMap::new();
    let mut out: Vec<(&'v Value, &'v Value)> = Vec::new();
    for (k, v) in pairs {
        match ident(k) {
            Ok(id) => match index.get(&id) {
                Some(&i) => out[i].1 = v,
                None => {
                    index.insert(id, out.len());
                    out.push((k, v));
                }
            },
            Err(why) if needed(v) => {
                return Err(format!(
                    "dict key {} is {why}: its name cannot be made faithfully",
                    key_repr(k)
                ))
            }
            Err(_) => {}
        }
    }
    let mut names: HashMap<String, &'v Value> = HashMap::new();
    let mut entries = Vec::with_capacity(out.len());
    for (k, v) in out {
        let name = match text(k, false) {
            Ok(n) => n,
            Err(why) if needed(v) => {
                return Err(format!(
                    "dict key {} is {why}: its name cannot be made faithfully",
                    key_repr(k)
                ))
            }
            Err(_) => continue,
        };
        if let Some(first) = names.insert(name.clone(), k) {
            return Err(format!(
                "dict keys {} and {} both become the name `{name}`",
                key_repr(first),
                key_repr(k)
            ));
        }
        entries.push(Entry {
            repr: key_repr(k),
            name,
            value: v,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(pairs: &[(Value, Value)]) -> Result<Vec<(String, Value)>, String> {
        Ok(entries(pairs, |_| true)?
            .into_iter()
            .map(|e| (e.name, e.value.clone()))
            .collect())
    }

    #[test]
    fn equal_keys_merge_as_in_python() {
        // {1: 'a', True: 'b', 1.0: 'c', 2: 'd'} == {1: 'c', 2: 'd'}
        let d = vec![
            (Value::Int(1), Value::Str("a".into())),
            (Value::Bool(true), Value::Str("b".into())),
            (Value::Float(1.0), Value::Str("c".into())),
            (Value::Int(2), Value::Str("d".into())),
        ];
        assert_eq!(
            names(&d).unwrap(),
            vec![
                ("1".into(), Value::Str("c".into())),
                ("2".into(), Value::Str("d".into()))
            ]
        );
        // False, 0.0, -0.0 and a 9-byte LONG1 zero are all 0; the first key names it.
        let d = vec![
            (Value::Bool(false), Value::Int(1)),
            (Value::Float(-0.0), Value::Int(2)),
            (Value::BigInt(vec![0; 9]), Value::Int(3)),
        ];
        assert_eq!(names(&d).unwrap(), vec![("False".into(), Value::Int(3))]);
    }

    #[test]
    fn equal_names_of_different_keys_are_an_error_naming_both() {
        let d = vec![
            (Value::Int(1), Value::Int(1)),
            (Value::Str("1".into()), Value::Int(2)),
        ];
        let e = names(&d).unwrap_err();
        assert!(e.contains("1 and '1'"), "{e}");
        let d = vec![
            (Value::Str("None".into()), Value::Int(1)),
            (Value::None, Value::Int(2)),
        ];
        assert!(names(&d).unwrap_err().contains("None"));
    }

    #[test]
    fn names_are_python_str() {
        let d = vec![
            (Value::Float(1.5), Value::Int(0)),
            (Value::Float(1e16), Value::Int(0)),
            (Value::Float(1e-5), Value::Int(0)),
            (Value::Float(f64::NEG_INFINITY), Value::Int(0)),
            (Value::Bytes(b"a'\x00".to_vec()), Value::Int(0)),
            (
                Value::Tuple(vec![Value::Int(1), Value::Str("a".into())]),
                Value::Int(0),
            ),
            (Value::Tuple(vec![Value::None]), Value::Int(0)),
            (Value::Int(-7), Value::Int(0)),
        ];
        let got: Vec<String> = names(&d).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            got,
            [
                "1.5",
                "1e+16",
                "1e-05",
                "-inf",
                "b\"a'\\x00\"",
                "(1, 'a')",
                "(None,)",
                "-7"
            ]
        );
        assert_eq!(float_repr(123456.75), "123456.75");
        assert_eq!(float_repr(0.0001), "0.0001");
        assert_eq!(float_repr(1e15), "1000000000000000.0");
    }

    #[test]
    fn unnameable_keys_fail_only_when_they_hold_tensors() {
        let d = vec![
            (Value::Float(f64::NAN), Value::Int(1)),
            (Value::Str("x".into()), Value::Int(2)),
        ];
        assert!(names(&d).unwrap_err().contains("NaN"));
        let kept = entries(&d, |v| *v == Value::Int(2)).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].name, "x");
        let wide = vec![(
            Value::BigInt(vec![0, 0, 0, 0, 0, 0, 0, 0, 1]),
            Value::Int(1),
        )];
        assert!(names(&wide).unwrap_err().contains("64 bits"));
    }
}
