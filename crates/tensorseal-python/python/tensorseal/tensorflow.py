"""tensorflow helpers: ``save``, ``save_file``, ``load``, ``load_file``.

Same signatures and results as ``safetensors.tensorflow``: tensors are
written through numpy (``Tensor.numpy()``) and loaded with
``tf.convert_to_tensor``. Unlike the reference, ``save`` and ``save_file``
do not replace the values of the dict they are given with numpy arrays.
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Union

import numpy as np
import tensorflow as tf

from . import _via_numpy
from ._tensorseal import SafetensorError

__all__ = ["load", "load_file", "save", "save_file"]


def _tensor_to_numpy(t) -> np.ndarray:
    return t.numpy()


def save(tensors: Dict[str, tf.Tensor], metadata: Optional[Dict[str, str]] = None) -> bytes:
    """Serializes a dict of tensorflow tensors to safetensors bytes."""
    return _via_numpy.save(tensors, metadata, _tensor_to_numpy, "tf.Tensor")


def save_file(
    tensors: Dict[str, tf.Tensor],
    filename: Union[str, "os.PathLike[str]"],
    metadata: Optional[Dict[str, str]] = None,
) -> None:
    """Writes a dict of tensorflow tensors to ``filename``."""
    _via_numpy.save_file(tensors, filename, metadata, _tensor_to_numpy, "tf.Tensor")


def load(data: bytes) -> Dict[str, tf.Tensor]:
    """Loads safetensors bytes into a dict of tensorflow tensors."""
    return _via_numpy.load(data, tf.convert_to_tensor)


def load_file(filename: Union[str, "os.PathLike[str]"], *, backend: str = "mmap") -> Dict[str, tf.Tensor]:
    """Loads every tensor of ``filename`` as tensorflow tensors."""
    return _via_numpy.load_file(filename, "tf", backend)


def _np2tf(numpy_dict: Dict[str, np.ndarray]) -> Dict[str, tf.Tensor]:
    """The reference's private helper: numpy arrays to tensors, in place."""
    for k, v in numpy_dict.items():
        numpy_dict[k] = tf.convert_to_tensor(v)
    return numpy_dict


def _tf2np(tf_dict: Dict[str, tf.Tensor]) -> Dict[str, np.ndarray]:
    """The reference's private helper: tensors to numpy arrays, in place."""
    for k, v in tf_dict.items():
        tf_dict[k] = v.numpy()
    return tf_dict


SafetensorError = SafetensorError
