"""``_safe_open_handle``: ``safe_open`` over an open Python file object.

Two cases:

* a file object with a working ``fileno()`` (``open()``, fsspec's local
  files): the same file is opened again through ``/proc/self/fd`` where the
  OS has it (so a file renamed or deleted since is still the one read), else
  through its ``name``, and everything works as with ``safe_open``;
* any other seekable binary file object (``io.BytesIO``, fsspec files on
  object stores, which have no descriptor): only the header is read when
  opening, and each tensor, or the rows of it a slice needs, is read with
  ``seek`` + ``read`` when asked for. The reference needs a ``fileno`` and
  a ``name`` and refuses these.

The file object is not closed, and must stay open while tensors are read.
"""

from __future__ import annotations

import io
import os
import threading
from typing import Any, Dict, List, Optional, Tuple

from ._errors import InvalidArgumentError, header_error, io_error
from ._open import check_backend, safe_open
from ._tensorseal import SafetensorError
from ._tensorseal import header_len as _header_len
from ._tensorseal import parse_header as _parse_header


def _descriptor(f: Any) -> Optional[int]:
    try:
        fd = f.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def _reopen_path(f: Any, fd: int):
    proc = f"/proc/self/fd/{fd}"
    if os.path.exists(proc):
        return proc
    name = getattr(f, "name", None)
    if isinstance(name, (str, bytes, os.PathLike)):
        return name
    return None


class _StreamFile:
    """Stands in for the native ``SafeFile`` over a file object without a
    descriptor: the validated header, and ``read_range`` through
    ``seek``/``read``. It has no ``buffer``: reads always copy."""

    def __init__(self, f: Any):
        self._f = f
        self._lock = threading.Lock()
        for attr in ("seek", "read"):
            if not callable(getattr(f, attr, None)):
                raise InvalidArgumentError(f"expected a binary file object with seek() and read(), got {type(f).__name__}")
        size = f.seek(0, io.SEEK_END)
        if not isinstance(size, int):
            size = f.tell()
        self._size = size
        # 8 bytes hold the header length; the first 512 also let a file of
        # another format (a torch checkpoint, ...) be named in the error.
        prefix = self._read(0, min(512, size), exact=False)
        try:
            n = _header_len(prefix, size)
            entries, self._metadata = _parse_header(self._read(8, n), size - 8 - n)
        except SafetensorError as e:
            raise header_error(e) from None
        base = 8 + n
        self._entries = [(name, dt, shape, s + base, e + base) for name, dt, shape, s, e in entries]
        self._by_name = {e[0]: e[1:] for e in self._entries}

    def _read(self, start: int, n: int, exact: bool = True) -> bytes:
        with self._lock:
            self._f.seek(start)
            data = self._f.read(n)
        if isinstance(data, str):
            raise InvalidArgumentError("the file object is in text mode; open it with 'rb'")
        if exact and len(data) != n:
            raise EOFError("failed to fill whole buffer")
        return data

    def keys(self) -> List[str]:
        return sorted(self._by_name)

    def offset_keys(self) -> List[str]:
        return [e[0] for e in self._entries]

    def metadata(self) -> Optional[Dict[str, str]]:
        return None if self._metadata is None else dict(self._metadata)

    def entries(self) -> List[Tuple[str, str, List[int], int, int]]:
        return [(n, d, list(s), a, b) for n, d, s, a, b in self._entries]

    def info(self, name: str) -> Tuple[str, List[int], int, int]:
        try:
            dt, shape, start, end = self._by_name[name]
        except KeyError:
            # The message and kind the native SafeFile gives.
            e = SafetensorError(f"File does not contain tensor {name}")
            e.kind = "tensor_not_found"
            raise e from None
        return dt, list(shape), start, end

    def read_range(self, start: int, end: int, name: Optional[str] = None) -> bytearray:
        # ``name`` names the tensor in errors, as the native SafeFile's does.
        try:
            return bytearray(self._read(start, end - start))
        except EOFError as e:
            raise io_error(OSError(str(e)), str(e)) from None


class _safe_open_handle(safe_open):
    """Like :class:`safe_open`, over an open file object instead of a path.

    Args:
        f: a file object: one from ``open()`` (any mode) or fsspec, or any
            seekable binary stream with ``seek`` and ``read``.
        framework, device, backend: as for :class:`safe_open`. A stream
            without a file descriptor is always read with positioned reads
            (``backend`` has no effect there).
    """

    def __init__(
        self, f: Any, framework: str, device: Any = "cpu", *, backend: str = "mmap", copy: Optional[bool] = None
    ):
        fd = _descriptor(f)
        path = _reopen_path(f, fd) if fd is not None else None
        if path is not None:
            super().__init__(path, framework, device, backend=backend, copy=copy)
            return
        self._set_framework(framework, device)
        check_backend(backend)
        self._backend = "pread"
        self._copy = True  # a stream is always read into memory of the result's own
        self._file = _StreamFile(f)  # type: ignore[assignment]
