//! A tensor as a view of a storage: what every source produces and every
//! later step (plan, stream, verify) consumes.

use tensorseal_format::Dtype;

/// A tensor as a view of a storage.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorRef {
    /// Storage key (`data/<key>` in a zip, legacy key, npy member).
    pub storage: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Strides, in elements.
    pub stride: Vec<usize>,
    /// Offset of the first element, in elements.
    pub offset: usize,
    /// Extra byte offset into the storage (npy header length).
    pub byte_offset: usize,
    /// Whether elements are stored big-endian.
    pub big_endian: bool,
}

impl TensorRef {
    /// Number of elements (1 for 0-d).
    pub fn numel(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    }

    /// Byte length of the tensor in safetensors.
    pub fn byte_len(&self) -> Option<usize> {
        self.numel()?.checked_mul(self.dtype.byte_size()?)
    }

    /// Whether the view is row-major contiguous.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1usize;
        for (&d, &s) in self.shape.iter().zip(&self.stride).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected = expected.saturating_mul(d);
        }
        true
    }
}

/// Element strides of a contiguous array of `shape`, in C (row-major) or
/// Fortran (column-major) order. Zero-sized dimensions count as 1 and products
/// saturate: such strides are only used after the extent is checked.
pub(crate) fn contiguous_strides(shape: &[usize], fortran: bool) -> Vec<usize> {
    let mut stride = vec![0usize; shape.len()];
    let mut acc = 1usize;
    let mut place = |d: usize| {
        stride[d] = acc;
        acc = acc.saturating_mul(shape[d].max(1));
    };
    if fortran {
        (0..shape.len()).for_each(&mut place);
    } else {
        (0..shape.len()).rev().for_each(&mut place);
    }
    stride
}
