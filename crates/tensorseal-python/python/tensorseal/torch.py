"""torch helpers: ``load_file``, ``save_file``, ``load``, ``save``,
``save_model``, ``load_model``.

Same signatures, checks and results as ``safetensors.torch``. ``load_file``
reads the file with large parallel reads into one buffer and hands out
tensors that each have a storage of their own over it (so loaded tensors
never count as "sharing memory"); ``save_file`` streams each tensor's memory
straight into the file.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple, Union

import torch

from . import _dtypes
from ._open import copy_mode, safe_open, torch_device, torch_view
from ._raw import exported, memory_at
from ._tensorseal import SafeFile, SafetensorError
from ._tensorseal import deserialize as _deserialize
from ._errors import open_file
from ._errors import read_file as _read_file
from ._tensorseal import serialize as _serialize
from ._errors import serialize_file as _serialize_file

__all__ = ["load", "load_file", "load_model", "save", "save_file", "save_model"]

_DOCS = "https://huggingface.co/docs/safetensors/torch_shared_tensors"


# --- shared storage detection -------------------------------------------------


def storage_ptr(tensor: torch.Tensor) -> int:
    """Address of the start of the tensor's storage (0 if it has none)."""
    try:
        return tensor.untyped_storage().data_ptr()
    except Exception:  # meta tensors, exotic subclasses
        return 0


def storage_size(tensor: torch.Tensor) -> int:
    """Size in bytes of the tensor's whole storage."""
    try:
        return tensor.untyped_storage().nbytes()
    except Exception:
        return tensor.nelement() * tensor.element_size()


def _byte_range(tensor: torch.Tensor) -> Tuple[int, int]:
    """Start and end address of the bytes the tensor's elements occupy."""
    start = tensor.data_ptr()
    if tensor.nelement() == 0:
        return start, start
    # Address just past the last element, for any strides (torch's are >= 0).
    last = sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride()))
    return start, start + (last + 1) * tensor.element_size()


def _end_ptr(tensor: torch.Tensor) -> int:
    """Address just past the tensor's last element (its ``data_ptr()`` when
    it has no elements)."""
    return _byte_range(tensor)[1]


def _split_disjoint(groups: List[Set[str]], tensors: Dict[str, torch.Tensor]) -> List[Set[str]]:
    """Splits groups of names sharing a storage into groups whose byte ranges
    actually overlap (two halves of one buffer are not shared)."""
    out: List[Set[str]] = []
    for group in groups:
        if len(group) < 2:
            out.append(group)
            continue
        spans = sorted((*_byte_range(tensors[n]), n) for n in group)
        current = {spans[0][2]}
        stop = spans[0][1]
        out.append(current)
        for s, e, n in spans[1:]:
            if s >= stop:
                current = {n}
                out.append(current)
            else:
                current.add(n)
            stop = e
    return out


#: The reference's name for the same function.
_filter_shared_not_shared = _split_disjoint


def _find_shared_tensors(state_dict: Dict[str, torch.Tensor]) -> List[Set[str]]:
    """Groups of names whose tensors overlap in memory (one group per name
    that shares nothing), in state-dict order as the reference gives them."""
    by_storage: Dict[Tuple[Any, int, int], Set[str]] = defaultdict(set)
    for name, t in state_dict.items():
        if t.device.type == "meta":
            continue
        ptr, size = storage_ptr(t), storage_size(t)
        if ptr != 0 and size != 0:
            by_storage[(t.device, ptr, size)].add(name)
    # Sorting sets compares them by inclusion, so disjoint groups keep the
    # order of their first name in the state dict: the reference's order.
    groups = sorted(by_storage.values())
    return _split_disjoint(groups, state_dict)


def _is_complete(tensor: torch.Tensor) -> bool:
    """Whether the tensor covers its whole storage, from its first byte."""
    return (
        tensor.data_ptr() == storage_ptr(tensor)
        and tensor.nelement() * tensor.element_size() == storage_size(tensor)
    )


def _remove_duplicate_names(
    state_dict: Dict[str, torch.Tensor],
    *,
    preferred_names: Optional[Iterable[str]] = None,
    discard_names: Optional[Iterable[str]] = None,
) -> Dict[str, List[str]]:
    """For each group of tensors sharing memory, picks the name to keep and
    lists the names to drop: ``{kept: [dropped, ...]}``.

    The kept name covers the whole storage; among candidates, names in
    ``preferred_names`` win, then names not in ``discard_names``, then the
    alphabetically first.
    """
    preferred = set(preferred_names or [])
    discard = set(discard_names or [])
    to_remove: Dict[str, List[str]] = defaultdict(list)
    for group in _find_shared_tensors(state_dict):
        # Like the reference, a lone tensor that views part of a larger
        # storage is refused too (it is not "complete").
        complete = {n for n in group if _is_complete(state_dict[n])}
        if not complete:
            # The reference's message, word for word (scripts grep for it).
            raise RuntimeError(
                "Error while trying to find names to remove to save state dict, but found no suitable name to keep"
                f" for saving amongst: {group}. None is covering the entire storage.Refusing to save/load the model"
                f" since you could be storing much more memory than needed. Please refer to {_DOCS} for more"
                " information. Or open an issue."
            )
        keep = min(complete)
        kept_not_discarded = complete - discard
        if kept_not_discarded:
            keep = min(kept_not_discarded)
        if preferred & complete:
            keep = min(preferred & complete)
        for name in sorted(group):
            if name != keep:
                to_remove[keep].append(name)
    return to_remove


# --- saving -------------------------------------------------------------------


def _check_for_save(tensors: Dict[str, torch.Tensor]) -> None:
    if not isinstance(tensors, dict):
        raise ValueError(f"Expected a dict of [str, torch.Tensor] but received {type(tensors)}")
    sparse = []
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"Key `{name}` is invalid, expected torch.Tensor but received {type(t)}")
        if t.layout != torch.strided:
            sparse.append(name)
    if sparse:
        raise ValueError(
            f"You are trying to save a sparse tensors: `{sparse}` which this library does not support."
            " You can make it a dense tensor before saving with `.to_dense()` but be aware this might"
            " make a much larger file than needed."
        )
    shared = [g for g in _find_shared_tensors(tensors) if len(g) > 1]
    if shared:
        raise RuntimeError(
            f"""
            Some tensors share memory, this will lead to duplicate memory on disk and potential differences when loading them again: {shared}.
            A potential way to correctly save your model is to use `save_model`.
            More information at {_DOCS}
            """
        )


def _evaluate_tensors_for_save(tensors: Dict[str, torch.Tensor]) -> None:
    """Raises the reference's errors for what ``save_file`` refuses: a
    non-dict, non-tensor values, sparse tensors, tensors sharing memory."""
    _check_for_save(tensors)


def _plain_bytes(t: torch.Tensor, n: int) -> bool:
    """Whether ``n`` bytes at ``t.data_ptr()`` lie inside memory the tensor's
    storage owns: refuses null pointers (zero tensors, tensor subclasses that
    wrap others) and storages freed or shrunk under the tensor (as FSDP does
    with ``resize_(0)``)."""
    try:
        ptr = t.data_ptr()
        st = t.untyped_storage()
        base, size = st.data_ptr(), st.nbytes()
    except Exception:  # no storage at all
        return False
    return ptr != 0 and base != 0 and base <= ptr and ptr - base + n <= size


def _host_bytes(t: torch.Tensor, name: str):
    """The bytes of a contiguous cpu tensor, without copying.

    For a plain tensor or parameter: a ctypes array over its memory that
    keeps the tensor alive, built from attribute reads only. torch methods
    that dispatch an operator (``detach``, ``reshape``, ``view``) release the
    GIL, and while another Python thread is busy each release costs a switch
    interval (5 ms) to get it back, which made saving 100 tensors take
    seconds.

    Anything else (tensor subclasses, zero tensors) goes through torch's own
    operators, which raise for tensors that have no bytes to give.
    """
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    n = t.nelement() * t.element_size()
    if n == 0:
        return b""
    if type(t) in (torch.Tensor, torch.nn.Parameter) and not t._is_zerotensor():
        if not _plain_bytes(t, n):
            raise SafetensorError(
                f"tensor {name!r} ({list(t.shape)}, {t.dtype}) has no memory for its {n} bytes: "
                "its storage was freed or resized (e.g. by FSDP); gather or materialise it before saving"
            )
        return memory_at(t.data_ptr(), n, owner=t)
    return t.detach().reshape(-1).view(torch.uint8).numpy()


def _specs(tensors: Dict[str, torch.Tensor]):
    _check_for_save(tensors)
    specs = []
    for name, t in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be str, not {type(name).__name__}: {name!r}")
        if not t.is_contiguous():
            raise ValueError(
                f"You are trying to save a non contiguous tensor: `{name}` which is not allowed. It either means you"
                " are trying to save tensors which are reference of each other in which case it's recommended to save"
                " only the full tensors, and reslice at load time, or simply call `.contiguous()` on your tensor to"
                " pack it before saving."
            )
        code = _dtypes.torch_code(t.dtype, name)
        shape = list(t.shape)
        if code == "F4":
            if not shape:
                raise SafetensorError(f"tensor {name!r}: a 0-d float4_e2m1fn_x2 tensor cannot be saved")
            shape[-1] *= 2  # two F4 values per stored byte
        if t.device.type == "cpu":
            data: Any = _host_bytes(t, name)
        else:
            # Copied to the host one tensor at a time, while writing.
            data = (lambda t=t, name=name: [_host_bytes(t.to("cpu"), name)])
        specs.append((name, code, shape, data))
    return specs


def save(
    tensors: Dict[str, torch.Tensor], metadata: Optional[Dict[str, str]] = None, *, sparse: bool = False
) -> bytes:
    """Serializes a dict of tensors to safetensors bytes (byte-identical to
    ``safetensors.torch.save`` with at most one metadata entry).
    ``sparse=True`` stores sparse tensors as in :func:`save_file`."""
    if sparse:
        from ._sparse import split

        tensors, metadata = split(tensors, metadata)
    return _serialize(_specs(tensors), metadata)


def save_file(
    tensors: Dict[str, torch.Tensor],
    filename: Union[str, "os.PathLike[str]"],
    metadata: Optional[Dict[str, str]] = None,
    *,
    sparse: bool = False,
) -> None:
    """Writes a dict of tensors to ``filename``, streaming each tensor's memory
    into a temporary file renamed over ``filename`` when complete. Do not
    modify the tensors while this runs.

    Sparse tensors are refused, as by the reference, unless ``sparse=True``:
    then each COO, CSR or CSC tensor is stored as its component tensors
    described in the ``__sparse__`` metadata key (docs/sparse.md), and
    ``load_file(..., sparse=True)`` gives it back."""
    if sparse:
        from ._sparse import split

        tensors, metadata = split(tensors, metadata)
    _serialize_file(_specs(tensors), filename, metadata)


def save_model(
    model: torch.nn.Module,
    filename: Union[str, "os.PathLike[str]"],
    metadata: Optional[Dict[str, str]] = None,
    force_contiguous: bool = True,
) -> None:
    """Saves a model's state dict, keeping one name per group of tied
    (memory-sharing) tensors; each dropped name is recorded in the metadata
    as ``{dropped: kept}`` unless the caller's metadata already has that key."""
    state_dict = model.state_dict()
    for kept, dropped in _remove_duplicate_names(state_dict).items():
        for name in dropped:
            if metadata is None:
                metadata = {}
            metadata.setdefault(name, kept)
            del state_dict[name]
    if force_contiguous:
        state_dict = {k: v.contiguous() for k, v in state_dict.items()}
    try:
        save_file(state_dict, filename, metadata=metadata)
    except ValueError as e:
        raise ValueError(f"{e} Or use save_model(..., force_contiguous=True), read the docs for potential caveats.") from e


def load_model(
    model: torch.nn.Module,
    filename: Union[str, "os.PathLike[str]"],
    strict: bool = True,
    device: Union[str, int, torch.device, None] = "cpu",
    *,
    backend: Optional[str] = None,
) -> Tuple[Set[str], List[str]]:
    """Loads a file saved by :func:`save_model` into ``model``; tied tensors
    dropped at save time are restored through the model's own sharing.

    Returns ``(missing, unexpected)``: a set and a list of names, as the
    reference does; with ``strict`` raises RuntimeError if either is
    non-empty.
    """
    state_dict = load_file(filename, device=device, backend=backend)
    to_removes = _remove_duplicate_names(model.state_dict(), preferred_names=state_dict.keys())
    missing_list, unexpected = model.load_state_dict(state_dict, strict=False)
    missing = set(missing_list)
    for dropped in to_removes.values():
        for name in dropped:
            if name in missing:
                missing.remove(name)
            else:
                unexpected.append(name)
    if strict and (missing or unexpected):
        lines = [f"Error(s) in loading state_dict for {model.__class__.__name__}:"]
        if missing:
            lines.append("    Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in sorted(missing)))
        if unexpected:
            lines.append("    Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in sorted(unexpected)))
        raise RuntimeError("\n".join(lines))
    return missing, unexpected


# --- loading ------------------------------------------------------------------


def load_file(
    filename: Union[str, "os.PathLike[str]"],
    device: Union[str, int, torch.device, None] = "cpu",
    *,
    backend: Optional[str] = "mmap",
    copy: Optional[bool] = None,
    sparse: bool = False,
) -> Dict[str, torch.Tensor]:
    """Loads every tensor of ``filename``.

    By default (``backend="mmap"``), as in the reference, the tensors view a
    fresh private copy-on-write mapping of the file, each with a storage of
    its own: writes to them never reach the file or any other load. The
    mapping is read ahead on several threads before returning (parallel
    reads when the file is not cached). A file modified in place while
    they live shows through pages not yet written; one truncated makes
    touching the lost pages crash the process (SIGBUS), as with the
    reference. ``backend="pread"`` or ``copy=True`` gives private copies
    instead: the file is read with large positioned reads on several
    threads into memory of the process's own. ``device=None`` means the cpu,
    as in the reference. ``sparse=True`` rebuilds the sparse tensors a file
    written with ``save_file(..., sparse=True)`` describes (docs/sparse.md);
    without it their components load as plain tensors.
    """
    if sparse:
        from ._sparse import join

        with safe_open(filename, framework="pt") as f:
            meta = f.metadata()
        return join(load_file(filename, device, backend=backend, copy=copy), meta)
    backend = "mmap" if backend is None else backend
    copied = copy_mode("pt", backend, copy)
    dev = torch_device(device)  # checked before reading anything
    if dev.type != "cpu":
        # CUDA/ROCm: the staged pipeline (_gpu: pinned ring, copy stream),
        # host memory bounded by the ring; other devices one tensor at a time.
        with safe_open(filename, framework="pt", device=dev, backend=backend, copy=copy) as f:
            return f.get_tensors()
    if copied:
        entries, _metadata, buf = _read_file(filename)
    else:
        f = open_file(filename)
        buf = f.map_cow(populate=True)
        entries = f.entries()
    buf = exported(buf)  # once, not per tensor (a no-op with buffer-protocol builds)
    return {
        name: torch_view(buf, dtype, shape, start, end, name)
        for name, dtype, shape, start, end in entries
    }


def load(data: bytes, *, sparse: bool = False) -> Dict[str, torch.Tensor]:
    """Loads safetensors bytes into a dict of cpu tensors (``sparse=True``:
    see :func:`load_file`)."""
    entries, metadata, buf = _deserialize(data)
    buf = exported(buf)
    out = {
        name: torch_view(buf, dtype, shape, start, end, name)
        for name, dtype, shape, start, end in entries
    }
    if sparse:
        from ._sparse import join

        return join(out, metadata)
    return out


# --- the reference's private names ----------------------------------------------
#
# Some libraries import private names from ``safetensors.torch`` (vLLM reads
# ``_TYPES``, torch.distributed.checkpoint calls ``_getdtype``). The same
# names here keep that code working when it imports tensorseal instead.

_float8_e4m3fn = getattr(torch, "float8_e4m3fn", None)
_float8_e4m3fnuz = getattr(torch, "float8_e4m3fnuz", None)
_float8_e5m2 = getattr(torch, "float8_e5m2", None)
_float8_e5m2fnuz = getattr(torch, "float8_e5m2fnuz", None)
_float8_e8m0 = getattr(torch, "float8_e8m0fnu", None)
_float4_e2m1_x2 = getattr(torch, "float4_e2m1fn_x2", None)

_ALL_TYPES = _dtypes.torch_types()

#: safetensors dtype code -> torch dtype, for the codes this torch has. F4 is
#: left out, as in the reference: its torch dtype packs two values per element,
#: so a header shape cannot be used with it as is.
_TYPES: Dict[str, torch.dtype] = {code: dt for code, dt in _ALL_TYPES.items() if code != "F4"}

#: torch dtype -> bytes per element (float4_e2m1fn_x2: one byte, two values).
_SIZE: Dict[torch.dtype, int] = {dt: dt.itemsize for dt in _ALL_TYPES.values()}


def _getdtype(dtype_str: str) -> torch.dtype:
    """The torch dtype for a safetensors code; KeyError if there is none."""
    return _TYPES[dtype_str]


def _view2torch(safeview) -> Dict[str, torch.Tensor]:
    """Tensors from :func:`tensorseal.deserialize`'s ``[(name, {"dtype",
    "shape", "data"})]`` output."""
    result = {}
    for name, v in safeview:
        data = v["data"]
        if not isinstance(data, bytearray):
            data = bytearray(data)  # torch wants writable memory
        result[name] = torch_view(data, v["dtype"], list(v["shape"]), 0, len(data), name)
    return result


# --- tensor- and pipeline-parallel loading and saving (tensorseal._parallel) ---


def load_sharded(
    path: Union[str, "os.PathLike[str]"],
    plan: Any,
    rank: Optional[int] = None,
    world_size: Optional[int] = None,
    device: Union[str, int, torch.device, None] = "cpu",
    *,
    collective: bool = False,
    read_gap: int = 0,
) -> Dict[str, torch.Tensor]:
    """Loads this rank's share of a checkpoint (one file, an index, or a
    directory of shards) under a sharding ``plan``: a dict (see README,
    "Parallel loading"), a list of ``(pattern, rule)`` pairs or rule dicts,
    or a path to a JSON file. Rules: ``"replicate"``, ``"skip"``,
    ``("shard", dim)`` (block ``rank`` as ``torch.tensor_split`` cuts it) or
    a callable ``(name, shape, rank, world_size) -> rule``.

    ``rank`` and ``world_size`` default to ``torch.distributed``'s when a
    group is initialised (else 0 and 1). Only the rank's bytes are read, with
    positioned reads in parallel. If any rank fails (a missing shard, a bad
    plan), every rank raises (``RankError`` on the others). With
    ``collective=True`` each tensor is read by one rank and sent to the
    ranks that need it with ``torch.distributed``: every byte is read from
    storage once across the world. ``read_gap`` (bytes) reads through
    gaps up to that size between the rows of a strided (dim > 0) block, one
    read per span instead of one per row: more bytes, far fewer I/O
    operations, for ranks that share a machine.
    """
    from . import _parallel

    rank, world_size = _parallel.rank_world(rank, world_size)
    dev = torch_device(device)

    def run():
        if collective:
            return _parallel.load_collective_torch(path, plan, rank, world_size, torch_view)
        entries, buf = _parallel.load_entries(path, plan, rank, world_size, read_gap=read_gap)
        return {e[0]: torch_view(buf, e[1], e[2], e[3], e[4], e[0]) for e in entries}

    out = _parallel.agree(run, world_size) if not collective else run()
    if dev.type != "cpu":
        out = {k: v.to(dev) for k, v in out.items()}
    return out


def save_sharded(
    tensors: Dict[str, torch.Tensor],
    path: Union[str, "os.PathLike[str]"],
    plan: Any,
    rank: Optional[int] = None,
    world_size: Optional[int] = None,
    metadata: Optional[Dict[str, str]] = None,
    *,
    max_shard_size: Union[int, str, None] = None,
    shapes: Optional[Dict[str, Tuple[str, List[int]]]] = None,
) -> List[str]:
    """Saves the full tensors whose parts the ranks hold, without gathering
    them: every rank computes the same layout and writes its own parts
    with positioned writes into one file (byte-identical to ``save_file``
    of the full dict), or, with ``max_shard_size``, into a directory of
    ``model-0000i-of-0000N.safetensors`` plus ``model.safetensors.index.json``.
    Collective over ``torch.distributed`` when ``world_size > 1`` (the
    ranks' shapes are exchanged to know the full shapes, unless ``shapes``
    maps each name to ``(dtype code, full shape)``). Returns the files."""
    from . import _parallel

    rank, world_size = _parallel.rank_world(rank, world_size)
    return _parallel.save_sharded(
        _specs(tensors), path, plan, rank, world_size, metadata, max_shard_size, shapes
    )


def __getattr__(name: str):
    if name in ("rank_slice", "RankError", "last_load_stats"):
        from . import _parallel

        return getattr(_parallel, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
