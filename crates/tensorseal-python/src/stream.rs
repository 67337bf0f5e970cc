//! `Stream`: the host half of loading straight into device memory.
//!
//! A thin binding of `tensorseal-stream`: Python hands over the byte ranges
//! it wants from an open `SafeFile` and a ring of staging buffers (pinned
//! host memory for a GPU, plain memory for the host target); reader threads
//! fill the slots without the GIL, and Python drains each filled slot with
//! device copies (`_gpu.py`). Nothing here knows torch or CUDA.

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use tensorseal_stream::{Direct, Options, Range, Slot, StreamError};

use crate::inbuf::InBuf;
use crate::{read, SafeFile, SafetensorError};

/// Maps a stream error: an I/O error becomes `OSError(errno, strerror,
/// filename)`; anything else (a file truncated while loading, a
/// cancellation, a bad staging slot) a `SafetensorError` with `kind`.
fn to_py(py: Python<'_>, err: StreamError) -> PyErr {
    if let StreamError::Io { path, source, .. } = &err {
        if let Some(code) = source.raw_os_error() {
            return PyOSError::new_err((code, err.to_string(), path.clone()));
        }
    }
    let pyerr = SafetensorError::new_err(err.to_string());
    let _ = pyerr.value(py).setattr("kind", err.kind());
    pyerr
}

/// One copy out of a filled slot: `(dst, dst_offset, slot_offset, len)`.
type PyCopy = (usize, u64, u64, u64);

/// Reader threads streaming byte ranges of one file through a ring of
/// staging buffers (see `tensorseal._gpu`).
///
/// `Stream(file, ranges, slots, threads=None, direct="auto")`: `ranges` are
/// `(offset, len, dst, dst_offset)` with file offsets as in
/// `SafeFile.entries()`; `slots` are writable, C-contiguous buffers of one
/// size (a multiple of 4096; aligned to 4096 for direct reads), which the
/// stream keeps alive. `direct` is `"auto"` (`O_DIRECT` when the bytes are
/// not cached), `"on"` or `"off"`.
///
/// `len(stream)` chunks are taken in order with `wait(i)`, which returns
/// `(slot, copies)`, each copy `(dst, dst_offset, slot_offset, len)`, and
/// given back with `release(i)` once nothing reads slot `slot` any more.
#[pyclass(frozen, module = "tensorseal._tensorseal")]
pub struct Stream {
    // Dropped first: joins the readers before the slots are let go.
    inner: tensorseal_stream::Stream,
    copies: Vec<Vec<PyCopy>>,
    _slots: Vec<InBuf>,
}

#[pymethods]
impl Stream {
    #[new]
    #[pyo3(signature = (file, ranges, slots, threads=None, direct="auto"))]
    fn new(
        py: Python<'_>,
        file: PyRef<'_, SafeFile>,
        ranges: Vec<(u64, u64, usize, u64)>,
        slots: Vec<Bound<'_, PyAny>>,
        threads: Option<usize>,
        direct: &str,
    ) -> PyResult<Self> {
        let direct = match direct {
            "auto" => Direct::Auto,
            "on" => Direct::On,
            "off" => Direct::Off,
            other => {
                return Err(PyValueError::new_err(format!(
                    "direct must be 'auto', 'on' or 'off', not {other:?}"
                )))
            }
        };
        let file_len = file.file_len() as u64;
        let ranges: Vec<Range> = ranges
            .into_iter()
            .map(|(offset, len, dst, dst_offset)| Range {
                offset,
                len,
                dst,
                dst_offset,
            })
            .collect();
        if let Some(r) = ranges
            .iter()
            .find(|r| r.offset.checked_add(r.len).is_none_or(|end| end > file_len))
        {
            return Err(PyValueError::new_err(format!(
                "range {}+{} is outside the file ({file_len} bytes)",
                r.offset, r.len
            )));
        }
        let slots = slots.iter().map(InBuf::get).collect::<PyResult<Vec<_>>>()?;
        let mut ring = Vec::with_capacity(slots.len());
        for (i, b) in slots.iter().enumerate() {
            if b.readonly() || !b.is_c_contiguous() {
                return Err(PyValueError::new_err(format!(
                    "staging slot {i} is not a writable contiguous buffer"
                )));
            }
            // SAFETY: the buffer is writable and contiguous, its exporter is
            // kept alive (and its memory pinned in place) by the `InBuf`
            // held in `_slots` until this object drops, which joins every
            // reader first (field order). Python reads a slot only between
            // `wait` and `release`, as `Slot::new` requires.
            let slot = unsafe { Slot::new(b.buf_ptr(), b.len_bytes()) };
            ring.push(slot);
        }
        let slot_bytes = ring.iter().map(|s| s.len()).min().unwrap_or(0) as u64;
        let slot_bytes = slot_bytes - slot_bytes % tensorseal_stream::align::ALIGN;
        let chunks = tensorseal_stream::plan(&ranges, slot_bytes).map_err(|e| to_py(py, e))?;
        let copies = chunks
            .iter()
            .map(|c| {
                c.copies
                    .iter()
                    .map(|k| (k.dst, k.dst_offset, k.src_offset, k.len))
                    .collect()
            })
            .collect();
        let options = Options {
            threads: threads.unwrap_or_else(read::default_threads),
            direct,
        };
        let path = file.path.clone();
        let handle = file
            .opened
            .file()
            .try_clone()
            .map_err(|e| PyOSError::new_err(format!("{}: {e}", path.display())))?;
        let inner = py
            .detach(|| tensorseal_stream::Stream::new(&path, handle, chunks, ring, options))
            .map_err(|e| to_py(py, e))?;
        Ok(Stream {
            inner,
            copies,
            _slots: slots,
        })
    }

    fn __len__(&self) -> usize {
        self.inner.chunks().len()
    }

    /// Waits (without the GIL) for chunk `i`: `(slot, copies)`.
    fn wait(&self, py: Python<'_>, i: usize) -> PyResult<(usize, Vec<PyCopy>)> {
        let (slot, skip) = py.detach(|| self.inner.wait(i)).map_err(|e| to_py(py, e))?;
        let copies = self.copies.get(i).map_or_else(Vec::new, |cs| {
            cs.iter().map(|&(d, o, s, n)| (d, o, s + skip, n)).collect()
        });
        Ok((slot, copies))
    }

    /// Gives chunk `i`'s slot back to the readers.
    fn release(&self, py: Python<'_>, i: usize) -> PyResult<()> {
        self.inner.release(i).map_err(|e| to_py(py, e))
    }

    /// Stops the readers; later waits raise.
    fn cancel(&self) {
        self.inner.cancel();
    }

    /// Cancels and joins the readers (idempotent): nothing writes to the
    /// slots afterwards.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.inner.close());
    }

    /// Reader threads still running.
    fn live_threads(&self) -> usize {
        self.inner.live_threads()
    }

    /// What the reads did: `direct_reads`, `buffered_reads`,
    /// `direct_fallbacks`, `bytes_read`, `threads`, `chunks`, `slots`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let d = PyDict::new(py);
        d.set_item("direct_reads", s.direct_reads)?;
        d.set_item("buffered_reads", s.buffered_reads)?;
        d.set_item("direct_fallbacks", s.direct_fallbacks)?;
        d.set_item("bytes_read", s.bytes_read)?;
        d.set_item("threads", s.threads)?;
        d.set_item("chunks", self.inner.chunks().len())?;
        d.set_item("slots", self.inner.slots())?;
        Ok(d)
    }
}
