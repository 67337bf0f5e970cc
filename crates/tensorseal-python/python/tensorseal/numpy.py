"""numpy helpers: ``load_file``, ``save_file``, ``load``, ``save``.

Same signatures and results as ``safetensors.numpy``, with these
differences: arrays in any memory order (Fortran-ordered, strided views) and
big-endian arrays are written with their correct values, converted in
bounded chunks; ``load_file`` reads the file with large parallel reads into
one buffer instead of copying it tensor by tensor.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from . import _dtypes
from ._open import copy_mode, numpy_view, safe_open
from ._raw import exported
from ._tensorseal import SafetensorError
from ._tensorseal import deserialize as _deserialize
from ._errors import read_file as _read_file
from ._tensorseal import serialize as _serialize
from ._errors import serialize_file as _serialize_file

__all__ = ["load", "load_file", "save", "save_file"]

#: Bytes converted at a time when an array must be reordered or byte-swapped.
_CHUNK = 16 << 20


def _chunks(arr: np.ndarray, dtype: np.dtype):
    """A callable yielding the C-order little-endian bytes of ``arr`` in
    pieces of about ``_CHUNK`` bytes (so memory stays bounded)."""

    def gen():
        if arr.ndim == 0 or arr.shape[0] <= 1 or arr.nbytes <= _CHUNK:
            yield np.ascontiguousarray(arr, dtype=dtype).reshape(-1).view(np.uint8)
            return
        row = max(arr.nbytes // arr.shape[0], 1)
        step = max(_CHUNK // row, 1)
        for i in range(0, arr.shape[0], step):
            yield np.ascontiguousarray(arr[i : i + step], dtype=dtype).reshape(-1).view(np.uint8)

    return gen


def _specs(tensor_dict: Dict[str, np.ndarray]) -> List[Tuple[str, str, List[int], object]]:
    if not isinstance(tensor_dict, dict):
        raise ValueError(f"Expected a dict of [str, np.ndarray] but received {type(tensor_dict)}")
    specs = []
    for name, arr in tensor_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be str, not {type(name).__name__}: {name!r}")
        if not isinstance(arr, np.ndarray):
            raise ValueError(f"Key `{name}` is invalid, expected np.ndarray but received {type(arr)}")
        if type(arr) is not np.ndarray:
            # Subclasses (masked arrays, memmaps, matrices): their data, as
            # the reference saves it (a mask is not part of the format).
            arr = np.asarray(arr)
        code = _dtypes.numpy_code(arr.dtype, name)
        if _dtypes.needs_swap(arr.dtype):
            data = _chunks(arr, arr.dtype.newbyteorder("<"))
        elif arr.flags.c_contiguous:
            data = arr.reshape(-1).view(np.uint8)
        else:
            data = _chunks(arr, arr.dtype)
        specs.append((name, code, list(arr.shape), data))
    return specs


def save(tensor_dict: Dict[str, np.ndarray], metadata: Optional[Dict[str, str]] = None) -> bytes:
    """Serializes a dict of arrays to safetensors bytes.

    Byte-identical to ``safetensors.numpy.save`` (with at most one metadata
    entry; with several, ours writes the keys sorted, the reference in hash
    order).
    """
    return _serialize(_specs(tensor_dict), metadata)


def save_file(
    tensor_dict: Dict[str, np.ndarray],
    filename: Union[str, "os.PathLike[str]"],
    metadata: Optional[Dict[str, str]] = None,
) -> None:
    """Writes a dict of arrays to ``filename``, streaming each array's memory
    into a temporary file that is renamed over ``filename`` when complete."""
    _serialize_file(_specs(tensor_dict), filename, metadata)


def _views(buf, entries) -> Dict[str, np.ndarray]:
    """Arrays viewing their bytes of one buffer: one ``np.frombuffer`` for
    all of them (slicing an array costs less than exporting the buffer
    again per tensor)."""
    whole = np.frombuffer(exported(buf), dtype=np.uint8)
    dtype_of = _dtypes.numpy_dtype
    out = {}
    for name, code, shape, start, end in entries:
        dt = dtype_of(code, name)
        out[name] = whole[start:end].view(dt).reshape(shape) if end > start else np.empty(shape, dtype=dt)
    return out


def load(data: bytes) -> Dict[str, np.ndarray]:
    """Loads safetensors bytes into a dict of (writable) arrays."""
    entries, _metadata, buf = _deserialize(data)
    return _views(buf, entries)


def load_file(
    filename: Union[str, "os.PathLike[str]"],
    *,
    backend: Optional[str] = "mmap",
    copy: Optional[bool] = None,
) -> Dict[str, np.ndarray]:
    """Loads every tensor of ``filename`` into memory, as numpy arrays.

    The arrays are copies, as the reference's are (nothing done to the file
    afterwards affects them): the file is read with large positioned reads
    on several threads into one buffer of the process's own that the
    arrays view. ``backend`` (``"mmap"`` or
    ``"pread"``) is accepted for compatibility and gives the same arrays.
    ``copy=False`` (with ``"mmap"``) asks for zero-copy, read-only views of
    a read-only mapping of the file instead: lazy, but a file truncated
    while they live makes touching them crash the process (SIGBUS).
    """
    backend = "mmap" if backend is None else backend
    if not copy_mode("np", backend, copy):
        with safe_open(filename, framework="np", backend=backend, copy=False) as f:
            return f.get_tensors()
    entries, _metadata, buf = _read_file(filename)
    return _views(buf, entries)


# Re-exported for code that catches it from here.
SafetensorError = SafetensorError


# --- the reference's private names ----------------------------------------------
#
# Some libraries import private names from ``safetensors.numpy``; the same
# names here keep that code working when it imports tensorseal instead.


def _types() -> Dict[str, np.dtype]:
    """``_TYPES``: safetensors dtype code -> numpy dtype, for the codes numpy
    has (with ``ml_dtypes`` installed, BF16 and the FP8 codes too). Built on
    first use rather than at import, because building it imports ml_dtypes."""
    types = globals().get("_TYPES")
    if types is None:
        types = globals()["_TYPES"] = _dtypes.numpy_types()
    return types


def __getattr__(name: str):
    if name == "_TYPES":
        return _types()
    if name in ("rank_slice", "RankError", "last_load_stats"):
        from . import _parallel

        return getattr(_parallel, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _getdtype(dtype_str: str) -> np.dtype:
    """The numpy dtype for a safetensors code; KeyError if there is none."""
    return _types()[dtype_str]


def _view2np(safeview) -> Dict[str, np.ndarray]:
    """Arrays from :func:`tensorseal.deserialize`'s ``[(name, {"dtype",
    "shape", "data"})]`` output (views of each ``data``)."""
    return {
        name: numpy_view(v["data"], v["dtype"], list(v["shape"]), 0, len(v["data"]), name)
        for name, v in safeview
    }


def _is_little_endian(tensor: np.ndarray) -> bool:
    """Whether the array's bytes are little-endian (or single bytes)."""
    return not _dtypes.needs_swap(tensor.dtype)


# --- tensor- and pipeline-parallel loading and saving (tensorseal._parallel) ---


def load_sharded(
    path: Union[str, "os.PathLike[str]"],
    plan,
    rank: Optional[int] = None,
    world_size: Optional[int] = None,
) -> Dict[str, np.ndarray]:
    """numpy equivalent of :func:`tensorseal.torch.load_sharded` (without a
    collective mode): this rank's share of the checkpoint, reading only its
    bytes. ``rank``/``world_size`` default to ``torch.distributed``'s when
    torch is loaded and a group is initialised, else 0 and 1."""
    from . import _parallel

    rank, world_size = _parallel.rank_world(rank, world_size)

    def run():
        entries, buf = _parallel.load_entries(path, plan, rank, world_size)
        return _views(buf, [e[:5] for e in entries])

    return _parallel.agree(run, world_size)


def save_sharded(
    tensor_dict: Dict[str, np.ndarray],
    path: Union[str, "os.PathLike[str]"],
    plan,
    rank: Optional[int] = None,
    world_size: Optional[int] = None,
    metadata: Optional[Dict[str, str]] = None,
    *,
    max_shard_size=None,
    shapes=None,
) -> List[str]:
    """numpy equivalent of :func:`tensorseal.torch.save_sharded`."""
    from . import _parallel

    rank, world_size = _parallel.rank_world(rank, world_size)
    return _parallel.save_sharded(
        _specs(tensor_dict), path, plan, rank, world_size, metadata, max_shard_size, shapes
    )
