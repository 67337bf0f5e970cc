"""paddle helpers: ``save``, ``save_file``, ``load``, ``load_file``.

Same signatures and results as ``safetensors.paddle``: each tensor's bytes
are taken from ``Tensor.numpy()`` (bfloat16 comes out as its uint16 bits, so
it is stored bit for bit) and written by the Rust core; loading reads numpy
arrays and converts them with ``paddle.to_tensor`` on ``device``.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import paddle

from . import _via_numpy
from ._errors import serialize_file as _serialize_file
from ._open import _converter, safe_open
from ._tensorseal import SafetensorError
from ._tensorseal import serialize as _serialize

__all__ = ["load", "load_file", "save", "save_file"]

#: paddle dtype name -> safetensors code.
_CODES = {
    "bool": "BOOL",
    "uint8": "U8",
    "int8": "I8",
    "int16": "I16",
    "uint16": "U16",
    "float16": "F16",
    "bfloat16": "BF16",
    "int32": "I32",
    "uint32": "U32",
    "float32": "F32",
    "complex64": "C64",
    "float64": "F64",
    "int64": "I64",
    "uint64": "U64",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}


def _specs(tensors: Dict[str, "paddle.Tensor"]) -> List[Tuple[str, str, List[int], Any]]:
    if not isinstance(tensors, dict):
        raise ValueError(f"Expected a dict of [str, paddle.Tensor] but received {type(tensors)}")
    for k, v in tensors.items():
        if not isinstance(v, paddle.Tensor):
            raise ValueError(f"Key `{k}` is invalid, expected paddle.Tensor but received {type(v)}")
    specs = []
    for name, t in tensors.items():
        if not t.is_contiguous():
            raise ValueError(
                f"You are trying to save a non contiguous tensor: `{name}` which is not allowed. It either means you"
                " are trying to save tensors which are reference of each other in which case it's recommended to save"
                " only the full tensors, and reslice at load time, or simply call `.contiguous()` on your tensor to"
                " pack it before saving."
            )
        dtype = str(t.dtype).split(".")[-1]
        code = _CODES.get(dtype)
        if code is None:
            raise SafetensorError(f"tensor {name!r}: paddle dtype {dtype} has no safetensors equivalent")
        arr = np.ascontiguousarray(t.detach().cpu().numpy())
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        specs.append((name, code, list(t.shape), arr.reshape(-1).view(np.uint8)))
    return specs


def save(tensors: Dict[str, "paddle.Tensor"], metadata: Optional[Dict[str, str]] = None) -> bytes:
    """Serializes a dict of paddle tensors to safetensors bytes."""
    return _serialize(_specs(tensors), metadata)


def save_file(
    tensors: Dict[str, "paddle.Tensor"],
    filename: Union[str, "os.PathLike[str]"],
    metadata: Optional[Dict[str, str]] = None,
) -> None:
    """Writes a dict of paddle tensors to ``filename``."""
    _serialize_file(_specs(tensors), filename, metadata)


def load(data: bytes, device: str = "cpu") -> Dict[str, "paddle.Tensor"]:
    """Loads safetensors bytes into a dict of paddle tensors on ``device``."""
    return _via_numpy.load(data, _converter("paddle", None if device == "cpu" else device))


def load_file(
    filename: Union[str, "os.PathLike[str]"], device: str = "cpu", *, backend: str = "mmap"
) -> Dict[str, "paddle.Tensor"]:
    """Loads every tensor of ``filename`` as paddle tensors on ``device``."""
    with safe_open(filename, framework="paddle", device=device, backend=backend) as f:
        return f.get_tensors()


def _np2paddle(numpy_dict: Dict[str, np.ndarray], device: str = "cpu") -> Dict[str, "paddle.Tensor"]:
    """The reference's private helper: numpy arrays to paddle tensors, in place."""
    convert = _converter("paddle", None if device == "cpu" else device)
    for k, v in numpy_dict.items():
        numpy_dict[k] = convert(v)
    return numpy_dict


def _paddle2np(paddle_dict: Dict[str, "paddle.Tensor"]) -> Dict[str, np.ndarray]:
    """The reference's private helper: paddle tensors to numpy arrays, in place."""
    for k, v in paddle_dict.items():
        paddle_dict[k] = v.detach().cpu().numpy()
    return paddle_dict


SafetensorError = SafetensorError
