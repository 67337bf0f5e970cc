"""``safe_open``: lazy, zero-copy access to one safetensors file."""

from __future__ import annotations

from . import _dtypes
from ._errors import InvalidArgumentError, open_file
from ._index import check_index
from ._raw import _NATIVE_BUFFERS, exported
from ._tensorseal import SafeFile, SafetensorError

# typing costs milliseconds to import; annotations are strings here.
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    import os
    from typing import Any, Dict, List, Optional, Union

_FRAMEWORKS = {
    "pt": "pt",
    "torch": "pt",
    "pytorch": "pt",
    "np": "np",
    "numpy": "np",
    "tf": "tf",
    "tensorflow": "tf",
    "jax": "flax",
    "flax": "flax",
    "mlx": "mlx",
    "paddle": "paddle",
}


def _framework(framework: str) -> str:
    """The canonical framework name: "pt", "np", "tf", "flax", "mlx" or
    "paddle" (the names the reference accepts, in any case)."""
    if not isinstance(framework, str):  # the reference's TypeError
        raise TypeError(f"framework must be a str, not {type(framework).__name__}: {framework!r}")
    fw = _FRAMEWORKS.get(framework.lower())
    if fw is None:
        raise InvalidArgumentError(f"framework {framework} is invalid")  # the reference's message
    return fw


def _to_jax(arr):
    import jax.numpy as jnp

    return jnp.array(arr)


def _to_tf(arr):
    import tensorflow as tf

    return tf.convert_to_tensor(arr)


def _to_mlx(arr):
    import mlx.core as mx

    return mx.array(arr)


def _converter(fw: str, device: Any):
    """For frameworks other than numpy and torch, the function turning a
    numpy array into that framework's array (on ``device`` for paddle);
    None for numpy and torch."""
    if fw == "flax":
        return _to_jax
    if fw == "tf":
        return _to_tf
    if fw == "mlx":
        return _to_mlx
    if fw == "paddle":
        place = "cpu" if device is None else device

        def to_paddle(arr):
            import paddle

            if arr.dtype.name == "bfloat16":
                # paddle takes bfloat16 as its uint16 bits (ml_dtypes arrays are refused).
                return paddle.to_tensor(arr.view("uint16"), place=place)
            return paddle.to_tensor(arr, place=place)

        return to_paddle
    return None


def torch_device(device: Any):
    """The ``torch.device`` for a device argument: ``None`` (the cpu, as in
    the reference), a string such as ``"cpu"`` or ``"cuda:1"``, a CUDA index,
    or a ``torch.device``. Anything else raises InvalidArgumentError."""
    import torch

    if device is None:
        return torch.device("cpu")
    if isinstance(device, bool) or (isinstance(device, int) and device < 0):
        raise InvalidArgumentError(f"device {device!r} is invalid")
    if isinstance(device, int):
        device = f"cuda:{device}"
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise InvalidArgumentError(f"device {device!r} is invalid: {e}") from None


_FRAMEWORK_NAMES = {"np": "numpy", "tf": "tensorflow", "flax": "flax", "mlx": "mlx", "paddle": "paddle"}


def _device(fw: str, device: Any):
    """Where tensors go: None for the cpu, else the ``torch.device`` (torch)
    or the device string (paddle, e.g. ``"gpu:0"``)."""
    if fw == "paddle":
        if device is None or str(device) == "cpu":
            return None
        if isinstance(device, int) and not isinstance(device, bool):
            return f"gpu:{device}"
        text = str(device)
        if text == "cuda" or text.startswith("cuda:"):  # paddle calls CUDA devices "gpu"
            return "gpu:" + (text.split(":", 1)[1] if ":" in text else "0")
        return text
    if fw != "pt":
        if device is not None and str(device) != "cpu":
            # The reference's message.
            raise InvalidArgumentError(f"Device {device} is not supported for framework {_FRAMEWORK_NAMES[fw]}")
        return None
    dev = torch_device(device)
    return None if dev.type == "cpu" else dev


def numpy_view(buf, code: str, shape: List[int], start: int, end: int, name: str):
    """A numpy array viewing ``buf[start:end]`` (no copy)."""
    import numpy as np

    dt = _dtypes.numpy_dtype(code, name)
    n = end - start
    if n == 0:
        return np.empty(shape, dtype=dt)
    buf = exported(buf)
    size = dt.itemsize
    if size and n % size == 0:
        # One array, not a byte array and a view of it (per call, this is
        # most of a small slice's cost).
        return np.frombuffer(buf, dtype=dt, count=n // size, offset=start).reshape(shape)
    return np.frombuffer(buf, dtype=np.uint8, count=n, offset=start).view(dt).reshape(shape)


def torch_view(buf, code: str, shape: List[int], start: int, end: int, name: str):
    """A torch tensor viewing ``buf[start:end]`` with storage of its own (no
    copy), or a copy when the bytes are not aligned for the dtype."""
    import torch

    dt = _dtypes.torch_dtype(code, name)
    if code == "F4":
        # Two values per byte: torch's packed dtype halves the last dimension.
        if not shape or shape[-1] % 2:
            raise SafetensorError(
                f"tensor {name!r}: F4 shape {shape} has an odd last dimension, which "
                "torch.float4_e2m1fn_x2 (two values per byte) cannot represent"
            )
        shape = shape[:-1] + [shape[-1] // 2]
    n = end - start
    if n == 0:
        # reshape, not torch.empty(shape): a zero-size shape such as
        # [0, 2**62, 2**62] overflows torch's stride computation in empty().
        return torch.empty(0, dtype=dt).reshape(shape)
    size = dt.itemsize
    buf = exported(buf)
    if start % size:
        t = torch.frombuffer(buf, dtype=torch.uint8, count=n, offset=start).clone().view(dt)
    else:
        t = torch.frombuffer(buf, dtype=dt, count=n // size, offset=start)
    return t.reshape(shape)


def check_backend(backend: str) -> None:
    """Refuses a backend other than the reference's two."""
    if backend not in ("mmap", "pread"):
        raise InvalidArgumentError(f"backend must be 'mmap' or 'pread', not {backend!r}")


def copy_mode(fw: str, backend: str, copy: "Optional[bool]") -> bool:
    """Whether tensors are private copies: ``copy`` if given, else the
    reference's default (numpy arrays are copies; torch tensors view a
    copy-on-write mapping with ``mmap``, are copies with ``pread``)."""
    check_backend(backend)
    if copy is None:
        return fw == "np" or backend == "pread"
    if copy not in (True, False):
        raise InvalidArgumentError(f"copy must be True, False or None, not {copy!r}")
    if not copy and backend == "pread":
        raise InvalidArgumentError("copy=False needs backend='mmap': the pread backend always copies")
    return copy


def _array(buf, fw: str, name: str, dtype: str, shape: "List[int]", start: int, end: int):
    if fw == "np":
        return numpy_view(buf, dtype, shape, start, end, name)
    return torch_view(buf, dtype, shape, start, end, name)


def _view(f: SafeFile, fw: str, copy: bool, name: str, dtype: str, shape: "List[int]", start: int, end: int):
    """Tensor ``name`` (bytes ``start..end`` of file ``f``) as an array or
    tensor: a private copy read with positioned reads when ``copy``; else
    a read-only view of the file's read-only mapping (numpy) or a view of
    a copy-on-write mapping that has not handed this tensor out before
    (torch)."""
    if copy:
        return _array(f.read_range(start, end, name), fw, name, dtype, shape, 0, end - start)
    if fw == "np":
        return numpy_view(f.read_only_map(), dtype, shape, start, end, name)
    buf, start, end = f.cow_tensor(name)
    return torch_view(buf, dtype, shape, start, end, name)


#: Tensors smaller than this are never read ahead (POPULATE_MIN in the
#: extension's lib.rs).
_READ_AHEAD_MIN = 4 << 20


def _dense_first(index) -> bool:
    """Whether ``index`` starts with an int or a slice of step 1 (None)."""
    first = index[0] if type(index) is tuple and index else index
    if type(first) is int:
        return True
    return type(first) is slice and (first.step is None or first.step == 1)


class SafeSlice:
    """A tensor of an open file that can be indexed without reading it whole.

    ``get_shape()`` and ``get_dtype()`` describe it; indexing with ints,
    slices (steps and negative bounds included), ``...``, ``None`` and tuples
    of them follows numpy semantics (framework ``"np"``) or torch semantics
    (``"pt"``) exactly, and returns a new array or tensor: only the bytes the
    index selects are read from the file.

    numpy results are copies of the selected bytes; torch results are views
    of a copy-on-write mapping as in the reference (copies with
    ``copy=True`` or ``backend="pread"``). Like the reference's, a slice
    keeps the file open: it can be indexed
    after the ``safe_open`` that made it is closed.
    """

    __slots__ = ("_owner", "_file", "_name", "_dtype", "_shape", "_start", "_end")

    def __init__(
        self, owner: "safe_open", f: SafeFile, name: str, dtype: str, shape: "List[int]", start: int, end: int
    ):
        # The owner's settings (_fw, _copy, _np, _dev, _convert) are read
        # through it: fewer stores per get_slice, a hot call in loops over
        # many small tensors. The file is kept here: closing the owner
        # leaves this slice usable, as in the reference.
        self._owner = owner
        self._file = f
        self._name = name
        self._dtype = dtype
        self._shape = shape
        self._start = start
        self._end = end

    def get_shape(self) -> List[int]:
        """The shape recorded in the header."""
        return list(self._shape)

    def get_dtype(self) -> str:
        """The safetensors dtype code, e.g. ``"F32"``, ``"BF16"``."""
        return self._dtype

    @property
    def shape(self) -> List[int]:
        return self.get_shape()

    @property
    def dtype(self) -> str:
        return self._dtype

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() of a 0-d tensor")
        return self._shape[0]

    def __repr__(self) -> str:
        return f"SafeSlice(name={self._name!r}, dtype={self._dtype}, shape={self._shape})"

    def _rows(self, index):
        """When ``index`` starts with an int or a
        slice that selects rows of the first dimension, ``(lo, hi, index')``
        such that reading rows ``lo..hi`` only and applying ``index'`` gives
        the same result as ``index`` on the whole tensor. None otherwise
        (then the whole tensor is read)."""
        shape = self._shape
        if not shape or shape[0] == 0:
            return None
        nbytes = self._end - self._start
        if nbytes % shape[0]:
            return None  # rows are not whole bytes (1-d sub-byte dtypes)
        parts = index if isinstance(index, tuple) else (index,)
        if not parts:
            return None
        first, rest = parts[0], parts[1:]
        n = shape[0]
        if isinstance(first, bool):
            return None
        if isinstance(first, int):
            i = first + n if first < 0 else first
            if not 0 <= i < n:
                return None  # let the framework raise its own IndexError
            return i, i, (0, *rest)
        if isinstance(first, slice):
            r = range(*first.indices(n))
            if len(r) == 0:
                return None
            # Constant time (min/max would walk the range).
            lo, hi = (r[0], r[-1]) if r.step > 0 else (r[-1], r[0])
            stop = r.stop - lo
            sub = slice(r.start - lo, stop if stop >= 0 else None, r.step)
            return lo, hi, (sub, *rest)
        return None

    def _row_bytes(self, lo: int, hi: int):
        """Bytes of rows ``lo..=hi``, relative to the tensor's first byte
        (rows of whole bytes, as ``_rows`` guarantees)."""
        row = (self._end - self._start) // self._shape[0]
        return lo * row, (hi + 1) * row

    def _finish(self, out):
        """``out`` in the caller's framework and on its device."""
        owner = self._owner
        if owner._convert is not None:
            return owner._convert(out)
        return out if owner._dev is None else out.to(owner._dev)

    def __getitem__(self, index):
        owner = self._owner
        fw = owner._fw
        if fw == "pt" and not owner._copy:
            # As the reference: a view of a copy-on-write mapping (one that
            # has not handed this tensor out before), indexed by torch itself
            # (torch's semantics and errors).
            # When the file was not cached, the rows the index takes
            # densely (an int, or a slice of step 1, first: a strided or
            # reversed slice would read ahead rows it skips) are read ahead
            # on several threads. Only tensors large enough to be read ahead
            # at all pay for working the rows out; anything unusual is left
            # to torch, errors included.
            part = None
            if self._end - self._start >= _READ_AHEAD_MIN and _dense_first(index) and not self._file.warm():
                try:
                    rows = self._rows(index)
                except Exception:
                    rows = None
                if rows is not None:
                    part = self._row_bytes(rows[0], rows[1])
            buf, start, end = self._file.cow_tensor(self._name, part is not None, part)
            out = torch_view(buf, self._dtype, self._shape, start, end, self._name)[index]
            return self._finish(out)
        shape = self._shape
        if type(index) is slice and shape and shape[0]:
            # Fast path for the commonest index, rows a:b: read exactly
            # them, and the result is the buffer they were read into. Only
            # where check_index would accept the index as it is (int or None
            # bounds, step 1, no bound past the end); anything else, bools
            # and numpy ints included, takes the general path below.
            a, b, step = index.start, index.stop, index.step
            n = shape[0]
            if (
                (step is None or (type(step) is int and step == 1))
                and (a is None or (type(a) is int and a < n))
                and (b is None or (type(b) is int and b <= n))
            ):
                nbytes = self._end - self._start
                lo, hi, _ = index.indices(n)
                if hi > lo and nbytes % n == 0:
                    row = nbytes // n
                    start = self._start + lo * row
                    end = self._start + hi * row
                    buf = self._file.read_range(start, end, self._name)
                    np = owner._np
                    if np is not None:
                        # numpy copies on the cpu (as get_tensor's fast path)
                        dt = _dtypes._np_cache.get(self._dtype)
                        if dt is not None and dt.itemsize and (end - start) % dt.itemsize == 0:
                            return np.ndarray([hi - lo, *shape[1:]], dt, buf)
                    return self._finish(
                        _array(buf, fw, self._name, self._dtype, [hi - lo, *shape[1:]], 0, end - start)
                    )
        # The reference's rules and messages (SafetensorError), numpy's
        # semantics where the reference has none; see _index.
        index = check_index(index, self._shape, fw)
        # Otherwise only the selected rows are read, with positioned reads into memory
        # of this result's own: never a view of a mapping, so nothing done
        # to an earlier result shows here, and a file truncated meanwhile is
        # an error, not a crash.
        rows = self._rows(index)
        if rows is None:
            start, end, shape = self._start, self._end, self._shape
        else:
            lo, hi, index = rows
            first, past = self._row_bytes(lo, hi)
            start, end = self._start + first, self._start + past
            shape = [hi - lo + 1, *self._shape[1:]]
        full = _view(self._file, fw, True, self._name, self._dtype, shape, start, end)
        out = full[index]
        if fw == "np":
            import numpy as np

            # The read rows are this result's own memory: keep them when the
            # index takes them all, in order; copy anything smaller or
            # strided (so a small result does not hold a large buffer).
            if not (isinstance(out, np.ndarray) and out.ndim and out.nbytes == full.nbytes and out.flags.c_contiguous):
                out = np.array(out)
        else:
            import torch

            if not out.numel():
                # as in torch_view: huge zero-size shapes overflow clone()
                out = torch.empty(0, dtype=out.dtype).reshape(out.shape)
            elif not (out.numel() == full.numel() and out.is_contiguous() and out.dim()):
                out = out.clone(memory_format=torch.contiguous_format)
        return self._finish(out)


class safe_open:
    """Opens a safetensors file lazily: only the header is read here.

    Args:
        filename: path (``str`` or ``os.PathLike``) of the file.
        framework: ``"pt"`` (torch tensors) or ``"np"`` (numpy arrays);
            ``"torch"`` and ``"numpy"`` are accepted too, and so are the
            reference's ``"tf"``, ``"flax"``/``"jax"``, ``"mlx"`` and
            ``"paddle"`` (arrays made with numpy, then converted).
        device: where tensors go (``"cpu"``, ``"cuda:0"``, ``0``, …; torch
            only; ``None`` means the cpu). An unusable framework, device or
            backend raises ``InvalidArgumentError``, a ``SafetensorError``
            (as in the reference) that is also a ``ValueError``.
        backend: ``"mmap"`` (default) or ``"pread"``, as in the reference;
            ``"pread"`` always reads tensors into memory of their own.
        copy: whether tensors are private copies (memory of their own,
            read with positioned reads). ``None`` (default) does what the
            reference does: numpy arrays are copies; torch tensors with
            ``"mmap"`` view a private copy-on-write mapping of the file
            (nothing is read until touched, writes never reach the file, but
            see the README for a file modified or truncated while they
            live). ``copy=True`` gives torch copies; ``copy=False`` gives
            numpy zero-copy, read-only views of a read-only mapping.

    Usable as a context manager, or without ``with`` (the file is released
    when the object is garbage collected). Tensors and slices returned stay
    valid after the file is closed.
    """

    #: The staged device loader (``_gpu.Loader``), made on first use.
    _loader = None
    #: The numpy module where get_tensor's numpy fast path applies, else None.
    _np = None

    def __init__(
        self,
        filename: "Union[str, os.PathLike[str]]",
        framework: str,
        device: "Union[str, int, Any]" = "cpu",
        *,
        backend: "Optional[str]" = "mmap",
        copy: "Optional[bool]" = None,
    ):
        self._set_framework(framework, device)
        backend = "mmap" if backend is None else backend
        self._copy = copy_mode(self._fw, backend, copy)
        self._backend = backend
        self._file: "Optional[SafeFile]" = open_file(filename)
        if self._fw == "np" and self._copy and self._convert is None and _NATIVE_BUFFERS:
            # numpy copies on the cpu, the commonest use: get_tensor takes
            # a path of its own (a microsecond less per tensor).
            import numpy

            self._np = numpy

    def _set_framework(self, framework: str, device: "Any") -> None:
        """Sets ``_fw``, ``_dev`` and ``_convert`` from the arguments."""
        target = _framework(framework)
        # Arrays are made with numpy for every framework but torch, then
        # converted (jax, tensorflow, mlx, paddle), as in the reference.
        self._fw = "pt" if target == "pt" else "np"
        self._dev = _device(target, device)
        self._convert = _converter(target, self._dev)
        if target == "paddle":
            self._dev = None

    def __enter__(self) -> "safe_open":
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        self.close()

    def close(self) -> None:
        """Releases the file. Tensors already returned stay valid."""
        self._file = None
        if self._loader is not None:
            self._loader.close()  # frees the pinned staging ring
            self._loader = None

    def _staged(self, f: SafeFile):
        """For torch on a CUDA (or ROCm) device, the loader that streams
        tensors through a pinned staging ring (``_gpu``); None otherwise."""
        dev = self._dev
        if self._fw != "pt" or dev is None or dev.type != "cuda" or not isinstance(f, SafeFile):
            # (_safe_open_handle's streams are read through Python: .to(device))
            return None
        if self._loader is None:
            from ._gpu import Loader

            entries = f.entries()
            self._loader = Loader(dev)
            self._loader.size_hint = entries[-1][4] - entries[0][3] if entries else 0
        return self._loader

    def _handle(self) -> SafeFile:
        f = self._file
        if f is None:
            raise SafetensorError("the file is closed")
        return f

    def keys(self) -> "List[str]":
        """Tensor names, sorted."""
        return self._handle().keys()

    def offset_keys(self) -> "List[str]":
        """Tensor names in the order of their data in the file."""
        return self._handle().offset_keys()

    def metadata(self) -> "Optional[Dict[str, str]]":
        """The ``__metadata__`` string map, or None if the file has none."""
        return self._handle().metadata()

    def _view(self, name: str, dtype: str, shape: "List[int]", start: int, end: int):
        return _view(self._handle(), self._fw, self._copy, name, dtype, shape, start, end)

    def get_tensor(self, name: str):
        """The whole tensor ``name``: see ``copy`` in the class docstring.
        Nothing done to a returned tensor changes what a later call returns."""
        f = self._file
        if f is None:
            f = self._handle()  # raises
        np = self._np
        if np is not None:
            buf, code, shape = f.read_tensor(name)
            dt = _dtypes._np_cache.get(code)
            if dt is None:
                dt = _dtypes.numpy_dtype(code, name)
            n = len(buf)
            if n and dt.itemsize and n % dt.itemsize == 0:
                # The array's base is the buffer itself (frombuffer and
                # reshape: two arrays and a memoryview, 3x the time).
                return np.ndarray(shape, dt, buf)
            return numpy_view(buf, code, shape, 0, n, name)
        dtype, shape, start, end = f.info(name)
        staged = self._staged(f)
        if staged is not None:
            return staged.load(f, [(name, dtype, shape, start, end)], staged.size_hint)[name]
        t = _view(f, self._fw, self._copy, name, dtype, shape, start, end)
        if self._convert is not None:
            return self._convert(t)
        if self._dev is not None:
            t = t.to(self._dev)
        return t

    def get_tensors(self) -> "Dict[str, Any]":
        """Every tensor, keyed by name, in file order (torch views share one
        fresh copy-on-write mapping, read ahead in parallel)."""
        f = self._handle()
        staged = self._staged(f)
        if staged is not None:
            return staged.load(f, f.entries())
        out = {}
        if self._fw == "pt" and not self._copy:
            buf = exported(f.map_cow(populate=self._dev is None))
            for name, dtype, shape, start, end in f.entries():
                t = torch_view(buf, dtype, shape, start, end, name)
                out[name] = t if self._dev is None else t.to(self._dev)
            return out
        for name, dtype, shape, start, end in f.entries():
            t = self._view(name, dtype, shape, start, end)
            if self._convert is not None:
                t = self._convert(t)
            elif self._dev is not None:
                t = t.to(self._dev)
            out[name] = t
        return out

    def get_slice(self, name: str) -> SafeSlice:
        """A :class:`SafeSlice` of tensor ``name``, to index lazily."""
        f = self._file
        if f is None:
            f = self._handle()  # raises
        return SafeSlice(self, f, name, *f.info(name))

    def __repr__(self) -> str:
        state = "closed" if self._file is None else f"{len(self._file.offset_keys())} tensors"
        return f"<tensorseal.safe_open framework={self._fw!r} backend={self._backend!r} ({state})>"
