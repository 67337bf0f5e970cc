//! Memory that tensors handed to Python point into.
//!
//! A [`Buffer`] owns one region (a private file mapping, or an anonymous
//! mapping filled by reads) and exposes it through the Python buffer
//! protocol. numpy arrays (`np.frombuffer`) and torch tensors
//! (`torch.frombuffer`) built on it hold a reference to the `Buffer`, so the
//! memory lives exactly as long as the last array or tensor that views it.

use std::ffi::c_int;
use std::fs::File;

use memmap2::{MmapMut, MmapOptions};
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;

/// What keeps a [`Buffer`]'s memory alive.
enum Owner {
    /// A copy-on-write (`MAP_PRIVATE`) mapping of a file.
    Map(#[allow(dead_code)] MmapMut),
    /// Anonymous memory (transparent huge pages where the OS allows).
    Anon(#[allow(dead_code)] MmapMut),
    /// Nothing: the region is empty.
    Empty,
}

/// A region of memory shared with Python through the buffer protocol.
#[pyclass(frozen, module = "tensorseal._tensorseal")]
pub struct Buffer {
    /// Start of the region; derived from the owner's `&mut` access at
    /// construction and never turned back into a Rust reference afterwards,
    /// so writes made by Python through the buffer protocol do not alias any
    /// Rust reference.
    ptr: *mut u8,
    len: usize,
    owner: Owner,
}

// SAFETY: `Buffer` is an owned region plus a raw pointer into it. The memory
// is never freed or moved while the `Buffer` exists (the owner is dropped
// with it), and Rust code never reads or writes the region through `&self`
// after construction; all access goes through the Python buffer protocol,
// whose concurrent use is the Python program's business (exactly as for a
// `bytearray`). Sending or sharing the handle between threads is therefore
// sound.
unsafe impl Send for Buffer {}
// SAFETY: see `Send` above; `&Buffer` only hands out the raw pointer.
unsafe impl Sync for Buffer {}

impl Buffer {
    /// Maps `file` privately (copy-on-write): the memory is writable, writes
    /// never reach the file.
    pub fn map_file(file: &File) -> std::io::Result<Buffer> {
        // SAFETY: mapping a file is unsafe because another process could
        // truncate or modify it while mapped (the same caveat as every mmap
        // reader, the reference implementation included). We map privately,
        // so our own writes never reach the file; the header was validated
        // against the file length before mapping.
        let mut map = unsafe { MmapOptions::new().map_copy(file)? };
        let ptr = map.as_mut_ptr();
        let len = map.len();
        Ok(Buffer {
            ptr,
            len,
            owner: Owner::Map(map),
        })
    }

    /// Allocates `len` bytes of zeroed anonymous memory and lets `fill`
    /// write it before it becomes visible to Python.
    pub fn anon_with<E>(
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<Buffer, E>
    where
        E: From<std::io::Error>,
    {
        if len == 0 {
            fill(&mut [])?;
            return Ok(Buffer {
                ptr: std::ptr::NonNull::<u64>::dangling().as_ptr().cast(),
                len: 0,
                owner: Owner::Empty,
            });
        }
        let mut map = MmapOptions::new().len(len).map_anon()?;
        #[cfg(target_os = "linux")]
        if huge_pages_wanted() {
            // Transparent huge pages: 512x fewer page faults when the reads
            // fill the buffer. Refused on some kernels/configs; that is fine.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        if prefault_wanted() {
            // Opt-in: fault the pages in here, one store per 4 KiB, before
            // the reads fill them. On a quiet machine this made loads 2-9x
            // slower than letting the kernel take the faults inside the
            // reads' copies (BENCHMARKS.md, "Python package"), so it is off
            // by default.
            for i in (0..len).step_by(4096) {
                map[i] = 0;
            }
        }
        fill(&mut map[..])?;
        let ptr = map.as_mut_ptr();
        Ok(Buffer {
            ptr,
            len,
            owner: Owner::Anon(map),
        })
    }

    /// Address of the first byte (for diagnostics and zero-copy tests).
    pub fn addr(&self) -> usize {
        self.ptr as usize
    }
}

/// Huge pages are advised unless `TENSORSEAL_HUGEPAGES=0`.
#[cfg(target_os = "linux")]
fn huge_pages_wanted() -> bool {
    std::env::var_os("TENSORSEAL_HUGEPAGES").is_none_or(|v| v != "0")
}

/// Pages are faulted in before reading only with `TENSORSEAL_PREFAULT=1`.
fn prefault_wanted() -> bool {
    std::env::var_os("TENSORSEAL_PREFAULT").is_some_and(|v| v == "1")
}

#[pymethods]
impl Buffer {
    /// Number of bytes.
    fn __len__(&self) -> usize {
        self.len
    }

    /// Address of the first byte of the region.
    #[getter]
    fn address(&self) -> usize {
        self.addr()
    }

    /// `"mmap"` for a private file mapping, `"memory"` for anonymous memory.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.owner {
            Owner::Map(_) => "mmap",
            Owner::Anon(_) | Owner::Empty => "memory",
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "<tensorseal Buffer kind={} len={} at {:#x}>",
            self.kind(),
            self.len,
            self.addr()
        )
    }

    /// Exposes the region as a writable, contiguous byte buffer.
    ///
    /// # Safety
    /// Called by the interpreter with a valid `view` pointer.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("view is null"));
        }
        let this = slf.get();
        let len = ffi::Py_ssize_t::try_from(this.len)
            .map_err(|_| PyBufferError::new_err("buffer too large"))?;
        // SAFETY: `view` is the non-null Py_buffer the interpreter passed;
        // PyBuffer_FillInfo stores a new reference to `slf` in it (keeping
        // the memory alive until the view is released) and describes `len`
        // writable bytes at `ptr`, which this object owns.
        let rc =
            unsafe { ffi::PyBuffer_FillInfo(view, slf.as_ptr(), this.ptr.cast(), len, 0, flags) };
        if rc != 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    /// Nothing to release: the memory lives as long as the object.
    ///
    /// # Safety
    /// Called by the interpreter.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}
