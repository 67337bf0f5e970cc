"""The reference's low-level, framework-free API: ``TensorSpec``,
``serialize``, ``serialize_file`` and ``deserialize``.

``serialize`` reads each tensor from a raw address (``TensorSpec.data_ptr``),
exactly like ``safetensors.serialize`` 0.8: the caller promises that
``data_len`` bytes are readable there for the duration of the call. The
bytes are read through ctypes; a wrong address crashes the process, as it
would with the reference. Prefer ``tensorseal.numpy`` / ``tensorseal.torch``,
which take arrays and tensors and need no such promise.
"""

from __future__ import annotations

import operator

# typing costs milliseconds to import; annotations are strings here.
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    import os
    from typing import Dict, List, Optional, Sequence, Tuple, Union

from . import _dtypes
from . import _tensorseal
from ._tensorseal import SafetensorError
from ._tensorseal import deserialize as _deserialize
from ._tensorseal import serialize as _serialize
from ._errors import serialize_file as _serialize_file

#: framework-style dtype name (``"float32"``) -> safetensors code (``"F32"``).
_CODES = {name: code for code, name in _dtypes._TORCH_NAMES.items()}


def memory_at(address: int, n: int, owner: object = None) -> memoryview:
    """The ``n`` bytes at ``address`` as a flat byte memoryview, without
    copying, keeping ``owner`` (whatever owns that memory) alive as long as
    the view. The caller vouches for the address; ``n`` must be positive.
    (ctypes keeps one array type per distinct length, as the reference's
    ``np.ctypeslib.as_array`` does.)"""
    import ctypes  # on first use: importing it costs milliseconds

    mem = (ctypes.c_ubyte * n).from_address(address)
    mem.owner = owner
    return memoryview(mem).cast("B")  # holds `mem`, which holds `owner`


#: Whether ``_tensorseal.Buffer`` exports the buffer protocol: not in the
#: stable-ABI (``abi3``) wheel, built for CPython >= 3.9, whose limited API
#: has no buffer protocol before 3.11.
_NATIVE_BUFFERS = getattr(_tensorseal, "BUFFER_PROTOCOL", True)


def exported(buf):
    """``buf`` as an object with the buffer protocol, without copying:
    ``buf`` itself, except a ``_tensorseal.Buffer`` in the stable-ABI build,
    which becomes a ctypes array at its address (a read-only memoryview of
    one if the buffer is read-only) that keeps it alive."""
    if _NATIVE_BUFFERS or type(buf) is not _tensorseal.Buffer:
        return buf
    n = len(buf)
    if n == 0:
        return b""
    import ctypes  # on first use, as in memory_at

    # The ctypes array itself exports the buffer protocol: no memoryview on
    # top of it while writable (a few hundred bytes less per small tensor).
    mem = (ctypes.c_ubyte * n).from_address(buf.address)
    mem.owner = buf
    return memoryview(mem).toreadonly() if buf.readonly else mem


def _address_of(obj):
    """``(address, nbytes, c_contiguous, readonly, keep)`` for the memory of
    a buffer-protocol object, ``keep`` keeping it alive and in place; called
    by the stable-ABI build (``src/inbuf.rs``), which cannot ask for the
    buffer itself before CPython 3.11. Writable memory is located through
    ctypes, read-only memory through numpy; without numpy a read-only buffer
    is copied (``keep`` is then that ``bytes`` copy)."""
    m = memoryview(obj)
    n = m.nbytes
    if n == 0 or not m.c_contiguous:
        return 0, n, m.c_contiguous, m.readonly, m
    m = m.cast("B")
    if not m.readonly:
        import ctypes

        # Holds an export of `m` (so `obj` cannot be resized or freed).
        c = (ctypes.c_ubyte * n).from_buffer(m)
        return ctypes.addressof(c), n, True, False, c
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is there in practice
        return 0, n, True, True, m.tobytes()
    a = np.frombuffer(m, dtype=np.uint8)
    return a.__array_interface__["data"][0], n, True, True, a


class TensorSpec:
    """One tensor for :func:`serialize` / :func:`serialize_file`: a dtype
    name (``"float32"``, ``"bfloat16"``, ``"float4_e2m1fn_x2"``, …), a
    shape, and ``data_len`` bytes at address ``data_ptr``.

    The dtype is checked here (``SafetensorError`` if unknown). For
    ``float4_e2m1fn_x2``, whose frameworks count two values per byte, the
    last dimension of ``shape`` is doubled, so that :attr:`shape` is always
    the element shape written in the header.
    """

    __slots__ = ("_dtype", "_shape", "_data_ptr", "_data_len")

    def __init__(self, *, dtype: str, shape: Sequence[int], data_ptr: int, data_len: int) -> None:
        code = _CODES.get(dtype) if isinstance(dtype, str) else None
        if code is None:
            raise SafetensorError(
                f"Unknown dtype {dtype!r}. Supported dtypes: {', '.join(_CODES)}"
            )
        dims = [operator.index(d) for d in shape]
        if any(d < 0 for d in dims):
            raise SafetensorError(f"shape {dims} has a negative dimension")
        if code == "F4":
            if not dims:
                raise SafetensorError("a 0-d float4_e2m1fn_x2 tensor cannot be described")
            dims[-1] *= 2
        ptr, n = operator.index(data_ptr), operator.index(data_len)
        if ptr < 0 or n < 0:
            raise SafetensorError(f"data_ptr {ptr} and data_len {n} must not be negative")
        if ptr == 0 and n > 0:
            raise SafetensorError(f"data_ptr is null for {n} bytes")
        self._dtype, self._shape, self._data_ptr, self._data_len = code, dims, ptr, n

    @property
    def dtype(self) -> str:
        """The safetensors code written in the header, e.g. ``"F32"``."""
        return self._dtype

    @property
    def shape(self) -> List[int]:
        """The element shape written in the header."""
        return list(self._shape)

    @property
    def data_ptr(self) -> int:
        """Address of the tensor's first byte."""
        return self._data_ptr

    @property
    def data_len(self) -> int:
        """Number of bytes at :attr:`data_ptr`."""
        return self._data_len

    def __repr__(self) -> str:
        return (
            f"TensorSpec(dtype={self._dtype!r}, shape={self._shape}, "
            f"data_ptr={self._data_ptr}, data_len={self._data_len})"
        )

    def _memory(self):
        if self._data_len == 0:
            return b""
        return memory_at(self._data_ptr, self._data_len)


def _specs(tensor_dict: Dict[str, TensorSpec]) -> List[Tuple[str, str, List[int], object]]:
    if not isinstance(tensor_dict, dict):
        raise TypeError(f"expected a dict of str to TensorSpec, not {type(tensor_dict).__name__}")
    out = []
    for name, spec in tensor_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be str, not {type(name).__name__}: {name!r}")
        if not isinstance(spec, TensorSpec):
            raise TypeError(f"tensor {name!r}: expected a TensorSpec, not {type(spec).__name__}")
        out.append((name, spec._dtype, list(spec._shape), spec._memory()))
    return out


def serialize(tensor_dict: Dict[str, TensorSpec], metadata: Optional[Dict[str, str]] = None) -> bytes:
    """safetensors bytes for the described tensors (byte-identical to
    ``safetensors.serialize`` with at most one metadata entry)."""
    return _serialize(_specs(tensor_dict), metadata)


def serialize_file(
    tensor_dict: Dict[str, TensorSpec],
    filename: Union[str, "os.PathLike[str]"],
    metadata: Optional[Dict[str, str]] = None,
) -> None:
    """Writes the described tensors to ``filename`` (a temporary file renamed
    into place when complete)."""
    _serialize_file(_specs(tensor_dict), filename, metadata)


def deserialize(data: bytes):
    """Parses safetensors bytes into ``[(name, {"dtype", "shape", "data"})]``.

    Same result as ``safetensors.deserialize``: tensors in file order,
    ``dtype`` a code such as ``"F32"``, ``data`` a ``bytearray`` of the raw
    little-endian bytes.
    """
    entries, _metadata, buf = _deserialize(data)
    mem = memoryview(exported(buf))
    return [
        (name, {"dtype": dtype, "shape": shape, "data": bytearray(mem[start:end])})
        for name, dtype, shape, start, end in entries
    ]
