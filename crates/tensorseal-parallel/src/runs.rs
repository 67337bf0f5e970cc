//! Byte runs: which bytes of a tensor an assignment selects.
//!
//! A rank's part of a tensor is described by one strided group of equal
//! runs ([`Runs`]), never by a list: a block along dimension `k > 0` of a
//! tensor with tiny rows has one run per outer index, and a list of them
//! would be far larger than the bytes selected (a header is untrusted
//! input, so its shapes must not size an allocation). The runs are
//! expanded one at a time, on demand ([`Runs::iter`]).

use std::iter::FusedIterator;

use tensorseal_format::Dtype;

use crate::plan::Assignment;
use crate::ParallelError;

/// A contiguous range of a tensor's bytes, relative to the tensor's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Offset within the tensor's bytes.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Equal byte runs at a fixed stride: [`Runs::count`] runs of
/// [`Runs::run_len`] bytes each, run `k` starting at
/// `offset + k * stride`. Memory is constant however many runs there are.
///
/// Every value holds (and [`Runs::new`] establishes):
/// - no run is empty: there are no runs exactly when the length is 0;
/// - the runs are ascending and coalesced: with more than one run the
///   stride exceeds the run length (no run ends where the next begins;
///   runs that would touch are merged into one);
/// - the end of the last run fits in a `u64`, so neither an offset nor
///   [`Runs::total`] can overflow.
///
/// ```
/// use tensorseal_parallel::{Run, Runs};
/// let r = Runs::new(1, 2, 5, 3).unwrap();
/// let v: Vec<Run> = r.iter().collect();
/// assert_eq!(v, [Run { offset: 1, len: 2 }, Run { offset: 6, len: 2 }, Run { offset: 11, len: 2 }]);
/// assert_eq!(r.total(), 6);
/// // Runs that touch are one run.
/// assert_eq!(Runs::new(0, 4, 4, 3).unwrap().count(), 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Runs {
    offset: u64,
    len: u64,
    stride: u64,
    count: u64,
}

impl Runs {
    /// No runs.
    pub const EMPTY: Runs = Runs {
        offset: 0,
        len: 0,
        stride: 0,
        count: 0,
    };

    /// `count` runs of `len` bytes, run `k` at `offset + k * stride`,
    /// normalised: no runs when `len` or `count` is 0, and runs that touch
    /// (`stride == len`) merged into one. `None` when runs would overlap
    /// (`stride < len` with more than one run) or the end of the last run
    /// overflows a `u64`.
    pub fn new(offset: u64, len: u64, stride: u64, count: u64) -> Option<Runs> {
        if len == 0 || count == 0 {
            return Some(Runs::EMPTY);
        }
        if count == 1 || stride == len {
            let len = len.checked_mul(count)?;
            offset.checked_add(len)?;
            return Some(Runs {
                offset,
                len,
                stride: 0,
                count: 1,
            });
        }
        if stride < len {
            return None;
        }
        stride
            .checked_mul(count - 1)?
            .checked_add(len)?
            .checked_add(offset)?;
        Some(Runs {
            offset,
            len,
            stride,
            count,
        })
    }

    /// One run of `len` bytes at `offset` (none when `len` is 0); `None`
    /// when its end overflows.
    pub fn single(offset: u64, len: u64) -> Option<Runs> {
        Runs::new(offset, len, 0, 1)
    }

    /// Offset of the first run (0 when there are none).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Length of each run (0 when there are none).
    pub fn run_len(&self) -> u64 {
        self.len
    }

    /// Distance between the starts of consecutive runs (0 with at most one
    /// run).
    pub fn stride(&self) -> u64 {
        self.stride
    }

    /// Number of runs.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether there are no runs.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Total bytes: the sum of the run lengths.
    pub fn total(&self) -> u64 {
        // count * len <= (count - 1) * stride + len, checked at construction.
        self.count * self.len
    }

    /// End of the last run (0 when there are none).
    pub fn end(&self) -> u64 {
        match self.count.checked_sub(1) {
            // Checked at construction.
            Some(last) => self.offset + last * self.stride + self.len,
            None => 0,
        }
    }

    /// Run `k`, if there is one.
    pub fn get(&self, k: u64) -> Option<Run> {
        (k < self.count).then(|| Run {
            // Below the end of the last run, checked at construction.
            offset: self.offset + k * self.stride,
            len: self.len,
        })
    }

    /// The same runs `base` bytes further on (tensor-relative offsets made
    /// absolute); `None` when the end overflows.
    pub fn shifted(&self, base: u64) -> Option<Runs> {
        if self.is_empty() {
            return Some(Runs::EMPTY);
        }
        self.end().checked_add(base)?;
        Some(Runs {
            offset: self.offset + base,
            ..*self
        })
    }

    /// The runs in ascending order, expanded one at a time.
    pub fn iter(&self) -> RunsIter {
        RunsIter {
            runs: *self,
            next: 0,
            back: self.count,
        }
    }
}

impl IntoIterator for Runs {
    type Item = Run;
    type IntoIter = RunsIter;
    fn into_iter(self) -> RunsIter {
        self.iter()
    }
}

impl IntoIterator for &Runs {
    type Item = Run;
    type IntoIter = RunsIter;
    fn into_iter(self) -> RunsIter {
        self.iter()
    }
}

/// Iterator over the runs of a [`Runs`] ([`Runs::iter`]).
#[derive(Debug, Clone)]
pub struct RunsIter {
    runs: Runs,
    /// Index of the next run from the front.
    next: u64,
    /// One past the index of the next run from the back.
    back: u64,
}

impl Iterator for RunsIter {
    type Item = Run;

    fn next(&mut self) -> Option<Run> {
        if self.next >= self.back {
            return None;
        }
        let r = self.runs.get(self.next);
        self.next += 1;
        r
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.back.saturating_sub(self.next);
        match usize::try_from(left) {
            Ok(n) => (n, Some(n)),
            Err(_) => (usize::MAX, None),
        }
    }

    fn nth(&mut self, n: usize) -> Option<Run> {
        let left = self.back.saturating_sub(self.next);
        match u64::try_from(n) {
            Ok(n) if n < left => {
                self.next += n;
                self.next()
            }
            _ => {
                self.next = self.back;
                None
            }
        }
    }

    fn last(mut self) -> Option<Run> {
        self.next_back()
    }
}

impl DoubleEndedIterator for RunsIter {
    fn next_back(&mut self) -> Option<Run> {
        if self.next >= self.back {
            return None;
        }
        self.back -= 1;
        self.runs.get(self.back)
    }
}

impl FusedIterator for RunsIter {}

/// What a rank takes of one tensor: its shape, and the byte runs that,
/// concatenated in order, are its bytes in C order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Shape of the rank's part.
    pub shape: Vec<usize>,
    /// Runs, ascending and coalesced (no two adjacent), as one strided
    /// group.
    pub runs: Runs,
    /// Total bytes (sum of the run lengths, [`Runs::total`]).
    pub len: u64,
}

fn overflow(name: &str, shape: &[usize]) -> ParallelError {
    ParallelError::Overflow {
        tensor: name.to_owned(),
        shape: shape.to_vec(),
    }
}

fn product(name: &str, shape: &[usize], dims: &[usize]) -> Result<u64, ParallelError> {
    dims.iter().try_fold(1u64, |acc, &d| {
        acc.checked_mul(d as u64)
            .ok_or_else(|| overflow(name, shape))
    })
}

/// Plans the byte runs of `assignment` over a tensor of `dtype` and `shape`
/// (`None` for [`Assignment::Skip`]).
///
/// A block along dimension 0 (or any block whose outer dimensions are all
/// 1, or that spans its whole dimension) is one run; a block along
/// dimension `k` is one run per index of the outer dimensions, adjacent
/// runs merged. Either way the result is one [`Runs`] group: planning takes
/// constant memory whatever the shape.
pub fn select(
    name: &str,
    dtype: Dtype,
    shape: &[usize],
    assignment: Assignment,
) -> Result<Option<Selection>, ParallelError> {
    let bits = dtype.bits() as u64;
    let whole_bits = product(name, shape, shape)?
        .checked_mul(bits)
        .ok_or_else(|| overflow(name, shape))?;
    let whole = |shape: Vec<usize>| {
        let len = whole_bits.div_ceil(8);
        // A length of at most u64::MAX / 8 cannot overflow at offset 0.
        let runs = Runs::single(0, len).unwrap_or_default();
        Selection { shape, runs, len }
    };
    let (dim, start, stop) = match assignment {
        Assignment::Skip => return Ok(None),
        Assignment::Whole => return Ok(Some(whole(shape.to_vec()))),
        Assignment::Block { dim, start, stop } => (dim, start, stop),
    };
    let size = *shape.get(dim).ok_or_else(|| ParallelError::BadDim {
        tensor: name.to_owned(),
        shape: shape.to_vec(),
        dim: dim as i64,
    })?;
    if start > stop || stop > size {
        return Err(ParallelError::BadLocal {
            tensor: name.to_owned(),
            reason: format!("block {start}..{stop} is outside dimension {dim} of size {size}"),
        });
    }
    let mut local = shape.to_vec();
    if let Some(d) = local.get_mut(dim) {
        *d = stop - start;
    }
    if start == 0 && stop == size {
        return Ok(Some(whole(local)));
    }
    let outer = product(name, shape, shape.get(..dim).unwrap_or_default())?;
    let inner = product(name, shape, shape.get(dim + 1..).unwrap_or_default())?;
    // Products of dimensions bounded by whole_bits do not overflow when the
    // tensor is not empty; an empty one can have huge dimensions, so every
    // product is checked.
    let mul = |a: u64, b: u64| a.checked_mul(b).ok_or_else(|| overflow(name, shape));
    let row_bits = mul(inner, bits)?;
    let unaligned = || ParallelError::Unaligned {
        tensor: name.to_owned(),
        dtype: dtype.as_str().to_owned(),
        shape: shape.to_vec(),
        dim,
    };
    let aligned = row_bits.is_multiple_of(8)
        || (outer <= 1
            && mul(start as u64, row_bits)?.is_multiple_of(8)
            && mul(stop as u64, row_bits)?.is_multiple_of(8));
    if !aligned {
        return Err(unaligned());
    }
    if whole_bits == 0 {
        return Ok(Some(Selection {
            shape: local,
            runs: Runs::EMPTY,
            len: 0,
        }));
    }
    // Run i (of outer) is the block of outer index i: it starts at
    // (i * size + start) * row_bits / 8, exact because either row_bits is
    // a multiple of 8 or there is only the run i = 0.
    let block_bytes = mul((stop - start) as u64, row_bits)? / 8;
    let first = mul(start as u64, row_bits)? / 8;
    let stride = mul(size as u64, row_bits)? / 8;
    let runs = Runs::new(first, block_bytes, stride, outer).ok_or_else(|| overflow(name, shape))?;
    Ok(Some(Selection {
        shape: local,
        len: runs.total(),
        runs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(dim: usize, start: usize, stop: usize) -> Assignment {
        Assignment::Block { dim, start, stop }
    }

    #[test]
    fn dim0_is_one_run_and_dim1_one_per_row() {
        let s = select("w", Dtype::F32, &[4, 6], block(0, 1, 3))
            .unwrap()
            .unwrap();
        assert_eq!(
            s.runs.iter().collect::<Vec<_>>(),
            vec![Run {
                offset: 24,
                len: 48
            }]
        );
        assert_eq!(s.shape, vec![2, 6]);
        let s = select("w", Dtype::F32, &[4, 6], block(1, 2, 4))
            .unwrap()
            .unwrap();
        assert_eq!(s.runs.count(), 4);
        assert_eq!(
            s.runs.get(1),
            Some(Run {
                offset: 24 + 8,
                len: 8
            })
        );
        assert_eq!(s.runs.iter().nth(1), s.runs.get(1));
        assert_eq!(s.len, 32);
    }

    #[test]
    fn sub_byte_blocks_must_be_byte_aligned() {
        let e = select("q", Dtype::F4, &[3, 3], block(0, 1, 2)).unwrap_err();
        assert!(e.to_string().contains("\"q\""), "{e}");
        let s = select("q", Dtype::F4, &[4, 2], block(0, 2, 4))
            .unwrap()
            .unwrap();
        assert_eq!(
            s.runs.iter().collect::<Vec<_>>(),
            vec![Run { offset: 2, len: 2 }]
        );
    }

    /// Regression: a block of a tensor with tiny rows used to be planned as
    /// one `Run` per row, 16 bytes of plan per byte selected here (16 TiB).
    #[test]
    fn tiny_rows_plan_in_constant_memory() {
        let rows = 1usize << 40;
        for (rank, first) in [(0usize, 0u64), (1, 1)] {
            let s = select("t", Dtype::U8, &[rows, 2], block(1, rank, rank + 1))
                .unwrap()
                .unwrap();
            assert_eq!(s.shape, vec![rows, 1]);
            assert_eq!(s.len, 1 << 40);
            assert_eq!(s.runs.count(), 1 << 40);
            assert_eq!((s.runs.run_len(), s.runs.stride()), (1, 2));
            assert_eq!(s.runs.offset(), first);
            assert_eq!(s.runs.end(), (1 << 41) - 1 + first);
            assert_eq!(
                s.runs.iter().next_back(),
                Some(Run {
                    offset: (1 << 41) - 2 + first,
                    len: 1
                })
            );
            let mut it = s.runs.iter();
            assert_eq!(it.nth((1 << 40) - 1), s.runs.get((1 << 40) - 1));
            assert_eq!(it.next(), None);
        }
        // Close to the largest describable tensor: 2^63 bits.
        let s = select("t", Dtype::U8, &[1 << 59, 2], block(1, 1, 2))
            .unwrap()
            .unwrap();
        assert_eq!(s.runs.count(), 1 << 59);
        assert_eq!(s.len, 1 << 59);
        let e = select("t", Dtype::U8, &[1 << 61, 2], block(1, 1, 2)).unwrap_err();
        assert_eq!(e.kind(), "overflow");
        assert!(e.to_string().contains("\"t\""), "{e}");
    }

    #[test]
    fn empty_tensors_with_huge_dimensions_have_no_runs() {
        // Outer size 0: no bytes, whatever the other dimensions multiply to.
        let s = select(
            "e",
            Dtype::F32,
            &[0, 1 << 40, 1 << 22],
            block(1, 0, 1 << 39),
        )
        .unwrap()
        .unwrap();
        assert!(s.runs.is_empty());
        assert_eq!(s.len, 0);
        assert_eq!(s.shape, vec![0, 1 << 39, 1 << 22]);
    }

    #[test]
    fn runs_are_normalised() {
        assert_eq!(Runs::new(5, 0, 3, 9), Some(Runs::EMPTY));
        assert_eq!(Runs::new(5, 3, 0, 0), Some(Runs::EMPTY));
        assert_eq!(Runs::new(5, 3, 7, 1), Runs::single(5, 3));
        assert_eq!(Runs::new(5, 3, 3, 4), Runs::single(5, 12));
        assert_eq!(Runs::new(0, 4, 3, 2), None, "overlapping");
        assert_eq!(Runs::new(u64::MAX - 1, 1, 2, 2), None, "past u64");
        assert_eq!(Runs::single(u64::MAX, 1), None);
        let r = Runs::new(10, 2, 5, 3).unwrap();
        assert_eq!((r.total(), r.end()), (6, 22));
        assert_eq!(r.shifted(100).unwrap().get(2).unwrap().offset, 120);
        assert_eq!(r.shifted(u64::MAX - 21), None);
        assert_eq!(Runs::EMPTY.end(), 0);
        assert_eq!(Runs::EMPTY.iter().next(), None);
        let back: Vec<Run> = r.iter().rev().collect();
        assert_eq!(back.len(), 3);
        assert_eq!(back[0].offset, 20);
        let mut it = r.iter();
        assert_eq!(it.size_hint(), (3, Some(3)));
        it.next();
        it.next_back();
        assert_eq!(it.size_hint(), (1, Some(1)));
        assert_eq!(it.next().map(|r| r.offset), Some(15));
        assert_eq!(it.next(), None);
        assert_eq!(r.iter().nth(3), None);
        assert_eq!(r.iter().last().map(|r| r.offset), Some(20));
    }
}
