"""Mappings between safetensors dtype codes and numpy / torch dtypes."""

from __future__ import annotations

import sys

# typing costs milliseconds to import; annotations are strings here.
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Dict, Optional

from ._errors import UnsupportedDtypeError
from ._tensorseal import SafetensorError

#: numpy names of the dtypes numpy has natively.
_NUMPY_NATIVE = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "I16": "int16",
    "U16": "uint16",
    "F16": "float16",
    "I32": "int32",
    "U32": "uint32",
    "F32": "float32",
    "C64": "complex64",
    "F64": "float64",
    "I64": "int64",
    "U64": "uint64",
}

#: dtypes numpy only has through the optional ``ml_dtypes`` package.
_NUMPY_ML_DTYPES = {
    "BF16": "bfloat16",
    "F8_E5M2": "float8_e5m2",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E8M0": "float8_e8m0fnu",
    "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
}

#: torch attribute names; ``F4`` is packed two per byte (``float4_e2m1fn_x2``).
_TORCH_NAMES = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "F8_E5M2": "float8_e5m2",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E8M0": "float8_e8m0fnu",
    "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "I16": "int16",
    "U16": "uint16",
    "F16": "float16",
    "BF16": "bfloat16",
    "I32": "int32",
    "U32": "uint32",
    "F32": "float32",
    "C64": "complex64",
    "F64": "float64",
    "I64": "int64",
    "U64": "uint64",
    "F4": "float4_e2m1fn_x2",
}

SUPPORTED_NAMES = ", ".join(_TORCH_NAMES.values())

_np_cache: Dict[str, Any] = {}
_np_codes: Optional[Dict[str, str]] = None
_torch_cache: Dict[str, Any] = {}
_torch_codes: Optional[Dict[Any, str]] = None


def _ml_dtypes():
    try:
        import ml_dtypes  # type: ignore[import-not-found]
    except ImportError:
        return None
    return ml_dtypes


def numpy_dtype(code: str, name: str):
    """The numpy dtype for a safetensors code, or UnsupportedDtypeError (a
    SafetensorError and a TypeError) naming the tensor."""
    dt = _np_cache.get(code)
    if dt is not None:
        return dt
    import numpy as np

    ml = _ml_dtypes() if code in _NUMPY_ML_DTYPES else None
    # Older ml_dtypes releases lack some types (float8_e8m0fnu before 0.5).
    ml_type = getattr(ml, _NUMPY_ML_DTYPES[code], None) if ml is not None else None
    if code in _NUMPY_NATIVE:
        dt = np.dtype(_NUMPY_NATIVE[code]).newbyteorder("<")
    elif ml_type is not None:
        dt = np.dtype(ml_type)
    else:
        hint = (
            " (install a recent ml_dtypes package, or open the file with framework='pt')"
            if code in _NUMPY_ML_DTYPES
            else " (open the file with framework='pt')"
            if code in _TORCH_NAMES
            else ""
        )
        raise UnsupportedDtypeError(f"tensor {name!r} has dtype {code}, which numpy cannot represent{hint}")
    _np_cache[code] = dt
    return dt


def numpy_code(dtype, name: str) -> str:
    """The safetensors code for a numpy dtype, or SafetensorError."""
    global _np_codes
    if _np_codes is None:
        codes = {v: k for k, v in _NUMPY_NATIVE.items()}
        codes.update({v: k for k, v in _NUMPY_ML_DTYPES.items()})
        _np_codes = codes
    code = _np_codes.get(dtype.name)
    if code is None:
        raise SafetensorError(
            f"tensor {name!r}: unsupported dtype {dtype.name!r}; supported dtypes: "
            f"{', '.join(_NUMPY_NATIVE.values())} (and, with ml_dtypes, "
            f"{', '.join(_NUMPY_ML_DTYPES.values())})"
        )
    return code


def torch_dtype(code: str, name: str):
    """The torch dtype for a safetensors code, or UnsupportedDtypeError (a
    SafetensorError and a TypeError) naming the tensor."""
    dt = _torch_cache.get(code)
    if dt is not None:
        return dt
    import torch

    attr = _TORCH_NAMES.get(code)
    dt = getattr(torch, attr, None) if attr else None
    if dt is None:
        raise UnsupportedDtypeError(
            f"tensor {name!r} has dtype {code}, which this torch ({torch.__version__}) cannot represent"
        )
    _torch_cache[code] = dt
    return dt


def torch_code(dtype, name: str) -> str:
    """The safetensors code for a torch dtype, or SafetensorError."""
    global _torch_codes
    if _torch_codes is None:
        _torch_codes = {dt: code for code, dt in torch_types().items()}
    code = _torch_codes.get(dtype)
    if code is None:
        raise SafetensorError(
            f"tensor {name!r}: unsupported dtype {dtype}; supported dtypes: {SUPPORTED_NAMES}"
        )
    return code


def torch_types() -> Dict[str, Any]:
    """``{code: torch dtype}`` for every code this torch can represent."""
    import torch

    return {
        code: getattr(torch, attr)
        for code, attr in _TORCH_NAMES.items()
        if getattr(torch, attr, None) is not None
    }


def numpy_types() -> Dict[str, Any]:
    """``{code: numpy dtype}`` for every code numpy can represent here."""
    out = {}
    for code in (*_NUMPY_NATIVE, *_NUMPY_ML_DTYPES):
        try:
            out[code] = numpy_dtype(code, code)
        except SafetensorError:
            pass
    return out


def needs_swap(dtype) -> bool:
    """Whether a numpy dtype's bytes are big-endian on this machine."""
    order = dtype.byteorder
    return order == ">" or (order == "=" and sys.byteorder == "big")
