//! Borrowed and owned tensors, and the [`View`] trait the writer takes.

use std::borrow::Cow;

use crate::header::byte_size;
use crate::slice::{self, SliceArg, SlicePlan};
use crate::{Dtype, FormatError};

/// A tensor as the writer sees it: element type, shape and little-endian,
/// row-major bytes. Implement it for your own tensor type to pass it to
/// [`crate::serialize`] or [`crate::serialize_to_file`] without building a
/// [`TensorView`] first.
///
/// ```
/// use std::borrow::Cow;
/// use tensorseal_format::{serialize, Dtype, SafeTensors, View, WriteOptions};
///
/// /// A vector of `f32` held natively (converted to bytes when written).
/// struct Floats { values: Vec<f32>, shape: Vec<usize> }
///
/// impl View for Floats {
///     fn dtype(&self) -> Dtype { Dtype::F32 }
///     fn shape(&self) -> &[usize] { &self.shape }
///     fn data(&self) -> Cow<'_, [u8]> {
///         Cow::Owned(self.values.iter().flat_map(|v| v.to_le_bytes()).collect())
///     }
///     fn data_len(&self) -> usize { self.values.len() * 4 }
/// }
///
/// let v = Floats { values: vec![1.5, -2.0], shape: vec![2] };
/// let bytes = serialize([("v", v)], &WriteOptions::new())?;
/// let st = SafeTensors::deserialize(&bytes)?;
/// assert_eq!(st.tensor("v")?.data()[..4], 1.5f32.to_le_bytes());
/// # Ok::<(), tensorseal_format::FormatError>(())
/// ```
pub trait View {
    /// Element type.
    fn dtype(&self) -> Dtype;
    /// Shape; empty for a 0-d tensor.
    fn shape(&self) -> &[usize];
    /// The bytes, little-endian and row-major; borrowed where possible.
    fn data(&self) -> Cow<'_, [u8]>;
    /// The length of [`View::data`] (checked against dtype and shape before
    /// anything is written).
    fn data_len(&self) -> usize;
}

impl<T: View + ?Sized> View for &T {
    fn dtype(&self) -> Dtype {
        (**self).dtype()
    }
    fn shape(&self) -> &[usize] {
        (**self).shape()
    }
    fn data(&self) -> Cow<'_, [u8]> {
        (**self).data()
    }
    fn data_len(&self) -> usize {
        (**self).data_len()
    }
}

impl View for TensorView<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

impl View for OwnedTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// A tensor whose bytes are borrowed (from a file buffer, a memory map, or
/// the caller). Its size is validated against dtype and shape on creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorView<'a> {
    dtype: Dtype,
    shape: Vec<usize>,
    data: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// A view of `data` as a tensor; fails unless `data` holds exactly
    /// elements × dtype size bytes.
    pub fn new(dtype: Dtype, shape: Vec<usize>, data: &'a [u8]) -> Result<Self, FormatError> {
        let expected = byte_size("<view>", dtype, &shape)?;
        if expected != data.len() {
            return Err(FormatError::SizeMismatch {
                tensor: "<view>".into(),
                dtype,
                shape: shape.iter().map(|&d| d as u64).collect(),
                expected: expected as u64,
                found: data.len() as u64,
            });
        }
        Ok(TensorView { dtype, shape, data })
    }

    /// Builds a view whose size the caller already validated.
    pub(crate) fn new_unchecked(dtype: Dtype, shape: Vec<usize>, data: &'a [u8]) -> Self {
        TensorView { dtype, shape, data }
    }

    /// Element type.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// Shape; empty for a 0-d tensor.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The tensor's bytes (little-endian, row-major).
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Number of elements.
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Plans a slice of this tensor (see [`crate::slice`]).
    pub fn plan_slice(&self, args: &[SliceArg]) -> Result<SlicePlan, FormatError> {
        slice::plan_for("<view>", self.dtype, &self.shape, args)
    }

    /// Copies a slice of this tensor into a new owned tensor, touching only
    /// the bytes the slice needs.
    pub fn slice(&self, args: &[SliceArg]) -> Result<OwnedTensor, FormatError> {
        let plan = self.plan_slice(args)?;
        let mut out = vec![0u8; plan.byte_len()];
        plan.copy_into(self.data, &mut out)?;
        Ok(OwnedTensor {
            dtype: self.dtype,
            shape: plan.shape().to_vec(),
            data: out,
        })
    }

    /// An owned copy.
    pub fn to_owned_tensor(&self) -> OwnedTensor {
        OwnedTensor {
            dtype: self.dtype,
            shape: self.shape.clone(),
            data: self.data.to_vec(),
        }
    }
}

/// A tensor that owns its bytes (the result of a slice or a positioned read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedTensor {
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Bytes, little-endian, row-major.
    pub data: Vec<u8>,
}

impl OwnedTensor {
    /// A borrowed view of this tensor.
    pub fn view(&self) -> TensorView<'_> {
        TensorView::new_unchecked(self.dtype, self.shape.clone(), &self.data)
    }
}
