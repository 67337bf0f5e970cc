"""Shared code of the framework modules that go through numpy (flax/JAX,
tensorflow, mlx), as the reference's do: saving converts each array to
numpy and writes it with :mod:`tensorseal.numpy`; loading reads numpy arrays
and converts them to the framework's."""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional, Union

from . import numpy as _numpy
from ._open import safe_open


def to_numpy(tensors: Dict[str, Any], convert: Callable[[Any], Any], kind: str) -> Dict[str, Any]:
    """A new dict of numpy arrays (the caller's dict is left alone)."""
    if not isinstance(tensors, dict):
        raise ValueError(f"Expected a dict of [str, {kind}] but received {type(tensors)}")
    return {k: convert(v) for k, v in tensors.items()}


def save(tensors, metadata, convert, kind) -> bytes:
    return _numpy.save(to_numpy(tensors, convert, kind), metadata=metadata)


def save_file(tensors, filename: Union[str, "os.PathLike[str]"], metadata: Optional[Dict[str, str]], convert, kind) -> None:
    _numpy.save_file(to_numpy(tensors, convert, kind), filename, metadata=metadata)


def load(data: bytes, convert) -> Dict[str, Any]:
    return {k: convert(v) for k, v in _numpy.load(data).items()}


def load_file(filename, framework: str, backend: str) -> Dict[str, Any]:
    with safe_open(filename, framework=framework, backend=backend) as f:
        return f.get_tensors()
