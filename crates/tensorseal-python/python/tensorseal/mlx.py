"""mlx helpers: ``save``, ``save_file``, ``load``, ``load_file``.

Same signatures and results as ``safetensors.mlx``: arrays are written
through numpy (``np.asarray``) and loaded with ``mx.array``. Unlike the
reference, ``save`` and ``save_file`` do not replace the values of the dict
they are given with numpy arrays.
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Union

import mlx.core as mx
import numpy as np

from . import _via_numpy
from ._tensorseal import SafetensorError

__all__ = ["load", "load_file", "save", "save_file"]


def save(tensors: Dict[str, mx.array], metadata: Optional[Dict[str, str]] = None) -> bytes:
    """Serializes a dict of mlx arrays to safetensors bytes."""
    return _via_numpy.save(tensors, metadata, np.asarray, "mx.array")


def save_file(
    tensors: Dict[str, mx.array],
    filename: Union[str, "os.PathLike[str]"],
    metadata: Optional[Dict[str, str]] = None,
) -> None:
    """Writes a dict of mlx arrays to ``filename``."""
    _via_numpy.save_file(tensors, filename, metadata, np.asarray, "mx.array")


def load(data: bytes) -> Dict[str, mx.array]:
    """Loads safetensors bytes into a dict of mlx arrays."""
    return _via_numpy.load(data, mx.array)


def load_file(filename: Union[str, "os.PathLike[str]"], *, backend: str = "mmap") -> Dict[str, mx.array]:
    """Loads every tensor of ``filename`` as mlx arrays."""
    return _via_numpy.load_file(filename, "mlx", backend)


def _np2mx(numpy_dict: Dict[str, np.ndarray]) -> Dict[str, mx.array]:
    """The reference's private helper: numpy arrays to mlx arrays, in place."""
    for k, v in numpy_dict.items():
        numpy_dict[k] = mx.array(v)
    return numpy_dict


def _mx2np(mx_dict: Dict[str, mx.array]) -> Dict[str, np.ndarray]:
    """The reference's private helper: mlx arrays to a new dict of numpy arrays."""
    return {k: np.asarray(v) for k, v in mx_dict.items()}


SafetensorError = SafetensorError
