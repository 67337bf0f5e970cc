"""tensorseal: a fast, strict drop-in for the ``safetensors`` Python API.

Replace ``safetensors`` with ``tensorseal`` in an import and the code keeps
working::

    from tensorseal import safe_open
    from tensorseal.torch import load_file, save_file

The heavy lifting (header validation, reading, writing) is done by the Rust
core; see ``tensorseal.numpy`` and ``tensorseal.torch`` for the
framework-specific helpers.
"""

from ._tensorseal import SafetensorError, __version__
from ._open import SafeSlice, safe_open

__all__ = ["SafeSlice", "SafetensorError", "__version__", "deserialize", "safe_open"]


def deserialize(data: bytes):
    """Parses safetensors bytes into ``[(name, {"dtype", "shape", "data"})]``.

    Same shape of result as ``safetensors.deserialize``: tensors in file order,
    ``dtype`` a safetensors code such as ``"F32"``, ``data`` the raw
    little-endian bytes.
    """
    from ._tensorseal import deserialize as _deserialize

    entries, _metadata, buf = _deserialize(data)
    mem = memoryview(buf)
    return [
        (name, {"dtype": dtype, "shape": shape, "data": bytes(mem[start:end])})
        for name, dtype, shape, start, end in entries
    ]
