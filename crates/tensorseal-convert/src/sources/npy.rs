//! Source: NumPy `.npy` files and `.npz` archives. Arrays are read through the shared `tensorseal-npy` header reader (numpy's
//! own header semantics). Numeric dtypes only: object arrays are pickles and are
//! refused, as is every dtype not provably object-free or without a safetensors
//! equivalent. Both byte orders, C and Fortran order.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use tensorseal_format::Dtype;
use tensorseal_npy::{Kind, Value, Verdict};

use super::archive::ZipIndex;
use super::checkpoint::{Checkpoint, Format, StorageData};
use crate::error::ConvertError;
use crate::view::{contiguous_strides, TensorRef};

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

/// Opens a `.npy` file: one array, its data after the header.
pub(super) fn open_npy(path: &Path, map: memmap2::Mmap) -> Result<Checkpoint, ConvertError> {
    let (tref, _) = parse(path, &map, 0, "array")?;
    Ok(Checkpoint {
        path: path.to_owned(),
        format: Format::Npy,
        root: tensorseal_pickle::Value::None,
        storages: HashMap::from([("array".to_owned(), StorageData::Mapped(0..map.len()))]),
        big_endian: false,
        npy_tensors: vec![(String::new(), tref)],
        map,
        file: None,
    })
}

/// Opens an npz archive (a zip with `.npy` members) whose central
/// directory is `zip`.
pub(super) fn open_npz(
    path: &Path,
    map: memmap2::Mmap,
    zip: ZipIndex,
) -> Result<Checkpoint, ConvertError> {
    let mut npy_tensors = Vec::new();
    let mut storages = HashMap::new();
    for (stem, name) in npz_keys(&zip) {
        let Some((_, entry)) = zip.names.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        let name = &name;
        let data = entry.data(name);
        let bytes: Cow<[u8]> = match &data {
            StorageData::Mapped(r) => Cow::Borrowed(map.get(r.clone()).unwrap_or(&[])),
            StorageData::Inline(b) => Cow::Borrowed(b.as_slice()),
            // The header only (numpy caps it far below this); the data is streamed
            // when the tensor is written.
            StorageData::Compressed(p) => Cow::Owned(p.prefix(path, &map, NPY_HEADER_MAX)?),
        };
        if !name.ends_with(".npy") && !bytes.starts_with(MAGIC) {
            // numpy.load returns such a member as raw bytes, not an array.
            continue;
        }
        let (tref, _) = parse(path, &bytes, 0, name)?;
        storages.insert(name.clone(), data);
        npy_tensors.push((stem, tref));
    }
    Ok(Checkpoint {
        path: path.to_owned(),
        map,
        file: None,
        format: Format::Npz,
        root: tensorseal_pickle::Value::None,
        storages,
        big_endian: false,
        npy_tensors,
    })
}

/// Most bytes read to parse an `.npy` header inside a compressed npz member.
const NPY_HEADER_MAX: u64 = (1 << 20) + 16;

/// The arrays of an npz as `numpy.load` names them: each member's name
/// without its `.npy` suffix is a key, and key `k` reads member `k` if one
/// has exactly that name, else member `k.npy`. So `a` and `a.npy` are one
/// key (member `a`), and key `a.npy` reads member `a.npy`, not
/// `a.npy.npy`. Members that are not `.npy` data are raw bytes to numpy,
/// not arrays, and are skipped. (Two members with one name were refused by
/// [`ZipIndex::read`].)
fn npz_keys(zip: &ZipIndex) -> Vec<(String, String)> {
    let seen: std::collections::HashSet<&str> = zip.names.iter().map(|(n, _)| n.as_str()).collect();
    let mut keys: Vec<(String, String)> = Vec::new();
    for (n, _) in &zip.names {
        let key = n.strip_suffix(".npy").unwrap_or(n);
        if keys.iter().any(|(k, _)| k == key) {
            continue;
        }
        let member = if seen.contains(key) {
            key.to_owned()
        } else {
            n.clone()
        };
        keys.push((key.to_owned(), member));
    }
    keys
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
