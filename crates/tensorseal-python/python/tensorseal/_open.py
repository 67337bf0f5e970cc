"""``safe_open``: lazy, zero-copy access to one safetensors file."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Union

from . import _dtypes
from ._errors import InvalidArgumentError, io_error, open_file, os_error_text
from ._index import check_index
from ._tensorseal import SafeFile, SafetensorError

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
    if start % size:
        t = torch.frombuffer(buf, dtype=torch.uint8, count=n, offset=start).clone().view(dt)
    else:
        t = torch.frombuffer(buf, dtype=dt, count=n // size, offset=start)
    return t.reshape(shape)


def _view(f: SafeFile, fw: str, backend: str, name: str, dtype: str, shape: List[int], start: int, end: int):
    """Bytes ``start..end`` of file ``f`` as an array or tensor (a view of
    the private map with ``mmap``, memory of its own with ``pread``)."""
    if backend == "pread":
        try:
            buf = f.read_range(start, end)
        except OSError as e:  # the file shrank under us: the reference's error
            raise io_error(e, f"Could not read tensor {name} from file: {os_error_text(e)}") from None
        start, end = 0, end - start
    else:
        buf = f.buffer
    if fw != "pt":
        return numpy_view(buf, dtype, shape, start, end, name)
    return torch_view(buf, dtype, shape, start, end, name)


class SafeSlice:
    """A tensor of an open file that can be indexed without reading it whole.

    ``get_shape()`` and ``get_dtype()`` describe it. As in the reference,
    torch tensors from the ``mmap`` backend are indexed with torch's own
    semantics and errors; every other framework and the ``pread`` backend
    follow the reference's rules (see ``_index``: ints, bools as 0/1, slices
    with a positive step, one ``...``, ``[]``; an index or slice bound past
    the end raises SafetensorError), with numpy's semantics where the
    reference has none (negative bounds, ``None``, negative steps with
    numpy). Returns a new array or tensor: with ``pread``, only the rows the
    index selects are read from the file.

    Like the reference's, a slice keeps the file open: it can be indexed
    after the ``safe_open`` that made it is closed.
    """

    __slots__ = ("_file", "_fw", "_dev", "_convert", "_backend", "_name", "_dtype", "_shape", "_start", "_end")

    def __init__(
        self, owner: "safe_open", f: SafeFile, name: str, dtype: str, shape: List[int], start: int, end: int
    ):
        self._file = f
        self._fw = owner._fw
        self._dev = owner._dev
        self._convert = owner._convert
        self._backend = owner._backend
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
        """For the ``pread`` backend: when ``index`` starts with an int or a
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
            lo, hi = min(r), max(r)
            stop = r.stop - lo
            sub = slice(r.start - lo, stop if stop >= 0 else None, r.step)
            return lo, hi, (sub, *rest)
        return None

    def __getitem__(self, index):
        if self._fw != "pt" or self._backend == "pread":
            # The reference's rules and messages (SafetensorError), numpy's
            # semantics where the reference has none; see _index. torch
            # tensors from the mmap backend are indexed by torch itself, as
            # the reference does (torch's semantics and errors).
            index = check_index(index, self._shape, self._fw)
        rows = self._rows(index) if self._backend == "pread" else None
        if rows is None:
            start, end, shape = self._start, self._end, self._shape
        else:
            # Read only the rows the index selects.
            lo, hi, index = rows
            row = (self._end - self._start) // self._shape[0]
            start, end = self._start + lo * row, self._start + (hi + 1) * row
            shape = [hi - lo + 1, *self._shape[1:]]
        full = _view(self._file, self._fw, self._backend, self._name, self._dtype, shape, start, end)
        if self._fw != "pt":
            import numpy as np

            out = np.array(full[index])
            if self._convert is not None:
                out = self._convert(out)
        else:
            import torch

            sel = full[index]
            if sel.numel():
                out = sel.clone(memory_format=torch.contiguous_format)
            else:  # as in torch_view: huge zero-size shapes overflow clone()
                out = torch.empty(0, dtype=sel.dtype).reshape(sel.shape)
            if self._dev is not None:
                out = out.to(self._dev)
        return out


class safe_open:
    """Opens a safetensors file lazily: only the header is read here.

    Args:
        filename: path (``str`` or ``os.PathLike``) of the file.
        framework: ``"pt"`` (torch tensors) or ``"np"`` (numpy arrays);
            ``"torch"`` and ``"numpy"`` are accepted too.
        device: where tensors go (``"cpu"``, ``"cuda:0"``, ``0``, …; torch
            only; ``None`` means the cpu). An unusable framework, device or
            backend raises ``InvalidArgumentError``, a ``SafetensorError``
            (as in the reference) that is also a ``ValueError``.
        backend: ``"mmap"`` (default): tensors on the cpu are views of a private
            (copy-on-write) memory map of the file, nothing is copied and
            writes never reach the file; ``"pread"``: each tensor is read into
            memory of its own with positioned reads.

    Usable as a context manager, or without ``with`` (the file is released
    when the object is garbage collected). Tensors and slices returned stay
    valid after the file is closed.
    """

    def __init__(
        self,
        filename: Union[str, "os.PathLike[str]"],
        framework: str,
        device: Union[str, int, Any] = "cpu",
        *,
        backend: str = "mmap",
    ):
        target = _framework(framework)
        # Arrays are made with numpy for every framework but torch, then
        # converted (jax, tensorflow, mlx, paddle), as in the reference.
        self._fw = "pt" if target == "pt" else "np"
        self._dev = _device(target, device)
        self._convert = _converter(target, self._dev)
        if target == "paddle":
            self._dev = None
        if backend not in ("mmap", "pread"):
            raise InvalidArgumentError(f"backend must be 'mmap' or 'pread', not {backend!r}")
        self._backend = backend
        self._file: Optional[SafeFile] = open_file(filename)

    def __enter__(self) -> "safe_open":
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        self.close()

    def close(self) -> None:
        """Releases the file. Tensors already returned stay valid."""
        self._file = None

    def _handle(self) -> SafeFile:
        f = self._file
        if f is None:
            raise SafetensorError("the file is closed")
        return f

    def keys(self) -> List[str]:
        """Tensor names, sorted."""
        return self._handle().keys()

    def offset_keys(self) -> List[str]:
        """Tensor names in the order of their data in the file."""
        return self._handle().offset_keys()

    def metadata(self) -> Optional[Dict[str, str]]:
        """The ``__metadata__`` string map, or None if the file has none."""
        return self._handle().metadata()

    def _view(self, name: str, dtype: str, shape: List[int], start: int, end: int):
        return _view(self._handle(), self._fw, self._backend, name, dtype, shape, start, end)

    def get_tensor(self, name: str):
        """The whole tensor ``name`` (a view of the file's memory on the cpu)."""
        dtype, shape, start, end = self._handle().info(name)
        t = self._view(name, dtype, shape, start, end)
        if self._convert is not None:
            return self._convert(t)
        if self._dev is not None:
            t = t.to(self._dev)
        return t

    def get_tensors(self) -> Dict[str, Any]:
        """Every tensor, keyed by name, in file order."""
        out = {}
        for name, dtype, shape, start, end in self._handle().entries():
            t = self._view(name, dtype, shape, start, end)
            if self._convert is not None:
                t = self._convert(t)
            elif self._dev is not None:
                t = t.to(self._dev)
            out[name] = t
        return out

    def get_slice(self, name: str) -> SafeSlice:
        """A :class:`SafeSlice` of tensor ``name``, to index lazily."""
        f = self._handle()
        dtype, shape, start, end = f.info(name)
        return SafeSlice(self, f, name, dtype, shape, start, end)

    def __repr__(self) -> str:
        state = "closed" if self._file is None else f"{len(self._file.offset_keys())} tensors"
        return f"<tensorseal.safe_open framework={self._fw!r} backend={self._backend!r} ({state})>"
