//! The one table of torch dtypes: each safetensors dtype with its torch
//! names and legacy storage class. Reading (storage classes and dtype
//! objects in a pickle) and writing (`to_torch`) both look it up here.

use tensorseal_format::Dtype;

/// One torch dtype that has a safetensors equivalent.
struct TorchDtype {
    dtype: Dtype,
    /// `torch.<name>` spellings; the first is the one written.
    names: &'static [&'static str],
    /// Its typed storage class (`FloatStorage`, ...), for the dtypes that
    /// have one (pickled with `_rebuild_tensor_v2`); the others are written
    /// as an `UntypedStorage` with `_rebuild_tensor_v3`.
    storage: Option<&'static str>,
}

const fn row(
    dtype: Dtype,
    names: &'static [&'static str],
    storage: Option<&'static str>,
) -> TorchDtype {
    TorchDtype {
        dtype,
        names,
        storage,
    }
}

const TABLE: &[TorchDtype] = &[
    row(Dtype::F64, &["float64", "double"], Some("DoubleStorage")),
    row(Dtype::F32, &["float32", "float"], Some("FloatStorage")),
    row(Dtype::F16, &["float16", "half"], Some("HalfStorage")),
    row(Dtype::BF16, &["bfloat16"], Some("BFloat16Storage")),
    row(Dtype::I64, &["int64", "long"], Some("LongStorage")),
    row(Dtype::I32, &["int32", "int"], Some("IntStorage")),
    row(Dtype::I16, &["int16", "short"], Some("ShortStorage")),
    row(Dtype::I8, &["int8"], Some("CharStorage")),
    row(Dtype::U8, &["uint8"], Some("ByteStorage")),
    row(Dtype::BOOL, &["bool"], Some("BoolStorage")),
    row(
        Dtype::C64,
        &["complex64", "cfloat"],
        Some("ComplexFloatStorage"),
    ),
    row(Dtype::U16, &["uint16"], None),
    row(Dtype::U32, &["uint32"], None),
    row(Dtype::U64, &["uint64"], None),
    row(Dtype::F8_E4M3, &["float8_e4m3fn"], None),
    row(Dtype::F8_E5M2, &["float8_e5m2"], None),
    row(Dtype::F8_E4M3FNUZ, &["float8_e4m3fnuz"], None),
    row(Dtype::F8_E5M2FNUZ, &["float8_e5m2fnuz"], None),
    row(Dtype::F8_E8M0, &["float8_e8m0fnu"], None),
];

/// Storage classes torch can load that have no safetensors dtype, with
/// their element size (so that references to them are still checked).
const OTHER_STORAGE_SIZES: &[(&str, u64)] = &[
    ("ComplexDoubleStorage", 16),
    ("QInt32Storage", 4),
    ("QUInt8Storage", 1),
    ("QInt8Storage", 1),
    ("QUInt4x2Storage", 1),
    ("QUInt2x4Storage", 1),
];

/// The safetensors dtype of a torch storage class (`FloatStorage`, ...).
pub(crate) fn storage_dtype(class: &str) -> Option<Dtype> {
    TABLE
        .iter()
        .find(|r| r.storage == Some(class))
        .map(|r| r.dtype)
}

/// The safetensors dtype of a torch dtype object (`torch.float8_e4m3fn`, ...).
pub(crate) fn torch_dtype(name: &str) -> Option<Dtype> {
    TABLE
        .iter()
        .find(|r| r.names.contains(&name))
        .map(|r| r.dtype)
}

/// The torch names of a safetensors dtype: `(dtype attribute, legacy storage class)`.
pub(crate) fn torch_names(d: Dtype) -> Option<(&'static str, Option<&'static str>)> {
    let r = TABLE.iter().find(|r| r.dtype == d)?;
    Some((r.names.first()?, r.storage))
}

/// Bytes per element of a torch storage class, as torch computes them from
/// the class's dtype (`torch._utils._element_size`). `UntypedStorage` and
/// `TypedStorage` have no `dtype` attribute: `None` (torch's zip reader
/// special-cases `UntypedStorage` as bytes, its legacy reader does not).
pub(crate) fn storage_class_size(class: &str) -> Option<u64> {
    match storage_dtype(class) {
        Some(d) => d.byte_size().map(|n| n as u64),
        None => OTHER_STORAGE_SIZES
            .iter()
            .find(|(n, _)| *n == class)
            .map(|(_, s)| *s),
    }
}

/// Whether `d` can require gradients in torch (floating point or complex).
pub(crate) fn can_require_grad(d: Dtype) -> bool {
    matches!(
        d,
        Dtype::F64
            | Dtype::F32
            | Dtype::F16
            | Dtype::BF16
            | Dtype::C64
            | Dtype::F8_E4M3
            | Dtype::F8_E5M2
            | Dtype::F8_E4M3FNUZ
            | Dtype::F8_E5M2FNUZ
            | Dtype::F8_E8M0
    )
}

/// Bytes swapped together when converting `d` between byte orders: its
/// element size, or half of it for complex numbers (each part is swapped).
pub(crate) fn swap_unit(d: Dtype) -> Option<usize> {
    let es = d.byte_size()?;
    Some(if d == Dtype::C64 { es / 2 } else { es })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_reads_back_as_written() {
        for r in TABLE {
            let (name, storage) = torch_names(r.dtype).unwrap();
            assert_eq!(torch_dtype(name), Some(r.dtype));
            if let Some(s) = storage {
                assert_eq!(storage_dtype(s), Some(r.dtype));
                assert_eq!(storage_class_size(s), r.dtype.byte_size().map(|n| n as u64));
            }
        }
        assert_eq!(torch_dtype("double"), Some(Dtype::F64));
        assert_eq!(storage_class_size("ComplexDoubleStorage"), Some(16));
        assert_eq!(storage_class_size("UntypedStorage"), None);
        assert_eq!(torch_dtype("complex128"), None);
    }
}
