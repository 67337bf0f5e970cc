"""tensorseal: a fast, strict drop-in for the ``safetensors`` Python API.

Replace ``safetensors`` with ``tensorseal`` in an import and the code keeps
working::

    from tensorseal import safe_open
    from tensorseal.torch import load_file, save_file

The heavy lifting (header validation, reading, writing) is done by the Rust
core; see ``tensorseal.numpy`` and ``tensorseal.torch`` for the
framework-specific helpers.

To make a whole program (and the libraries it uses) get tensorseal wherever
it imports ``safetensors``, call this once at its start::

    import tensorseal; tensorseal.install_as_safetensors()
"""

from ._tensorseal import SafetensorError, __version__
from ._errors import InvalidArgumentError, UnsupportedDtypeError
from ._open import SafeSlice, safe_open
from ._raw import TensorSpec, deserialize, serialize, serialize_file



def __getattr__(name: str):
    # Imported on first use, to keep ``import tensorseal`` light.
    if name == "_safe_open_handle":
        from ._handle import _safe_open_handle

        globals()[name] = _safe_open_handle
        return _safe_open_handle
    if name == "quant":
        import importlib

        return importlib.import_module(".quant", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def install_as_safetensors() -> None:
    """Makes every later ``import safetensors`` / ``safetensors.torch`` / …
    in this process give tensorseal's modules (see ``tensorseal._alias``)."""
    from ._alias import install_as_safetensors as install

    install()


def uninstall_as_safetensors() -> None:
    """Undoes :func:`install_as_safetensors`."""
    from ._alias import uninstall_as_safetensors as uninstall

    uninstall()


__all__ = [
    "InvalidArgumentError",
    "SafeSlice",
    "SafetensorError",
    "TensorSpec",
    "UnsupportedDtypeError",
    "__version__",
    "deserialize",
    "install_as_safetensors",
    "safe_open",
    "serialize",
    "serialize_file",
    "uninstall_as_safetensors",
]
