//! Python bindings for tensorseal: the native half of the `tensorseal`
//! package (`tensorseal._tensorseal`), a drop-in for `safetensors`.
//!
//! The format core (`tensorseal-format`) knows nothing of Python; this crate
//! maps its typed errors to Python exceptions, releases the GIL around file
//! I/O and large copies, and hands out memory (`Buffer`) that numpy
//! arrays and torch tensors view without copying. The framework-specific
//! parts (dtype names, torch/numpy objects) live in the pure-Python package.

mod buffer;
mod inbuf;
mod parallel;
mod quant;
mod read;
mod stream;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use tensorseal_format::write::{Layout, TensorSpec};
use tensorseal_format::ReadTensors;
use tensorseal_format::{AtomicFile, Dtype, Durability, FormatError, Header};

use buffer::Buffer;
use inbuf::InBuf;

create_exception!(
    tensorseal,
    SafetensorError,
    PyException,
    "A file or input that is not valid safetensors, or a request it cannot satisfy.\n\n\
     The message quotes the value at fault; the `kind` attribute names the rule broken\n\
     (for example `\"header_too_large\"`, `\"tensor_not_found\"`)."
);

/// Maps a core error to the Python exception a user expects.
///
/// I/O errors become `OSError` built from `(errno, strerror, filename)`, which
/// Python turns into the matching subclass (`FileNotFoundError`,
/// `PermissionError`, `IsADirectoryError`, …). Everything else is a
/// `SafetensorError` carrying the core's message and a `kind` attribute.
/// The dtype of tensor `name` being written, from its safetensors code; a
/// `SafetensorError` quoting both otherwise.
fn write_dtype(py: Python<'_>, name: &str, dtype: &str) -> PyResult<Dtype> {
    dtype.parse().map_err(|e: tensorseal_format::UnknownDtype| {
        to_py(
            py,
            FormatError::InvalidWrite {
                tensor: name.to_owned(),
                reason: e.to_string(),
            },
        )
    })
}

fn to_py(py: Python<'_>, err: FormatError) -> PyErr {
    if let FormatError::Io { path, source } = &err {
        let errno = source.raw_os_error().or(match source.kind() {
            std::io::ErrorKind::NotFound => Some(2),
            std::io::ErrorKind::PermissionDenied => Some(13),
            std::io::ErrorKind::IsADirectory => Some(21),
            _ => None,
        });
        if let Some(code) = errno {
            let strerror = py
                .import("os")
                .and_then(|os| os.call_method1("strerror", (code,)))
                .and_then(|s| s.extract::<String>())
                .unwrap_or_else(|_| source.to_string());
            return PyOSError::new_err((code, strerror, path.display().to_string()));
        }
        return PyOSError::new_err(format!("{}: {source}", path.display()));
    }
    let kind = err.kind();
    // One line with the cause (the problem found in a named shard).
    let pyerr = SafetensorError::new_err(err.report());
    let _ = pyerr.value(py).setattr("kind", kind);
    pyerr
}

/// Runs `f` without the GIL and maps its error.
fn detached<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> Result<T, FormatError> + Send,
) -> PyResult<T> {
    py.detach(f).map_err(|e| to_py(py, e))
}

/// `(name, dtype, shape, start, end)` for every tensor in file order, with
/// offsets shifted by `base`.
fn entries<'py>(py: Python<'py>, header: &Header, base: usize) -> PyResult<Bound<'py, PyList>> {
    let items: Vec<Bound<'py, PyTuple>> = header
        .tensors()
        .iter()
        .map(|(name, info)| {
            PyTuple::new(
                py,
                [
                    name.into_pyobject(py)?.into_any(),
                    info.dtype.as_str().into_pyobject(py)?.into_any(),
                    PyList::new(py, &info.shape)?.into_any(),
                    (base + info.data_offsets.0).into_pyobject(py)?.into_any(),
                    (base + info.data_offsets.1).into_pyobject(py)?.into_any(),
                ],
            )
        })
        .collect::<PyResult<_>>()?;
    PyList::new(py, items)
}

fn metadata<'py>(py: Python<'py>, header: &Header) -> PyResult<Option<Bound<'py, PyDict>>> {
    header
        .metadata()
        .map(|m| {
            let d = PyDict::new(py);
            for (k, v) in m {
                d.set_item(k, v)?;
            }
            Ok(d)
        })
        .transpose()
}

/// Tensors at least this large are faulted in ahead of use, on several
/// threads, when handed out as views of a mapping (see `Buffer::populate`).
const POPULATE_MIN: usize = 4 << 20;

/// Reads smaller than this are made without releasing the GIL.
const SMALL_READ: usize = 64 << 10;

/// The copy-on-write mapping that `cow_tensor` currently hands tensors out
/// of, and the tensors already handed out of it.
#[derive(Default)]
struct CowState {
    map: Option<Py<Buffer>>,
    served: HashSet<String>,
}

/// An open safetensors file: the validated header and the open file.
///
/// Only the header is read when opening. Tensor bytes come from positioned
/// reads into memory of their own (`read_range`), from fresh copy-on-write
/// mappings (`map_cow`, `cow_tensor`), or from one read-only mapping
/// (`read_only_map`); no mapping exists until one is asked for.
#[pyclass(frozen, module = "tensorseal._tensorseal")]
struct SafeFile {
    opened: tensorseal_format::PreadFile,
    path: PathBuf,
    cow: Mutex<CowState>,
    read_only: Mutex<Option<Py<Buffer>>>,
    /// Whether the data section looked cached when first asked
    /// ([`SafeFile::warm`]).
    warm: std::sync::OnceLock<bool>,
}

#[pymethods]
impl SafeFile {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let opened = detached(py, || read::open(&path))?;
        Ok(SafeFile {
            opened,
            path,
            cow: Mutex::new(CowState::default()),
            read_only: Mutex::new(None),
            warm: std::sync::OnceLock::new(),
        })
    }

    /// Tensor names, sorted.
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        // Sorted as borrowed names: no per-name copy before the Python strings.
        let mut names: Vec<&str> = self.opened.header().names().collect();
        names.sort_unstable();
        PyList::new(py, names)
    }

    /// Tensor names in file order (ascending offsets).
    fn offset_keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(
            py,
            self.opened
                .header()
                .tensors()
                .iter()
                .map(|(n, _)| n.as_str()),
        )
    }

    /// The `__metadata__` map, or None.
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        metadata(py, self.opened.header())
    }

    /// `(name, dtype, shape, start, end)` for every tensor, offsets into the file.
    fn entries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        entries(py, self.opened.header(), self.data_start())
    }

    /// `(dtype, shape, start, end)` of one tensor, offsets into the file.
    fn info(
        &self,
        py: Python<'_>,
        name: &str,
    ) -> PyResult<(&'static str, Vec<usize>, usize, usize)> {
        let info = self.opened.header().tensor(name).map_err(|e| {
            // The reference's message, which scripts look for.
            let err = SafetensorError::new_err(format!("File does not contain tensor {name}"));
            let _ = err.value(py).setattr("kind", e.kind());
            err
        })?;
        let base = self.data_start();
        Ok((
            info.dtype.as_str(),
            info.shape.clone(),
            base + info.data_offsets.0,
            base + info.data_offsets.1,
        ))
    }

    /// `(buffer, dtype, shape)`: tensor `name` read into memory of its own
    /// ([`SafeFile::read_range`] over its bytes) with what describes it, in
    /// one call: the per-tensor path of numpy `get_tensor`, where each
    /// crossing into the extension is a noticeable part of a small
    /// tensor's cost.
    fn read_tensor(
        &self,
        py: Python<'_>,
        name: &str,
    ) -> PyResult<(Buffer, &'static str, Vec<usize>)> {
        let (dtype, shape, start, end) = self.info(py, name)?;
        Ok((self.read_range(py, start, end, Some(name))?, dtype, shape))
    }

    /// Whether the file's data section looked fully cached the first time
    /// this was asked (16 sampled pages; the answer is kept for the
    /// handle). Slices of a warm file skip working out what to read
    /// ahead: a few microseconds per call that only a cold file repays.
    fn warm(&self) -> bool {
        *self.warm.get_or_init(|| {
            let start = self.data_start() as u64;
            let len = self.opened.header().data_len();
            buffer::file_cached(self.opened.file(), start, len)
        })
    }

    /// A fresh private copy-on-write mapping of the whole file (offsets as
    /// in `entries`). With `populate`, the data section is faulted in on
    /// several threads before returning (parallel read-ahead when the file
    /// is not cached). Every call maps anew, so tensors viewing one mapping
    /// can never change what a later call returns.
    #[pyo3(signature = (populate=false))]
    fn map_cow(&self, py: Python<'_>, populate: bool) -> PyResult<Buffer> {
        let file_len = self.file_len();
        let range = self.data_start()..file_len;
        let threads = read::default_threads();
        detached(py, || {
            Buffer::map_cow(
                self.opened.file(),
                0,
                file_len,
                populate.then_some((range, threads)),
            )
            .map_err(|e| FormatError::io(&self.path, e))
        })
    }

    /// `(buffer, start, end)`: tensor `name` as bytes `start..end` of a
    /// private copy-on-write mapping that has never handed this tensor out
    /// before. Tensors of one file share a mapping until one of them is
    /// asked for a second time; that request gets a fresh mapping (so a
    /// write through an earlier tensor can never show in a later one).
    /// Where the whole file cannot be mapped (ENOMEM under strict
    /// overcommit) only the tensor's own pages are mapped. With `populate`,
    /// a large tensor that is not cached is read ahead on several threads;
    /// `part` (a byte range of the tensor, e.g. the rows a slice selects)
    /// narrows what is read ahead to those bytes.
    #[pyo3(signature = (name, populate=true, part=None))]
    fn cow_tensor(
        &self,
        py: Python<'_>,
        name: &str,
        populate: bool,
        part: Option<(usize, usize)>,
    ) -> PyResult<(Py<Buffer>, usize, usize)> {
        let (_, _, start, end) = self.info(py, name)?;
        let threads = read::default_threads();
        // What to read ahead, relative to the tensor's first byte.
        let (lo, hi) = match part {
            Some((lo, hi)) if lo <= hi && hi <= end - start => (lo, hi),
            Some((lo, hi)) => {
                return Err(PyErr::new::<pyo3::exceptions::PyValueError, _>(format!(
                    "part {lo}..{hi} is outside tensor {name:?} of {} bytes",
                    end - start
                )))
            }
            None => (0, end - start),
        };
        // A file whose data section looked cached when first asked is not
        // probed again per tensor (16 mincore calls and an fstat: ~10 us a
        // tensor, measured as torch get_tensor of a cached 1 GiB file in 64
        // tensors 0.92x the reference).
        let populate = populate && hi - lo >= POPULATE_MIN && !self.warm();
        {
            let mut state = self.cow.lock().map_err(|_| poisoned())?;
            if let Some(map) = &state.map {
                if !state.served.contains(name) {
                    let map = map.clone_ref(py);
                    state.served.insert(name.to_owned());
                    drop(state);
                    if populate {
                        let b = map.get();
                        let file = self.opened.file();
                        let range = start + lo..start + hi;
                        // Probed with the GIL held (a few system calls);
                        // released only to read.
                        if !b.cached(file, range.clone()) {
                            py.detach(|| b.populate(range, threads));
                        }
                    }
                    return Ok((map, start, end));
                }
            }
        }
        // Map without holding the lock (the GIL is released meanwhile).
        let file_len = self.file_len();
        let file = self.opened.file();
        let mapped = py.detach(|| {
            Buffer::map_cow(
                file,
                0,
                file_len,
                populate.then_some((start + lo..start + hi, threads)),
            )
        });
        match mapped {
            Ok(buf) => {
                let map = Py::new(py, buf)?;
                let mut state = self.cow.lock().map_err(|_| poisoned())?;
                state.map = Some(map.clone_ref(py));
                state.served.clear();
                state.served.insert(name.to_owned());
                Ok((map, start, end))
            }
            Err(e) if e.raw_os_error() == Some(12) => {
                // ENOMEM: map only this tensor's bytes (charged only them).
                let buf = detached(py, || {
                    Buffer::map_cow(
                        file,
                        start as u64,
                        end - start,
                        populate.then_some((lo..hi, threads)),
                    )
                    .map_err(|e| FormatError::io(&self.path, e))
                })?;
                Ok((Py::new(py, buf)?, 0, end - start))
            }
            Err(e) => Err(to_py(py, FormatError::io(&self.path, e))),
        }
    }

    /// The whole file mapped read-only (one mapping per handle, made on
    /// first use); numpy arrays viewing it are read-only.
    fn read_only_map(&self, py: Python<'_>) -> PyResult<Py<Buffer>> {
        if let Some(map) = &*self.read_only.lock().map_err(|_| poisoned())? {
            return Ok(map.clone_ref(py));
        }
        let buf = detached(py, || {
            Buffer::map_read_only(self.opened.file()).map_err(|e| FormatError::io(&self.path, e))
        })?;
        let map = Py::new(py, buf)?;
        let mut slot = self.read_only.lock().map_err(|_| poisoned())?;
        Ok(slot.get_or_insert(map).clone_ref(py))
    }

    /// Reads bytes `start..end` of the file into memory of its own with
    /// positioned reads (no mapping, so a file truncated meanwhile is an
    /// error, never a crash). `name` names the tensor in the error.
    #[pyo3(signature = (start, end, name=None))]
    fn read_range(
        &self,
        py: Python<'_>,
        start: usize,
        end: usize,
        name: Option<&str>,
    ) -> PyResult<Buffer> {
        let file_len = self.file_len();
        if start > end || end > file_len {
            return Err(PyErr::new::<pyo3::exceptions::PyValueError, _>(format!(
                "range {start}..{end} is outside the file ({file_len} bytes)"
            )));
        }
        let file = self.opened.file();
        // Reads up to `HEAP_READ_MAX` (32 MiB) go into a heap block, split
        // over the plan's threads from 8 MiB; the plan probes the page
        // cache only for reads of 32 MiB or more.
        let plan = read::read_plan(file, start as u64, end - start, read::default_threads());
        let read = || Buffer::read_owned(file, start as u64, end - start, plan);
        // Small reads keep the GIL: releasing and retaking it costs more.
        let result = if end - start < SMALL_READ {
            read()
        } else {
            py.detach(read)
        };
        result.map_err(|e| {
            let what = match name {
                Some(n) => format!("tensor {n}"),
                None => format!("bytes {start}..{end}"),
            };
            // The reference's words: its `read_exact` fails with "failed to
            // fill whole buffer" on a short read, and quotes no path.
            let why = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "failed to fill whole buffer".to_owned()
            } else {
                e.to_string()
            };
            let err = SafetensorError::new_err(format!("Could not read {what} from file: {why}"));
            let _ = err.value(py).setattr("kind", "io");
            err
        })
    }
}

fn poisoned() -> PyErr {
    PyErr::new::<pyo3::exceptions::PyRuntimeError, _>("a thread panicked holding the file's lock")
}

impl SafeFile {
    fn data_start(&self) -> usize {
        self.opened.data_start()
    }

    fn file_len(&self) -> usize {
        self.data_start() + self.opened.header().data_len()
    }
}

/// Reads a whole file into one anonymous buffer with large positioned reads
/// on several threads. Returns `(entries, metadata, buffer)`; entry offsets
/// are relative to the buffer, which holds only the data section.
#[pyfunction]
#[pyo3(signature = (path, threads=None))]
fn read_file<'py>(
    py: Python<'py>,
    path: PathBuf,
    threads: Option<usize>,
) -> PyResult<(Bound<'py, PyList>, Option<Bound<'py, PyDict>>, Buffer)> {
    let threads = threads.unwrap_or_else(read::default_threads);
    let (header, buf) = detached(py, || {
        let opened = read::open(&path)?;
        let len = opened.header().data_len();
        let start = opened.data_start() as u64;
        let plan = read::read_plan(opened.file(), start, len, threads);
        let buf = Buffer::owned_with(len, |dst| {
            read::read_parallel(opened.file(), start, dst, plan)
        })
        .map_err(|e| FormatError::io(&path, e))?;
        Ok((opened.header().clone(), buf))
    })?;
    Ok((entries(py, &header, 0)?, metadata(py, &header)?, buf))
}

/// Parses safetensors bytes and copies the data section into one aligned
/// buffer. Returns `(entries, metadata, buffer)` like `read_file`.
#[pyfunction]
fn deserialize<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyList>, Option<Bound<'py, PyDict>>, Buffer)> {
    let view = InBuf::get(data)?;
    if !view.is_c_contiguous() {
        return Err(PyTypeError::new_err("expected contiguous bytes"));
    }
    let ptr = view.buf_ptr() as usize;
    let len = view.len_bytes();
    let (header, buf) = detached(py, || {
        // SAFETY: `view` holds the exporter's buffer (ptr, len) for as long as
        // it lives, which outlasts this closure; bytes are only read.
        let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
        let tensorseal_format::FilePrefix { header, data_start } = Header::parse_file_prefix(bytes)
            .map_err(|e| tensorseal_format::sniff::explain(e, bytes))?;
        let src = bytes.get(data_start..).unwrap_or_default();
        let buf = Buffer::owned_with(src.len(), |dst: &mut [u8]| {
            dst.copy_from_slice(src);
            Ok::<_, std::io::Error>(())
        })
        .map_err(|e| FormatError::io("<memory>", e))?;
        Ok((header, buf))
    })?;
    drop(view);
    Ok((entries(py, &header, 0)?, metadata(py, &header)?, buf))
}

/// Reads and bounds the header length from a file's first bytes (`prefix`:
/// 8 are needed; up to `sniff::SNIFF_LEN` name a file of another format),
/// for a file of `file_len` bytes. Used when reading a file through a Python
/// file object rather than a path.
#[pyfunction]
fn header_len(py: Python<'_>, prefix: &[u8], file_len: u64) -> PyResult<usize> {
    tensorseal_format::header::read_header_len(prefix, file_len)
        .map_err(|e| to_py(py, tensorseal_format::sniff::explain(e, prefix)))
}

/// Parses and validates header JSON bytes and checks that the data section
/// has `data_len` bytes. Returns `(entries, metadata)`, entry offsets
/// relative to the start of the data section.
#[pyfunction]
fn parse_header<'py>(
    py: Python<'py>,
    json: &[u8],
    data_len: u64,
) -> PyResult<(Bound<'py, PyList>, Option<Bound<'py, PyDict>>)> {
    let header = Header::parse(json)
        .and_then(|h| h.check_data_len(data_len).map(|()| h))
        .map_err(|e| to_py(py, e))?;
    Ok((entries(py, &header, 0)?, metadata(py, &header)?))
}

/// Where one tensor's bytes come from.
enum Source {
    /// A C-contiguous buffer holding exactly the tensor's bytes.
    Direct(InBuf),
    /// A callable returning an iterable of contiguous byte buffers, called
    /// when the tensor is written (bounded-memory conversion of
    /// non-contiguous or big-endian arrays).
    Chunks(Py<PyAny>),
}

type SpecTuple<'py> = (String, String, Vec<usize>, Bound<'py, PyAny>);

/// Validates the specs, computes the layout, and checks every direct
/// buffer's length. Returns the layout and `(name, source)` per spec.
fn prepare(
    py: Python<'_>,
    specs: Vec<SpecTuple<'_>>,
    metadata: Option<BTreeMap<String, String>>,
) -> PyResult<(Layout, Vec<(String, Source)>)> {
    let mut out = Vec::with_capacity(specs.len());
    let mut sources = Vec::with_capacity(specs.len());
    for (name, dtype, shape, data) in specs {
        let dtype = write_dtype(py, &name, &dtype)?;
        let source = if data.is_callable() {
            Source::Chunks(data.unbind())
        } else {
            let view = InBuf::get(&data)?;
            if !view.is_c_contiguous() {
                return Err(to_py(
                    py,
                    FormatError::InvalidWrite {
                        tensor: name,
                        reason: "data buffer is not contiguous".into(),
                    },
                ));
            }
            Source::Direct(view)
        };
        out.push(TensorSpec { name, dtype, shape });
        sources.push(source);
    }
    let layout = Layout::plan(&out, metadata.as_ref()).map_err(|e| to_py(py, e))?;
    let byte_lens: Vec<usize> = layout.offsets().iter().map(|r| r.len()).collect();
    for (i, (spec, src)) in out.iter().zip(&sources).enumerate() {
        if let Source::Direct(view) = src {
            if view.len_bytes() != byte_lens[i] {
                return Err(to_py(
                    py,
                    FormatError::InvalidWrite {
                        tensor: spec.name.clone(),
                        reason: format!(
                            "{} shape {:?} needs {} bytes but the data has {}",
                            spec.dtype,
                            spec.shape,
                            byte_lens[i],
                            view.len_bytes()
                        ),
                    },
                ));
            }
        }
    }
    let named = out.into_iter().map(|s| s.name).zip(sources).collect();
    Ok((layout, named))
}

/// Writes one tensor's bytes from its source.
fn write_source(
    out: &mut (dyn Write + Send),
    src: &Source,
    name: &str,
    expected: usize,
) -> Result<(), WriteError> {
    match src {
        Source::Direct(view) => {
            // SAFETY: `prepare` checked that the buffer is C-contiguous;
            // the `InBuf` keeps the exporter's memory valid until after the
            // write. The bytes are only read. Concurrent mutation by another
            // Python thread is the caller's responsibility, as with the
            // reference.
            let bytes = unsafe { view.as_slice() };
            out.write_all(bytes).map_err(WriteError::Io)
        }
        Source::Chunks(callable) => {
            let mut written = 0usize;
            Python::attach(|py| -> Result<(), WriteError> {
                let iter = callable.bind(py).call0()?.try_iter()?;
                for chunk in iter {
                    let chunk = chunk?;
                    let view = InBuf::get(&chunk)?;
                    if !view.is_c_contiguous() {
                        return Err(WriteError::Format(FormatError::InvalidWrite {
                            tensor: name.to_owned(),
                            reason: "a data chunk is not contiguous".into(),
                        }));
                    }
                    let ptr = view.buf_ptr() as usize;
                    let len = view.len_bytes();
                    written = written.saturating_add(len);
                    if written > expected {
                        break;
                    }
                    py.detach(|| {
                        // SAFETY: as above; `view` outlives this closure.
                        let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
                        out.write_all(bytes)
                    })
                    .map_err(WriteError::Io)?;
                }
                Ok(())
            })?;
            if written != expected {
                return Err(WriteError::Format(FormatError::InvalidWrite {
                    tensor: name.to_owned(),
                    reason: format!("expected {expected} bytes of data, got {written}"),
                }));
            }
            Ok(())
        }
    }
}

enum WriteError {
    Io(std::io::Error),
    Format(FormatError),
    Py(PyErr),
}

impl From<PyErr> for WriteError {
    fn from(e: PyErr) -> Self {
        WriteError::Py(e)
    }
}

impl WriteError {
    fn into_py(self, py: Python<'_>, path: &str) -> PyErr {
        match self {
            WriteError::Io(e) => to_py(py, FormatError::io(path, e)),
            WriteError::Format(e) => to_py(py, e),
            WriteError::Py(e) => e,
        }
    }
}

/// Writes the header and every tensor in file order.
fn write_all(
    out: &mut (dyn Write + Send),
    layout: &Layout,
    sources: &[(String, Source)],
) -> Result<(), WriteError> {
    out.write_all(layout.header_bytes())
        .map_err(WriteError::Io)?;
    for &i in layout.order() {
        let (name, src) = &sources[i];
        write_source(out, src, name, layout.offsets()[i].len())?;
    }
    Ok(())
}

/// Serializes tensors to `bytes`.
///
/// `specs` is a list of `(name, dtype, shape, data)` where dtype is a
/// safetensors code (`"F32"`) and data is either a C-contiguous buffer of
/// exactly the tensor's bytes or a callable returning an iterable of such
/// buffers. Metadata keys are written sorted (the core's rule), so output
/// is deterministic.
#[pyfunction]
#[pyo3(signature = (specs, metadata=None))]
fn serialize<'py>(
    py: Python<'py>,
    specs: Vec<SpecTuple<'py>>,
    metadata: Option<BTreeMap<String, String>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let (layout, sources) = prepare(py, specs, metadata)?;
    let mut failure = None;
    let bytes = PyBytes::new_with(py, layout.file_len(), |buf: &mut [u8]| {
        // The copies run without the GIL; chunk callables take it back.
        let result = py.detach(|| {
            let mut out = buf;
            write_all(&mut out, &layout, &sources)
        });
        if let Err(e) = result {
            failure = Some(e);
        }
        Ok(())
    })?;
    match failure {
        Some(e) => Err(e.into_py(py, "<memory>")),
        None => Ok(bytes),
    }
}

/// Serializes tensors straight into a file (written under a temporary name,
/// then renamed over `path`), streaming each tensor's memory to the file.
/// Same `specs` as `serialize`.
#[pyfunction]
#[pyo3(signature = (specs, path, metadata=None))]
fn serialize_file(
    py: Python<'_>,
    specs: Vec<SpecTuple<'_>>,
    path: PathBuf,
    metadata: Option<BTreeMap<String, String>>,
) -> PyResult<()> {
    let (layout, sources) = prepare(py, specs, metadata)?;
    let display = path.display().to_string();
    py.detach(|| -> Result<(), WriteError> {
        // Atomic (temporary file, then rename) but not fsynced, like the
        // reference's `save_file`: the OS writes the data back.
        let mut file =
            AtomicFile::create_with(&path, Durability::NoSync).map_err(WriteError::Format)?;
        write_all(&mut file, &layout, &sources)?;
        file.commit().map_err(WriteError::Format)
    })
    .map_err(|e| e.into_py(py, &display))
}

/// Runs the `tensorseal` command line `argv` (`argv[0]` is the program
/// name) as the standalone binary does, without the GIL, and returns its
/// exit code: the `tensorseal` console script and `python -m tensorseal`.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<std::ffi::OsString>) -> u8 {
    py.detach(|| tensorseal::run(argv))
}

/// The native module.
#[pymodule]
fn _tensorseal(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("SafetensorError", m.py().get_type::<SafetensorError>())?;
    m.add_class::<SafeFile>()?;
    m.add_class::<Buffer>()?;
    // Whether `Buffer` exports the buffer protocol (not in the stable-ABI
    // build, for CPython 3.9 and 3.10; `tensorseal._raw.exported`).
    m.add("BUFFER_PROTOCOL", !cfg!(feature = "abi3"))?;
    m.add_class::<stream::Stream>()?;
    m.add_function(wrap_pyfunction!(read_file, m)?)?;
    m.add_function(wrap_pyfunction!(deserialize, m)?)?;
    m.add_function(wrap_pyfunction!(serialize, m)?)?;
    m.add_function(wrap_pyfunction!(serialize_file, m)?)?;
    m.add_function(wrap_pyfunction!(header_len, m)?)?;
    m.add_function(wrap_pyfunction!(parse_header, m)?)?;
    quant::register(m)?;
    parallel::register(m)?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    Ok(())
}
