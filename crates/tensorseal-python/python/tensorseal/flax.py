"""flax / JAX helpers: ``save``, ``save_file``, ``load``, ``load_file``.

Same signatures and results as ``safetensors.flax``: arrays are written
through numpy (``np.asarray``) and loaded as ``jax.numpy`` arrays (copies, on
JAX's default device). Unlike the reference, ``save`` and ``save_file`` do
not replace the values of the dict they are given with numpy arrays.
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Union

import jax.numpy as jnp
import numpy as np
from jax import Array

from . import _via_numpy
from ._tensorseal import SafetensorError

__all__ = ["load", "load_file", "save", "save_file"]


def save(tensors: Dict[str, Array], metadata: Optional[Dict[str, str]] = None) -> bytes:
    """Serializes a dict of JAX arrays to safetensors bytes."""
    return _via_numpy.save(tensors, metadata, np.asarray, "Array")


def save_file(
    tensors: Dict[str, Array],
    filename: Union[str, "os.PathLike[str]"],
    metadata: Optional[Dict[str, str]] = None,
) -> None:
    """Writes a dict of JAX arrays to ``filename``."""
    _via_numpy.save_file(tensors, filename, metadata, np.asarray, "Array")


def load(data: bytes) -> Dict[str, Array]:
    """Loads safetensors bytes into a dict of JAX arrays."""
    return _via_numpy.load(data, jnp.array)


def load_file(filename: Union[str, "os.PathLike[str]"], *, backend: str = "mmap") -> Dict[str, Array]:
    """Loads every tensor of ``filename`` as JAX arrays."""
    return _via_numpy.load_file(filename, "flax", backend)


def _np2jnp(numpy_dict: Dict[str, np.ndarray]) -> Dict[str, Array]:
    """The reference's private helper: numpy arrays to JAX arrays, in place."""
    for k, v in numpy_dict.items():
        numpy_dict[k] = jnp.array(v)
    return numpy_dict


def _jnp2np(jnp_dict: Dict[str, Array]) -> Dict[str, np.ndarray]:
    """The reference's private helper: JAX arrays to numpy arrays, in place."""
    for k, v in jnp_dict.items():
        jnp_dict[k] = np.asarray(v)
    return jnp_dict


SafetensorError = SafetensorError
