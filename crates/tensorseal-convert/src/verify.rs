//! Verifying the output, the last step of the pipeline, as
//! [`Verify`](crate::Verify) says: `Checksum` compares the output's header and each tensor's
//! XXH3-128 with what was written (the tensors are re-read before the rename
//! on unix, by [`check_ranges`] from the write step), `Full` streams the inputs again and compares every byte.

use std::collections::BTreeMap;
use std::path::Path;

use tensorseal_format::{read_exact_at, Dtype, PreadFile, ReadTensors};
use xxhash_rust::xxh3::Xxh3;

use crate::error::ConvertError;
use crate::plan::PlannedTensor;
use crate::report::Written;
use crate::sources::Checkpoint;
use crate::stream::Streamer;

/// Size of the reads that hash the output back.
const VERIFY_CHUNK: usize = 8 << 20;

/// Most threads that hash the output back.
const VERIFY_THREADS: usize = 4;

/// [`Verify::Checksum`](crate::Verify::Checksum): reads `file` back (positioned reads, header
/// validated by the core parser) and checks that it holds exactly the
/// `written` tensors, each with the same dtype, shape, length and XXH3-128
/// of its bytes, and, when given, exactly `metadata`. The input is not read.
pub fn verify_checksums(
    file: &Path,
    written: &[Written],
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<(), ConvertError> {
    verify_output(file, written, metadata, true)
}

/// Re-reads each `(range, written)` of `out` and compares its length and
/// XXH3-128 with what was written, on up to `VERIFY_THREADS` threads, each
/// taking the next unchecked tensor. The error reported is that of the
/// first bad tensor in `jobs` order, whatever the timing. Returns the number
/// of tensors checked.
pub(crate) fn check_ranges(
    file: &Path,
    out: &std::fs::File,
    jobs: &[(std::ops::Range<u64>, &Written)],
) -> Result<usize, ConvertError> {
    let check = |range: &std::ops::Range<u64>,
                 w: &Written,
                 buf: &mut Vec<u8>|
     -> Result<(), ConvertError> {
        let verr = |why: String| ConvertError::Verify {
            path: file.to_owned(),
            name: w.name.clone(),
            why,
        };
        let len = range.end.saturating_sub(range.start);
        if len != w.len {
            return Err(verr(format!("has {len} bytes, {} were written", w.len)));
        }
        let mut h = Xxh3::new();
        let mut pos = range.start;
        while pos < range.end {
            let n = (range.end - pos).min(VERIFY_CHUNK as u64) as usize;
            buf.resize(n, 0);
            read_exact_at(out, buf, pos).map_err(|e| ConvertError::io(file, e))?;
            h.update(buf);
            pos += n as u64;
        }
        let got = h.digest128();
        if got != w.xxh3_128 {
            return Err(verr(format!(
                "bytes differ from those written (XXH3-128 {got:032x}, expected {:032x})",
                w.xxh3_128
            )));
        }
        Ok(())
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, VERIFY_THREADS)
        .min(jobs.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let first_err: std::sync::Mutex<Option<(usize, ConvertError)>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((range, w)) = jobs.get(i) else {
                        break;
                    };
                    if let Err(e) = check(range, w, &mut buf) {
                        if let Ok(mut slot) = first_err.lock() {
                            if slot.as_ref().is_none_or(|(j, _)| i < *j) {
                                *slot = Some((i, e));
                            }
                        }
                    }
                }
            });
        }
    });
    match first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some((_, e)) => Err(e),
        None => Ok(jobs.len()),
    }
}

/// Whether checksum verification re-reads the tensors from the file before
/// it is renamed into place, through the writer's handle (unix, where
/// positioned reads leave the writer's file position alone), or from the
/// final path after the rename (elsewhere).
pub(crate) const CHECK_BEFORE_RENAME: bool = cfg!(unix);

/// [`verify_checksums`], optionally without re-hashing the tensors' bytes
/// (when they were checked before the rename).
pub(crate) fn verify_output(
    file: &Path,
    written: &[Written],
    metadata: Option<&BTreeMap<String, String>>,
    rehash: bool,
) -> Result<(), ConvertError> {
    let out = PreadFile::open(file)?;
    let verr = |name: &str, why: String| ConvertError::Verify {
        path: file.to_owned(),
        name: name.to_owned(),
        why,
    };
    let base = out.data_start() as u64;
    let mut jobs = Vec::with_capacity(written.len());
    for w in written {
        let info = expect_entry(&out, file, &w.name, w.dtype, &w.shape)?;
        let (start, end) = info.data_offsets;
        let len = end.saturating_sub(start);
        if len as u64 != w.len {
            return Err(verr(
                &w.name,
                format!("has {len} bytes, {} were written", w.len),
            ));
        }
        jobs.push((base + start as u64..base + end as u64, w));
    }
    expect_count(&out, file, written.len())?;
    if let Some(m) = metadata {
        let empty = BTreeMap::new();
        if out.metadata().unwrap_or(&empty) != m {
            return Err(verr("*", "metadata differs from what was written".into()));
        }
    }
    if rehash {
        check_ranges(file, out.file(), &jobs)?;
    }
    Ok(())
}

/// [`Verify::Full`](crate::Verify::Full): re-reads `file` and the inputs and compares each
/// tensor's dtype, shape and every byte with the source.
pub fn verify_against_input<'a>(
    file: &Path,
    tensors: impl Iterator<Item = (&'a PlannedTensor, &'a Checkpoint)>,
) -> Result<(), ConvertError> {
    verify_against_input_with(file, tensors, &mut Streamer::new())
}

/// [`verify_against_input`] streaming the input through `streamer` (the
/// conversion's own, so that its buffers are reused).
pub(crate) fn verify_against_input_with<'a>(
    file: &Path,
    tensors: impl Iterator<Item = (&'a PlannedTensor, &'a Checkpoint)>,
    streamer: &mut Streamer,
) -> Result<(), ConvertError> {
    // Positioned reads, not a map: resident memory stays bounded.
    let out = PreadFile::open(file)?;
    let verr = |name: &str, why: String| ConvertError::Verify {
        path: file.to_owned(),
        name: name.to_owned(),
        why,
    };
    let mut count = 0;
    let mut back: Vec<u8> = Vec::new();
    for (p, ck) in tensors {
        count += 1;
        let info = expect_entry(&out, file, &p.name, p.tensor.dtype, &p.tensor.shape)?;
        let (start, end) = info.data_offsets;
        let mut pos = start;
        streamer.emit(p.input, ck, &p.name, &p.tensor, None, &mut |b| {
            if pos + b.len() > end {
                return Err(verr(&p.name, "is longer in the input".into()));
            }
            back.resize(b.len(), 0);
            out.read_at(pos, &mut back)?;
            if back != b {
                return Err(verr(
                    &p.name,
                    format!("differs from the input near byte {}", pos - start),
                ));
            }
            pos += b.len();
            Ok(())
        })?;
        if pos != end {
            return Err(verr(
                &p.name,
                format!("has {} bytes, the input {}", end - start, pos - start),
            ));
        }
    }
    expect_count(&out, file, count)
}

/// The output's header entry for `name`, which must exist with this dtype
/// and shape.
fn expect_entry<'h>(
    out: &'h PreadFile,
    file: &Path,
    name: &str,
    dtype: Dtype,
    shape: &[usize],
) -> Result<&'h tensorseal_format::TensorInfo, ConvertError> {
    let verr = |why: String| ConvertError::Verify {
        path: file.to_owned(),
        name: name.to_owned(),
        why,
    };
    let info = out
        .header()
        .get(name)
        .ok_or_else(|| verr("is missing from the output".into()))?;
    if info.dtype != dtype || info.shape != shape {
        return Err(verr(format!(
            "is {} {:?}, expected {} {:?}",
            info.dtype, info.shape, dtype, shape
        )));
    }
    Ok(info)
}

/// The output must hold exactly `expected` tensors.
fn expect_count(out: &PreadFile, file: &Path, expected: usize) -> Result<(), ConvertError> {
    if expected != out.header().len() {
        return Err(ConvertError::Verify {
            path: file.to_owned(),
            name: "*".to_owned(),
            why: format!(
                "file holds {} tensors, expected {expected}",
                out.header().len()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(bytes: &[u8]) -> Written {
        Written {
            name: format!("w{}", bytes.len()),
            dtype: Dtype::U8,
            shape: vec![bytes.len()],
            len: bytes.len() as u64,
            xxh3_128: xxhash_rust::xxh3::xxh3_128(bytes),
        }
    }

    #[test]
    fn check_ranges_counts_matches_and_names_the_first_mismatch_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o");
        let data: Vec<u8> = (0..(20 << 20) + 5)
            .map(|i: u32| ((i * 13) >> 3) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let out = std::fs::File::open(&path).unwrap();
        let n = data.len() as u64;
        let good = [written(&data), written(&data[10..20]), written(&data[..0])];
        let jobs = vec![(0..n, &good[0]), (10..20, &good[1]), (7..7, &good[2])];
        assert_eq!(check_ranges(&path, &out, &jobs).unwrap(), 3);

        // Several bad tensors: always the first in order, named, with both hashes.
        let mut other = data.clone();
        other[(17 << 20) + 1] ^= 1;
        let bad_big = Written {
            name: "big".into(),
            ..written(&other)
        };
        let bad_small = Written {
            name: "small".into(),
            ..written(b"0123456789")
        };
        let jobs = vec![(10..20, &good[1]), (0..n, &bad_big), (100..110, &bad_small)];
        for _ in 0..10 {
            match check_ranges(&path, &out, &jobs).unwrap_err() {
                ConvertError::Verify { name, why, .. } => {
                    assert_eq!(name, "big");
                    assert!(why.contains("XXH3-128"), "{why}");
                }
                e => panic!("{e:?}"),
            }
        }

        // A range of the wrong length.
        let jobs = vec![(0..n - 1, &good[0])];
        assert!(matches!(
            check_ranges(&path, &out, &jobs),
            Err(ConvertError::Verify { .. })
        ));
    }
}
