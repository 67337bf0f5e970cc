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
from ._errors import InvalidArgumentError, UnsupportedDtypeError
from ._open import SafeSlice, safe_open
from ._raw import TensorSpec, deserialize, serialize, serialize_file

__all__ = [
    "InvalidArgumentError",
    "SafeSlice",
    "SafetensorError",
    "TensorSpec",
    "UnsupportedDtypeError",
    "__version__",
    "deserialize",
    "safe_open",
    "serialize",
    "serialize_file",
]
