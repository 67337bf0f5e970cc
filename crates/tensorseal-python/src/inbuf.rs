//! Read access to a caller's bytes (`bytes`, `bytearray`, numpy arrays,
//! memoryviews) in place, without a copy.
//!
//! The default, version-specific build takes them through the buffer
//! protocol (`PyBuffer`). The stable-ABI build (feature `abi3`, for
//! CPython 3.9 and later) cannot: `PyObject_GetBuffer` joined the limited
//! API only in 3.11. There `bytes` is read through its own (limited) C API,
//! and any other object through `tensorseal._raw._address_of`, which finds
//! the address of its memory in Python (ctypes for writable buffers, numpy
//! for read-only ones) and returns an object that keeps that memory alive
//! and in place.

use pyo3::prelude::*;

/// A caller's bytes, pinned in place while this lives.
pub struct InBuf {
    #[cfg(not(feature = "abi3"))]
    view: pyo3::buffer::PyBuffer<u8>,
    #[cfg(feature = "abi3")]
    fallback: Fallback,
}

#[cfg(feature = "abi3")]
struct Fallback {
    /// Address of the first byte (a `usize` so that `InBuf` is `Send`).
    addr: usize,
    len: usize,
    contiguous: bool,
    readonly: bool,
    /// What keeps the memory alive and in place (the object itself for
    /// `bytes`, a memoryview export otherwise).
    _keep: Py<PyAny>,
}

impl InBuf {
    /// The buffer of `obj`; a `TypeError` if it has none.
    #[cfg(not(feature = "abi3"))]
    pub fn get(obj: &Bound<'_, PyAny>) -> PyResult<InBuf> {
        Ok(InBuf {
            view: pyo3::buffer::PyBuffer::<u8>::get(obj)?,
        })
    }

    /// The buffer of `obj`; a `TypeError` if it has none.
    #[cfg(feature = "abi3")]
    pub fn get(obj: &Bound<'_, PyAny>) -> PyResult<InBuf> {
        // `bytes` is immutable and never moves: read in place through its
        // own (limited) C API.
        let of_bytes = |obj: &Bound<'_, PyAny>| {
            obj.cast::<pyo3::types::PyBytes>().ok().map(|b| {
                let bytes = b.as_bytes();
                InBuf::fallback(bytes.as_ptr() as usize, bytes.len(), true, true, obj)
            })
        };
        if let Some(buf) = of_bytes(obj) {
            return Ok(buf);
        }
        let found = obj
            .py()
            .import("tensorseal._raw")?
            .getattr("_address_of")?
            .call1((obj,))?;
        let (addr, len, contiguous, readonly, keep): (usize, usize, bool, bool, Bound<'_, PyAny>) =
            found.extract()?;
        // A read-only buffer comes back copied to `bytes` where numpy is
        // unavailable.
        Ok(of_bytes(&keep)
            .unwrap_or_else(|| InBuf::fallback(addr, len, contiguous, readonly, &keep)))
    }

    #[cfg(feature = "abi3")]
    fn fallback(
        addr: usize,
        len: usize,
        contiguous: bool,
        readonly: bool,
        keep: &Bound<'_, PyAny>,
    ) -> InBuf {
        InBuf {
            fallback: Fallback {
                addr,
                len,
                contiguous,
                readonly,
                _keep: keep.clone().unbind(),
            },
        }
    }

    /// Address of the first byte.
    pub fn buf_ptr(&self) -> *mut u8 {
        #[cfg(not(feature = "abi3"))]
        return self.view.buf_ptr().cast();
        #[cfg(feature = "abi3")]
        return self.fallback.addr as *mut u8;
    }

    /// Number of bytes.
    pub fn len_bytes(&self) -> usize {
        #[cfg(not(feature = "abi3"))]
        return self.view.len_bytes();
        #[cfg(feature = "abi3")]
        return self.fallback.len;
    }

    /// Whether the bytes are C-contiguous (only then are `buf_ptr` and
    /// `len_bytes` the whole of them).
    pub fn is_c_contiguous(&self) -> bool {
        #[cfg(not(feature = "abi3"))]
        return self.view.is_c_contiguous();
        #[cfg(feature = "abi3")]
        return self.fallback.contiguous;
    }

    /// Whether the exporter forbids writes.
    pub fn readonly(&self) -> bool {
        #[cfg(not(feature = "abi3"))]
        return self.view.readonly();
        #[cfg(feature = "abi3")]
        return self.fallback.readonly;
    }

    /// The bytes, for reading.
    ///
    /// # Safety
    /// The buffer must be C-contiguous, and nothing may write to it while
    /// the slice lives (as with the reference, concurrent mutation by
    /// another Python thread is the caller's business).
    pub unsafe fn as_slice(&self) -> &[u8] {
        if self.len_bytes() == 0 {
            return &[];
        }
        // SAFETY: `self` keeps the exporter's memory (buf_ptr, len_bytes)
        // alive and in place while it lives (a held buffer export, or the
        // immutable `bytes` object); the caller guarantees contiguity and
        // no concurrent writes.
        unsafe { std::slice::from_raw_parts(self.buf_ptr().cast_const(), self.len_bytes()) }
    }
}
