"""Checking a ``SafeSlice`` index the way the reference does.

The reference accepts ints (``True``/``False`` as 1/0), slices with a
positive step, one ``...``, the empty list (``[0:0]`` of the first
dimension) and tuples of those, and raises ``SafetensorError`` with fixed
messages for everything else, including indices and slice bounds past the
end of a dimension (where numpy would clamp a slice). :func:`check_index`
applies the same rules, with the same messages, and returns an index that
numpy and torch apply with the same result. Where the reference has no
behaviour (it raises ``OverflowError`` or fails internally) tensorseal keeps
numpy's: negative slice bounds, ``None`` (a new axis), negative steps with
numpy, ``start > stop`` (an empty range), and a full slice of a
zero-length dimension.

The errors are :class:`SliceIndexError`, a ``SafetensorError`` that is also
an ``IndexError`` (or :class:`SliceStepError`, also a ``ValueError``), so
code written for either library catches them.
"""

from __future__ import annotations

import operator
# typing costs milliseconds to import; annotations are strings here.
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, List, Sequence, Tuple

from ._tensorseal import SafetensorError


class SliceIndexError(SafetensorError, IndexError):
    """An index ``SafeSlice`` cannot apply (the reference's message)."""

    kind = "invalid_slice"


class SliceStepError(SafetensorError, ValueError):
    """A slice step that is zero (or negative, with torch tensors)."""

    kind = "invalid_slice"


_UNSUPPORTED = "Unsupported slice index at position {}: expected slice, int, or ellipsis"


def _int(x: Any):
    """``x`` as an int index (bools as 0/1, numpy ints), or None."""
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, (slice, list, tuple, str, bytes, float)) or x is None or x is Ellipsis:
        return None
    try:
        return operator.index(x)
    except TypeError:
        return None


def _bound(x: Any, position: int):
    if x is None:
        return None
    i = _int(x)
    if i is None:
        raise SliceIndexError(_UNSUPPORTED.format(position))
    return i


def _show(parts: Sequence[Tuple[str, Any]]) -> str:
    """The index as the reference prints it: ``[2:, 20]``."""
    out = []
    for kind, v in parts:
        if kind == "int":
            out.append(str(v))
        elif kind == "slice":
            start, stop, step = v
            text = f"{'' if start is None else start}:{'' if stop is None else stop}"
            if step not in (None, 1):
                text += f":{step}"
            out.append(text)
    return "[" + ", ".join(out) + "]"


def check_index(index: Any, shape: List[int], framework: str) -> Any:
    """Validates ``index`` for a tensor of ``shape`` like the reference and
    returns the index to apply with numpy (``framework == "np"``) or torch."""
    if isinstance(index, list):
        if index:
            raise SliceIndexError("Non empty lists are not implemented")
        index = (slice(0, 0),)
    items = index if isinstance(index, tuple) else (index,)
    ellipses = sum(1 for it in items if it is Ellipsis)
    if ellipses > 1:
        raise SliceIndexError("Only one ellipsis (...) is allowed in slice index")
    n_explicit = sum(1 for it in items if it is not Ellipsis and it is not None)
    n_expansion = max(len(shape) - n_explicit, 0)

    # Pass 1, in order (the reference's parsing): types, steps, negative ints.
    parts: List[Tuple[str, Any]] = []  # ("int", i) | ("slice", (a, b, c)) | ("none", None)
    out: List[Any] = []
    dim = 0
    for it in items:
        if it is Ellipsis:
            parts.extend([("slice", (None, None, None))] * n_expansion)
            out.append(Ellipsis)
            dim += n_expansion
        elif it is None:
            parts.append(("none", None))
            out.append(None)
        elif isinstance(it, slice):
            start, stop = _bound(it.start, dim), _bound(it.stop, dim)
            step = _bound(it.step, dim)
            if step is not None and (step == 0 or (step < 0 and framework != "np")):
                raise SliceStepError(f"Slice step must be a positive integer, got {step}")
            parts.append(("slice", (start, stop, step)))
            out.append(slice(start, stop, step))
            dim += 1
        else:
            i = _int(it)
            if i is None:
                raise SliceIndexError(_UNSUPPORTED.format(dim))
            size = shape[dim] if dim < len(shape) else 0
            if i < 0:
                if i + size < 0:
                    raise SliceIndexError(f"Invalid index {i} for dimension {dim} of size {size}")
                i += size
            parts.append(("int", i))
            out.append(i)
            dim += 1

    # Pass 2 (the reference's slicing): rank, then bounds from the last dimension.
    dims = [p for p in parts if p[0] != "none"]
    if len(dims) > len(shape):
        raise SliceIndexError(
            f"Error during slicing {_show(parts)} with shape {list(shape)}: "
            "more slicing indexes than dimensions in tensor"
        )
    for d in reversed(range(len(dims))):
        kind, v = dims[d]
        size = shape[d]
        if kind == "int":
            asked = v if v >= size else None
        else:
            start, stop, _ = v
            asked = None
            if start is not None and start >= size and not (start == 0 and size == 0):
                asked = start
            elif stop is not None and stop > size:
                asked = stop - 1
        if asked is not None:
            raise SliceIndexError(
                f"Error during slicing {_show(parts)} with shape {list(shape)}: "
                f"index {asked} out of bounds for tensor dimension #{d} of size {size}"
            )
    return tuple(out)
