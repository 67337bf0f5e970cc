//! NumPy `.npy` arrays, read through the shared `tensorseal-npy` header reader (numpy's
//! own header semantics). Numeric dtypes only: object arrays are pickles and are
//! refused, as is every dtype not provably object-free or without a safetensors
//! equivalent. Both byte orders, C and Fortran order.

use std::path::Path;

use tensorseal_format::Dtype;
use tensorseal_npy::{Kind, Value, Verdict};

use crate::tensor::{contiguous_strides, TensorRef};
use crate::ConvertError;

/// The 6 bytes that start every `.npy` file.
pub const MAGIC: &[u8] = tensorseal_npy::MAGIC;

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
    let header = tensorseal_npy::parse_header(b, tensorseal_npy::DEFAULT_MAX_HEADER)
        .map_err(|e| bad(e.to_string()))?;
    let descr = match (header.dtype_verdict(), &header.descr) {
        (Verdict::Object(spelling), _) => {
            return Err(bad(format!(
                "dtype {spelling} is an object array, i.e. a pickle that runs code when loaded; refusing"
            )))
        }
        (Verdict::Unknown(why), _) => return Err(bad(format!("{why}; refusing"))),
        (Verdict::Plain, Value::Str(s)) => s.clone(),
        (Verdict::Plain, other) => {
            return Err(bad(format!(
                "structured or sub-array dtype {} is not supported",
                tensorseal_npy::quote(&other.to_string(), 120)
            )))
        }
    };
    let shape: Vec<usize> = header
        .shape
        .iter()
        .map(|v| match v {
            Value::Int(n) => usize::try_from(*n).ok(),
            _ => None,
        })
        .collect::<Option<_>>()
        .ok_or_else(|| {
            bad(format!(
                "shape {} is not a tuple of non-negative ints",
                tensorseal_npy::quote(&Value::Tuple(header.shape.clone()).to_string(), 120)
            ))
        })?;
    let (dtype, big_endian) = descr_dtype(&descr).map_err(bad)?;
    let stride = contiguous_strides(&shape, header.fortran_order);
    let hlen =
        usize::try_from(header.data_offset()).map_err(|_| bad("header offset overflows".into()))?;
    Ok((
        TensorRef {
            storage: key.to_owned(),
            dtype,
            shape,
            stride,
            offset: 0,
            byte_offset: base + hlen,
            big_endian,
        },
        hlen,
    ))
}

/// The dtype of a NumPy type string such as `<f4`, `>i8`, `|b1` (the spellings numpy
/// writes), and whether its bytes are big-endian.
pub(crate) fn descr_dtype(descr: &str) -> Result<(Dtype, bool), String> {
    if let Verdict::Object(_) = tensorseal_npy::classify_str(descr) {
        return Err(format!(
            "dtype `{descr}` is an object array, i.e. a pickle that runs code when loaded; refusing"
        ));
    }
    let n = tensorseal_npy::numeric(descr)
        .ok_or_else(|| format!("dtype `{descr}` has no safetensors equivalent"))?;
    let dtype = match (n.kind, n.size) {
        (Kind::Bool, 1) => Dtype::BOOL,
        (Kind::Int, 1) => Dtype::I8,
        (Kind::UInt, 1) => Dtype::U8,
        (Kind::Int, 2) => Dtype::I16,
        (Kind::UInt, 2) => Dtype::U16,
        (Kind::Float, 2) => Dtype::F16,
        (Kind::Int, 4) => Dtype::I32,
        (Kind::UInt, 4) => Dtype::U32,
        (Kind::Float, 4) => Dtype::F32,
        (Kind::Int, 8) => Dtype::I64,
        (Kind::UInt, 8) => Dtype::U64,
        (Kind::Float, 8) => Dtype::F64,
        (Kind::Complex, 8) => Dtype::C64,
        _ => return Err(format!("dtype `{descr}` has no safetensors equivalent")),
    };
    Ok((dtype, n.big_endian()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[1, 0]);
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn header_semantics() {
        assert_eq!(descr_dtype(">i8"), Ok((Dtype::I64, true)));
        assert_eq!(descr_dtype("|u1"), Ok((Dtype::U8, false)));
        assert!(descr_dtype("|O").unwrap_err().contains("object array"));
        assert!(descr_dtype("<U3").is_err());
        let p = Path::new("x.npy");
        // The last `descr` wins, escapes are decoded.
        let f = npy(
            "{'descr': '|O', 'descr': '\\x3ci8', 'fortran_order': True, 'shape': (2, 3)}",
            &[0; 48],
        );
        let (t, hlen) = parse(p, &f, 0, "a").unwrap();
        assert_eq!(
            (t.dtype, t.big_endian, t.shape.clone()),
            (Dtype::I64, false, vec![2, 3])
        );
        assert_eq!(t.stride, contiguous_strides(&[2, 3], true));
        assert_eq!(hlen, f.len() - 48);
        for refused in [
            "{'descr': '<f4', 'descr': '\\x4f', 'fortran_order': False, 'shape': ()}",
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': ()}",
            "{'descr': 'float32', 'fortran_order': False, 'shape': ()}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (True,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (), 'extra': 1}",
        ] {
            assert!(parse(p, &npy(refused, &[]), 0, "a").is_err(), "{refused}");
        }
    }
}
