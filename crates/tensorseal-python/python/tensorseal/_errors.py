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


# --- I/O errors the reference reports as SafetensorError ---------------------
#
# The reference raises SafetensorError when writing a file fails or a pread
# read comes up short. tensorseal raises an exception that is both that
# SafetensorError (same message) and the OSError subclass Python would raise
# for the errno (FileNotFoundError, PermissionError, ...), with errno,
# strerror and filename set: ``except SafetensorError`` and ``except
# OSError`` both catch it.

_IO_CLASSES: dict = {}


def _io_class(base: type) -> type:
    cls = _IO_CLASSES.get(base)
    if cls is None:

        def __str__(self) -> str:
            return self._message

        cls = type(
            f"Safetensor{base.__name__}",
            (SafetensorError, base),
            {
                "__module__": __name__,
                "__str__": __str__,
                "kind": "io",
                "__doc__": f"A SafetensorError that is also a {base.__name__}.",
            },
        )
        _IO_CLASSES[base] = cls
    return cls


def io_error(err: OSError, message: str) -> SafetensorError:
    """A SafetensorError saying ``message`` that is also ``type(err)``
    (an OSError subclass), carrying its errno, strerror and filename."""
    base = type(err) if isinstance(err, OSError) else OSError
    if issubclass(base, SafetensorError):
        return err
    e = _io_class(base)(message)
    e._message = message
    e.errno, e.strerror, e.filename = getattr(err, "errno", None), getattr(err, "strerror", None), getattr(err, "filename", None)
    return e


def os_error_text(err: OSError) -> str:
    """An I/O error as the reference (Rust's io::Error) prints it:
    ``No such file or directory (os error 2)``."""
    if isinstance(err, OSError) and err.errno is not None and err.strerror:
        return f"{err.strerror} (os error {err.errno})"
    if isinstance(err, OSError) and err.strerror:
        return str(err.strerror)
    return str(err)


def write_error(err: OSError) -> SafetensorError:
    """What a failed ``save_file`` / ``serialize_file`` raises: the
    reference's ``Error while serializing: I/O error: ...`` message."""
    text = f"Error while serializing: I/O error: {os_error_text(err)}"
    if getattr(err, "filename", None):
        text += f' at path "{err.filename}"'
    return io_error(err, text)


def not_found(err: OSError, filename) -> OSError:
    """Opening a missing file: the reference's ``FileNotFoundError`` with
    the message ``No such file or directory: <path>`` (errno set too)."""
    import os

    if not isinstance(err, FileNotFoundError):
        return err
    e = FileNotFoundError(f"No such file or directory: {os.fsdecode(os.fspath(filename))}")
    e.errno = err.errno
    return e


def header_error(err: SafetensorError) -> SafetensorError:
    """An invalid header, with the reference's ``Error while deserializing
    header: `` prefix before tensorseal's own (more precise) reason."""
    prefix = "Error while deserializing header: "
    if str(err).startswith(prefix):
        return err
    e = type(err)(prefix + str(err))
    e.kind = getattr(err, "kind", "invalid_header")
    return e


# --- the native entry points that touch the file system, with those errors ----


def open_file(filename):
    """``_tensorseal.SafeFile(filename)``; a missing file raises the
    reference's FileNotFoundError."""
    from ._tensorseal import SafeFile

    try:
        return SafeFile(filename)
    except FileNotFoundError as e:
        raise not_found(e, filename) from None
    except SafetensorError as e:
        raise header_error(e) from None


def read_file(filename, *args, **kwargs):
    """``_tensorseal.read_file``; a missing file raises the reference's
    FileNotFoundError."""
    from ._tensorseal import read_file as native

    try:
        return native(filename, *args, **kwargs)
    except FileNotFoundError as e:
        raise not_found(e, filename) from None
    except SafetensorError as e:
        raise header_error(e) from None


def serialize_file(specs, filename, metadata=None) -> None:
    """``_tensorseal.serialize_file``; an I/O failure raises the reference's
    ``SafetensorError("Error while serializing: I/O error: ...")``, which is
    also the matching OSError subclass."""
    from ._tensorseal import serialize_file as native

    try:
        native(specs, filename, metadata)
    except OSError as e:
        raise write_error(e) from None
