"""Exceptions raised from the Python layer.

Each is a :class:`SafetensorError`, which is what the reference raises in
the same situations, and also the built-in exception a Python user would
expect, so ``except SafetensorError`` and ``except ValueError`` (or
``TypeError``) both catch it.
"""

from __future__ import annotations

from ._tensorseal import SafetensorError


class InvalidArgumentError(SafetensorError, ValueError):
    """A framework, device or backend argument that cannot be used."""

    kind = "invalid_argument"


class UnsupportedDtypeError(SafetensorError, TypeError):
    """A tensor whose dtype the requested framework cannot represent."""

    kind = "unsupported_dtype"
