//! Byte runs: which bytes of a tensor an assignment selects.

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

/// What a rank takes of one tensor: its shape, and the byte runs that,
/// concatenated in order, are its bytes in C order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Shape of the rank's part.
    pub shape: Vec<usize>,
    /// Runs, ascending and coalesced (no two adjacent).
    pub runs: Vec<Run>,
    /// Total bytes (sum of the run lengths).
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
/// runs merged.
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
        let runs = if len > 0 {
            vec![Run { offset: 0, len }]
        } else {
            Vec::new()
        };
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
    let row_bits = inner
        .checked_mul(bits)
        .ok_or_else(|| overflow(name, shape))?;
    let unaligned = || ParallelError::Unaligned {
        tensor: name.to_owned(),
        dtype: dtype.as_str().to_owned(),
        shape: shape.to_vec(),
        dim,
    };
    let aligned = row_bits.is_multiple_of(8)
        || (outer <= 1
            && (start as u64 * row_bits).is_multiple_of(8)
            && (stop as u64 * row_bits).is_multiple_of(8));
    if !aligned {
        return Err(unaligned());
    }
    // All products below are bounded by whole_bits, which did not overflow.
    let block_bytes = (stop - start) as u64 * row_bits / 8;
    let mut runs: Vec<Run> = Vec::new();
    let mut total = 0u64;
    if block_bytes > 0 {
        for i in 0..outer {
            let offset = (i * size as u64 + start as u64) * row_bits / 8;
            total += block_bytes;
            match runs.last_mut() {
                Some(last) if last.offset + last.len == offset => last.len += block_bytes,
                _ => runs.push(Run {
                    offset,
                    len: block_bytes,
                }),
            }
        }
    }
    Ok(Some(Selection {
        shape: local,
        runs,
        len: total,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dim0_is_one_run_and_dim1_one_per_row() {
        let s = select(
            "w",
            Dtype::F32,
            &[4, 6],
            Assignment::Block {
                dim: 0,
                start: 1,
                stop: 3,
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            s.runs,
            vec![Run {
                offset: 24,
                len: 48
            }]
        );
        assert_eq!(s.shape, vec![2, 6]);
        let s = select(
            "w",
            Dtype::F32,
            &[4, 6],
            Assignment::Block {
                dim: 1,
                start: 2,
                stop: 4,
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.runs.len(), 4);
        assert_eq!(
            s.runs[1],
            Run {
                offset: 24 + 8,
                len: 8
            }
        );
        assert_eq!(s.len, 32);
    }

    #[test]
    fn sub_byte_blocks_must_be_byte_aligned() {
        let e = select(
            "q",
            Dtype::F4,
            &[3, 3],
            Assignment::Block {
                dim: 0,
                start: 1,
                stop: 2,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"q\""), "{e}");
        let s = select(
            "q",
            Dtype::F4,
            &[4, 2],
            Assignment::Block {
                dim: 0,
                start: 2,
                stop: 4,
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.runs, vec![Run { offset: 2, len: 2 }]);
    }
}
