//! Slicing tensors with numpy/torch basic-indexing semantics, reading only
//! the bytes a slice needs.
//!
//! A slice is a list of [`SliceArg`], one per leading dimension; missing
//! trailing dimensions are taken whole, and one [`SliceArg::Ellipsis`] stands
//! for as many whole dimensions as needed. [`plan`] turns the arguments into a
//! [`SlicePlan`]: the output shape and the list of contiguous byte runs of the
//! source tensor to copy, in output order, coalesced.
//!
//! Sub-byte dtypes (F4, F6_*) can only be sliced where every run starts and
//! ends on a byte boundary; other slices are refused with
//! [`FormatError::InvalidSlice`].

use crate::header::TensorInfo;
use crate::{Dtype, FormatError};

/// One indexing argument for one dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SliceArg {
    /// A single index (negative counts from the end); the dimension is dropped.
    Index(i64),
    /// `start:stop:step` with numpy semantics: bounds may be negative or out
    /// of range (they are clamped), `None` means "from the start/to the end"
    /// in the direction of `step`; `step` must not be 0 and may be negative.
    Range {
        /// First index (default: 0, or the last index if `step < 0`).
        start: Option<i64>,
        /// One past the last index (default: the end in the direction of `step`).
        stop: Option<i64>,
        /// Stride between selected indices.
        step: i64,
    },
    /// `...`: as many whole dimensions as needed (at most one per slice).
    Ellipsis,
}

impl SliceArg {
    /// The whole dimension (`:`).
    pub const FULL: SliceArg = SliceArg::Range {
        start: None,
        stop: None,
        step: 1,
    };

    /// `start:stop` with step 1.
    pub fn range(start: i64, stop: i64) -> SliceArg {
        SliceArg::Range {
            start: Some(start),
            stop: Some(stop),
            step: 1,
        }
    }
}

/// One dimension selection after normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sel {
    start: i128,
    step: i128,
    count: usize,
    keep: bool,
}

/// An outer axis the run iterator steps over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Axis {
    count: usize,
    /// Signed byte distance between consecutive selected indices.
    step_bytes: i128,
}

/// A planned slice: output shape and the source byte runs to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlicePlan {
    shape: Vec<usize>,
    byte_len: usize,
    /// Byte offset of the first run within the tensor's bytes.
    base: usize,
    /// Bytes per run before coalescing.
    run_len: usize,
    /// Axes iterated in row-major order (outermost first).
    axes: Vec<Axis>,
    empty: bool,
}

/// Plans a slice of the tensor `info` (whose name is used in errors).
pub fn plan(tensor: &str, info: &TensorInfo, args: &[SliceArg]) -> Result<SlicePlan, FormatError> {
    plan_for(tensor, info.dtype, &info.shape, args)
}

/// Plans a slice of a tensor of `dtype` and `shape`.
pub fn plan_for(
    tensor: &str,
    dtype: Dtype,
    shape: &[usize],
    args: &[SliceArg],
) -> Result<SlicePlan, FormatError> {
    let err = |reason: String| FormatError::InvalidSlice {
        tensor: tensor.to_owned(),
        reason,
    };
    // Rejects shapes whose byte size overflows: every offset below then fits.
    crate::header::byte_size(tensor, dtype, shape)?;
    let sels = normalize(shape, args).map_err(err)?;

    // Element strides (row-major); checked in case the shape was not validated.
    let ndim = shape.len();
    let mut strides = vec![0u128; ndim];
    let mut acc: u128 = 1;
    for d in (0..ndim).rev() {
        strides[d] = acc;
        acc = acc
            .checked_mul(shape[d] as u128)
            .ok_or_else(|| FormatError::SizeOverflow {
                tensor: tensor.to_owned(),
                shape: shape.iter().map(|&d| d as u64).collect(),
            })?;
    }
    let bits = dtype.bits() as i128;
    let out_shape: Vec<usize> = sels.iter().filter(|s| s.keep).map(|s| s.count).collect();
    let out_elems: u128 = sels.iter().map(|s| s.count as u128).product();
    if out_elems == 0 {
        return Ok(SlicePlan {
            shape: out_shape,
            byte_len: 0,
            base: 0,
            run_len: 0,
            axes: Vec::new(),
            empty: true,
        });
    }

    // Absorb the contiguous inner block: whole trailing dimensions, then at
    // most one dimension selected with step 1 (or a single index).
    let mut inner: u128 = 1;
    let mut k = ndim;
    while k > 0 {
        let s = sels[k - 1];
        let n = shape[k - 1];
        if s.start == 0 && s.step == 1 && s.count == n {
            inner *= n as u128;
            k -= 1;
        } else {
            break;
        }
    }
    if k > 0 && (sels[k - 1].step == 1 || sels[k - 1].count == 1) {
        inner *= sels[k - 1].count as u128;
        k -= 1;
    }
    let mut base_elems: i128 = 0;
    for (s, &st) in sels.iter().zip(&strides) {
        base_elems += s.start * st as i128;
    }
    let mut axes = Vec::new();
    for d in 0..k {
        let s = sels[d];
        if s.count > 1 {
            let step_bits = s.step * strides[d] as i128 * bits;
            if step_bits % 8 != 0 {
                return Err(err(format!(
                    "{dtype} slice step along dimension {d} does not fall on a byte boundary"
                )));
            }
            axes.push(Axis {
                count: s.count,
                step_bytes: step_bits / 8,
            });
        }
    }
    let base_bits = base_elems * bits;
    let run_bits = inner as i128 * bits;
    if base_bits % 8 != 0 || run_bits % 8 != 0 {
        return Err(err(format!(
            "{dtype} slice does not start and end on byte boundaries (sub-byte dtypes can only be sliced along whole bytes)"
        )));
    }
    let byte_len = out_elems
        .checked_mul(bits as u128)
        .map(|b| b / 8)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| err("slice too large".into()))?;
    Ok(SlicePlan {
        shape: out_shape,
        byte_len,
        base: usize::try_from(base_bits / 8).map_err(|_| err("offset overflow".into()))?,
        run_len: usize::try_from(run_bits / 8).map_err(|_| err("run too large".into()))?,
        axes,
        empty: false,
    })
}

fn normalize(shape: &[usize], args: &[SliceArg]) -> Result<Vec<Sel>, String> {
    let ndim = shape.len();
    let ellipses = args.iter().filter(|a| **a == SliceArg::Ellipsis).count();
    if ellipses > 1 {
        return Err("at most one ellipsis (...) is allowed".into());
    }
    let explicit = args.len() - ellipses;
    if explicit > ndim {
        return Err(format!(
            "too many indices: {explicit} for a tensor with {ndim} dimensions"
        ));
    }
    let mut expanded: Vec<SliceArg> = Vec::with_capacity(ndim);
    for a in args {
        if *a == SliceArg::Ellipsis {
            expanded.extend(std::iter::repeat_n(SliceArg::FULL, ndim - explicit));
        } else {
            expanded.push(*a);
        }
    }
    expanded.resize(ndim, SliceArg::FULL);

    let mut sels = Vec::with_capacity(ndim);
    for (d, (arg, &n)) in expanded.iter().zip(shape).enumerate() {
        let n = n as i128;
        let sel = match *arg {
            SliceArg::Index(i) => {
                let i = i as i128;
                let j = if i < 0 { i + n } else { i };
                if j < 0 || j >= n {
                    return Err(format!(
                        "index {i} is out of range for dimension {d} of size {n}"
                    ));
                }
                Sel {
                    start: j,
                    step: 1,
                    count: 1,
                    keep: false,
                }
            }
            SliceArg::Range { start, stop, step } => {
                if step == 0 {
                    return Err(format!("step of dimension {d} is 0"));
                }
                let step = step as i128;
                let (start, count) = if step > 0 {
                    let clamp = |v: i64| {
                        let v = v as i128;
                        if v < 0 {
                            (v + n).max(0)
                        } else {
                            v.min(n)
                        }
                    };
                    let a = start.map_or(0, clamp);
                    let b = stop.map_or(n, clamp);
                    let c = if b > a { (b - a + step - 1) / step } else { 0 };
                    (a, c)
                } else {
                    let clamp = |v: i64| {
                        let v = v as i128;
                        if v < 0 {
                            (v + n).max(-1)
                        } else {
                            v.min(n - 1)
                        }
                    };
                    let a = start.map_or(n - 1, clamp);
                    let b = stop.map_or(-1, clamp);
                    let c = if a > b {
                        (a - b + (-step) - 1) / (-step)
                    } else {
                        0
                    };
                    (a, c)
                };
                Sel {
                    start: if count == 0 { 0 } else { start },
                    step,
                    // count <= n, which came from a usize.
                    count: count as usize,
                    keep: true,
                }
            }
            // Expanded above; a whole dimension either way.
            SliceArg::Ellipsis => Sel {
                start: 0,
                step: 1,
                count: n as usize,
                keep: true,
            },
        };
        sels.push(sel);
    }
    Ok(sels)
}

impl SlicePlan {
    /// Output shape (dimensions selected by a single index are dropped).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of bytes of the output.
    pub fn byte_len(&self) -> usize {
        self.byte_len
    }

    /// Whether the slice is one contiguous run of the source (or empty).
    pub fn is_contiguous(&self) -> bool {
        self.empty || self.axes.is_empty()
    }

    /// The source byte runs `(offset within the tensor's bytes, length)`, in
    /// output order, adjacent runs coalesced.
    pub fn runs(&self) -> Runs<'_> {
        Runs {
            plan: self,
            idx: vec![0; self.axes.len()],
            done: self.empty,
            pending: None,
        }
    }

    /// Copies the slice out of `src` (the whole tensor's bytes) into `dst`
    /// (exactly [`SlicePlan::byte_len`] bytes).
    pub fn copy_into(&self, src: &[u8], dst: &mut [u8]) -> Result<(), FormatError> {
        self.fill(dst, |off, buf| {
            let s = off
                .checked_add(buf.len())
                .and_then(|end| src.get(off..end))
                .ok_or_else(|| FormatError::InvalidSlice {
                    tensor: "<source>".into(),
                    reason: format!(
                        "source buffer of {} bytes is too short for run at {off}+{}",
                        src.len(),
                        buf.len()
                    ),
                })?;
            buf.copy_from_slice(s);
            Ok(())
        })
    }

    /// Fills `dst` by calling `read(offset_within_tensor, buf)` once per run.
    pub fn fill<F>(&self, dst: &mut [u8], mut read: F) -> Result<(), FormatError>
    where
        F: FnMut(usize, &mut [u8]) -> Result<(), FormatError>,
    {
        if dst.len() != self.byte_len {
            return Err(FormatError::InvalidSlice {
                tensor: "<destination>".into(),
                reason: format!(
                    "destination holds {} bytes, the slice needs {}",
                    dst.len(),
                    self.byte_len
                ),
            });
        }
        let mut pos = 0usize;
        for (off, len) in self.runs() {
            let buf = dst
                .get_mut(pos..pos + len)
                .ok_or_else(|| FormatError::InvalidSlice {
                    tensor: "<destination>".into(),
                    reason: "runs exceed the planned length".into(),
                })?;
            read(off, buf)?;
            pos += len;
        }
        Ok(())
    }
}

/// Iterator over the byte runs of a [`SlicePlan`].
#[derive(Debug, Clone)]
pub struct Runs<'p> {
    plan: &'p SlicePlan,
    idx: Vec<usize>,
    done: bool,
    pending: Option<(usize, usize)>,
}

impl Runs<'_> {
    fn next_raw(&mut self) -> Option<(usize, usize)> {
        if self.done {
            return None;
        }
        let mut off = self.plan.base as i128;
        for (i, a) in self.idx.iter().zip(&self.plan.axes) {
            off += *i as i128 * a.step_bytes;
        }
        // Advance the odometer.
        let mut d = self.idx.len();
        loop {
            if d == 0 {
                self.done = true;
                break;
            }
            d -= 1;
            self.idx[d] += 1;
            if self.idx[d] < self.plan.axes[d].count {
                break;
            }
            self.idx[d] = 0;
        }
        // Offsets of a validated plan are in range.
        Some((
            usize::try_from(off).unwrap_or(usize::MAX),
            self.plan.run_len,
        ))
    }
}

impl Iterator for Runs<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let mut cur = match self.pending.take() {
            Some(r) => r,
            None => self.next_raw()?,
        };
        while let Some(next) = self.next_raw() {
            if cur.0.checked_add(cur.1) == Some(next.0) {
                cur.1 += next.1;
            } else {
                self.pending = Some(next);
                break;
            }
        }
        Some(cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: Option<i64>, stop: Option<i64>, step: i64) -> SliceArg {
        SliceArg::Range { start, stop, step }
    }

    #[test]
    fn full_is_one_run() {
        let p = plan_for("t", Dtype::F32, &[2, 3], &[]).unwrap();
        assert_eq!(p.shape(), &[2, 3]);
        assert_eq!(p.runs().collect::<Vec<_>>(), vec![(0, 24)]);
    }

    #[test]
    fn rows_and_columns() {
        let p = plan_for("t", Dtype::F32, &[4, 3], &[SliceArg::range(1, 3)]).unwrap();
        assert_eq!(p.runs().collect::<Vec<_>>(), vec![(12, 24)]);
        let p = plan_for(
            "t",
            Dtype::F32,
            &[4, 3],
            &[SliceArg::FULL, SliceArg::Index(-1)],
        )
        .unwrap();
        assert_eq!(p.shape(), &[4]);
        assert_eq!(
            p.runs().collect::<Vec<_>>(),
            vec![(8, 4), (20, 4), (32, 4), (44, 4)]
        );
    }

    #[test]
    fn negative_step() {
        let p = plan_for("t", Dtype::U8, &[5], &[r(None, None, -2)]).unwrap();
        assert_eq!(p.shape(), &[3]);
        assert_eq!(p.runs().collect::<Vec<_>>(), vec![(4, 1), (2, 1), (0, 1)]);
    }

    #[test]
    fn errors() {
        let e = plan_for("t", Dtype::U8, &[5], &[SliceArg::Index(5)]).unwrap_err();
        assert_eq!(e.kind(), "invalid_slice");
        let e = plan_for("t", Dtype::U8, &[5], &[r(None, None, 0)]).unwrap_err();
        assert_eq!(e.kind(), "invalid_slice");
        let e = plan_for("t", Dtype::U8, &[5], &[SliceArg::FULL, SliceArg::FULL]).unwrap_err();
        assert_eq!(e.kind(), "invalid_slice");
        let e = plan_for("t", Dtype::F4, &[4], &[SliceArg::range(1, 3)]).unwrap_err();
        assert_eq!(e.kind(), "invalid_slice");
        let p = plan_for("t", Dtype::F4, &[4, 2], &[SliceArg::range(1, 3)]).unwrap();
        assert_eq!(p.runs().collect::<Vec<_>>(), vec![(1, 2)]);
    }

    #[test]
    fn empty_and_scalar() {
        let p = plan_for("t", Dtype::F32, &[3, 0], &[]).unwrap();
        assert_eq!(p.byte_len(), 0);
        assert_eq!(p.runs().count(), 0);
        let p = plan_for("t", Dtype::F64, &[], &[]).unwrap();
        assert_eq!(p.runs().collect::<Vec<_>>(), vec![(0, 8)]);
        let p = plan_for("t", Dtype::F32, &[4], &[SliceArg::range(3, 1)]).unwrap();
        assert_eq!(p.shape(), &[0]);
        assert_eq!(p.byte_len(), 0);
    }
}
