"""Tensor- and pipeline-parallel loading and saving: each rank reads (and
writes) only its own bytes.

The native half is the ``tensorseal-parallel`` crate; this module turns
plans given as dicts, lists or JSON files into its JSON form (with Python
callables as rules), and coordinates ranks with ``torch.distributed`` when
it is initialised. Public entry points are re-exported by
``tensorseal.torch`` and ``tensorseal.numpy``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from . import _tensorseal as _native
from ._raw import exported

__all__ = ["RankError", "last_load_stats", "rank_slice"]

#: Statistics of the latest load in this process: ``data_bytes`` (tensor
#: bytes read from storage), ``header_bytes`` (headers and index read),
#: ``runs`` (positioned-read runs planned).
last_load_stats: Dict[str, int] = {}


class RankError(RuntimeError):
    """Raised on every rank when another rank failed (its message quotes
    the failing rank's error), so that no rank waits forever."""


# --- plans ----------------------------------------------------------------------


def _rule_json(rule: Any, callables: List[Callable]) -> Any:
    if callable(rule):
        callables.append(rule)
        return {"callable": len(callables) - 1}
    if isinstance(rule, (tuple, list)) and len(rule) == 2 and rule[0] == "shard":
        return {"shard": int(rule[1])}
    return rule


def _entry_json(entry: Any, callables: List[Callable]) -> Dict[str, Any]:
    if isinstance(entry, dict):
        out = dict(entry)
        if "rule" in out:
            out["rule"] = _rule_json(out["rule"], callables)
        return out
    if isinstance(entry, (tuple, list)) and len(entry) == 2:
        pattern, rule = entry
        key = "regex" if isinstance(pattern, re.Pattern) else "pattern"
        pat = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
        return {key: pat, "rule": _rule_json(rule, callables)}
    raise TypeError(f"a plan rule is a dict or a (pattern, rule) pair, not {entry!r}")


def plan_json(plan: Any) -> Tuple[str, List[Callable]]:
    """A plan (dict, list of rules, JSON text or a path to a JSON file) as
    the native JSON text plus the list of callables its rules refer to."""
    if isinstance(plan, (str, os.PathLike)) and not (isinstance(plan, str) and plan.lstrip().startswith("{")):
        with open(plan, encoding="utf-8") as f:
            plan = json.load(f)
    elif isinstance(plan, str):
        plan = json.loads(plan)
    callables: List[Callable] = []
    if isinstance(plan, (list, tuple)):
        plan = {"rules": list(plan)}
    if not isinstance(plan, dict):
        raise TypeError(f"a plan is a dict, a list of rules or a JSON path, not {type(plan).__name__}")
    out = dict(plan)
    out["rules"] = [_entry_json(e, callables) for e in plan.get("rules", [])]
    if "default" in out:
        out["default"] = _rule_json(out["default"], callables)
    return json.dumps(out), callables


# --- ranks ----------------------------------------------------------------------


def _dist():
    """``torch.distributed`` when torch is loaded and a group is initialised."""
    if "torch" not in sys.modules:
        return None
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def rank_world(rank: Optional[int], world_size: Optional[int]) -> Tuple[int, int]:
    dist = _dist()
    if rank is None:
        rank = dist.get_rank() if dist is not None else 0
    if world_size is None:
        world_size = dist.get_world_size() if dist is not None else 1
    return int(rank), int(world_size)


def agree(fn: Callable[[], Any], world_size: int) -> Any:
    """Runs ``fn`` on every rank, then exchanges an error flag: a rank whose
    ``fn`` raised re-raises its error; every other rank raises ``RankError``
    naming the failing ranks. Without an initialised group, just ``fn()``."""
    err: Optional[BaseException] = None
    result = None
    try:
        result = fn()
    except Exception as e:  # re-raised below, after telling the others
        err = e
    dist = _dist()
    if dist is not None and world_size > 1 and dist.get_world_size() == world_size:
        msgs: List[Optional[str]] = [None] * world_size
        dist.all_gather_object(msgs, None if err is None else f"{type(err).__name__}: {err}")
        if err is not None:
            raise err
        bad = [f"rank {r}: {m}" for r, m in enumerate(msgs) if m]
        if bad:
            raise RankError("another rank failed: " + "; ".join(bad))
    elif err is not None:
        raise err
    return result


# --- loading --------------------------------------------------------------------


def load_entries(path, plan, rank, world_size, owned=None, read_gap=0):
    """``(entries, buffer)`` of ``rank``'s share (or, with ``owned``, of
    the whole of those tensors)."""
    text, callables = plan_json(plan)
    entries, buf, (data, headers, runs) = _native.parallel_load(
        os.fspath(path), text, rank, world_size, callables, owned, int(read_gap)
    )
    last_load_stats.clear()
    last_load_stats.update(data_bytes=data, header_bytes=headers, runs=runs)
    return entries, exported(buf)  # a no-op with buffer-protocol builds


def rank_slice(
    plan: Any,
    name: str,
    shape: Sequence[int],
    rank: Optional[int] = None,
    world_size: Optional[int] = None,
    names: Optional[Sequence[str]] = None,
) -> Optional[Tuple[slice, ...]]:
    """The index of ``rank``'s part of tensor ``name`` of ``shape`` under
    ``plan``: a tuple of slices (``()`` = everything), or ``None`` when the
    rank skips it. For custom loaders::

        with safe_open(path, "pt") as f:
            sl = rank_slice(plan, name, f.get_slice(name).get_shape())
            part = None if sl is None else f.get_slice(name)[sl]

    ``names`` (all tensor names) is needed only by a pipeline plan that
    infers its layer count from the checkpoint.
    """
    rank, world_size = rank_world(rank, world_size)
    text, callables = plan_json(plan)
    a = _native.parallel_rank_block(
        text, name, list(shape), rank, world_size, callables, None if names is None else list(names)
    )
    if a is None:
        return None
    if a == "whole":
        return ()
    dim, start, stop = a
    return (slice(None),) * dim + (slice(start, stop),)


def _owners(tensors, per_rank, world_size) -> List[Optional[int]]:
    """Collective mode: the rank that reads each tensor (None: nobody needs
    it), balancing bytes read; every rank computes the same answer."""
    load = [0] * world_size
    owners: List[Optional[int]] = []
    for i, (_name, dtype, shape) in enumerate(tensors):
        need = [r for r in range(world_size) if per_rank[r][i] is not None]
        if not need:
            owners.append(None)
            continue
        n = 1
        for d in shape:
            n *= d
        r = min(need, key=lambda x: (load[x], x))
        load[r] += n
        owners.append(r)
    return owners


def load_collective_torch(path, plan, rank: int, world_size: int, view):
    """Collective mode for torch: each tensor is read by one rank (among
    those that need it) and sent to the others with ``torch.distributed``
    (``broadcast`` when every rank needs the whole tensor, else ``isend``/
    ``recv`` of each rank's block). Every byte is read from storage once."""
    import torch

    dist = _dist()
    text, callables = plan_json(plan)
    tensors, per_rank = _native.parallel_assignments(os.fspath(path), text, world_size, callables)
    owners = _owners(tensors, per_rank, world_size)
    mine = [tensors[i][0] for i, o in enumerate(owners) if o == rank]
    entries, buf = load_entries(path, plan, rank, world_size, owned=mine)
    full = {e[0]: view(buf, e[1], e[2], e[3], e[4], e[0]) for e in entries}
    out: Dict[str, Any] = {}
    pending = []

    def part(t, a):
        if a == "whole":
            return t
        dim, start, stop = a
        return t.narrow(dim, start, stop - start).contiguous()

    def shape_of(shape, a):
        if a == "whole":
            return list(shape)
        dim, start, stop = a
        s = list(shape)
        s[dim] = stop - start
        return s

    for i, (name, code, shape) in enumerate(tensors):
        owner = owners[i]
        if owner is None:
            continue
        assigned = [per_rank[r][i] for r in range(world_size)]
        if dist is None or world_size == 1:
            out[name] = part(full[name], assigned[rank])
            continue
        if all(a == "whole" for a in assigned):
            t = full[name] if rank == owner else None
            if t is None:
                from ._dtypes import torch_dtype

                t = torch.empty(shape, dtype=torch_dtype(code, name))
            dist.broadcast(t, src=owner)
            out[name] = t
            continue
        if rank == owner:
            t = full[name]
            for r in range(world_size):
                a = assigned[r]
                if a is None:
                    continue
                p = part(t, a)
                if r == rank:
                    out[name] = p
                elif p.numel():
                    pending.append(dist.isend(p, dst=r))
        elif assigned[rank] is not None:
            from ._dtypes import torch_dtype

            p = torch.empty(shape_of(shape, assigned[rank]), dtype=torch_dtype(code, name))
            if p.numel():
                dist.recv(p, src=owner)
            out[name] = p
    for w in pending:
        w.wait()
    return out


# --- saving ---------------------------------------------------------------------


def save_sharded(specs, path, plan, rank, world_size, metadata, max_shard_size, shapes):
    """Saving without gathering. ``specs``: this rank's ``(name, dtype,
    shape, data)`` (data a buffer or a callable yielding chunks)."""
    text, callables = plan_json(plan)
    dist = _dist()
    local = [(n, c, list(s)) for n, c, s, _ in specs]

    def plan_step():
        if callables:
            raise TypeError("saving needs a plan of patterns; callable rules are for loading")
        if shapes is not None:
            full = [(n, c, list(s)) for n, (c, s) in shapes.items()]
        elif world_size == 1:
            full = local
        elif dist is not None:
            gathered: List[Any] = [None] * world_size
            dist.all_gather_object(gathered, local)
            full = _native.parallel_full_specs(text, gathered)
        else:
            raise ValueError("save_sharded with world_size > 1 needs torch.distributed or shapes=")
        size = _size(max_shard_size)
        target = os.fspath(path)
        ps = _native.ParallelSave(target, full, text, rank, world_size, metadata, size)
        data = {n: d for n, _c, _s, d in specs}
        shapes_local = {n: s for n, _c, s in local}
        bufs = []
        for name, shape in ps.parts():
            if name not in data:
                raise ValueError(f"rank {rank} must hold a part of {name!r} (shape {shape}) but has no such tensor")
            if list(shapes_local[name]) != list(shape):
                raise ValueError(
                    f"rank {rank} holds {name!r} with shape {shapes_local[name]}, the plan gives it {shape}"
                )
            d = data[name]
            bufs.append(b"".join(bytes(c) for c in d()) if callable(d) else d)
        return ps, bufs

    ps, bufs = agree(plan_step, world_size)

    def create():
        if rank == 0:
            if max_shard_size is not None:
                os.makedirs(path, exist_ok=True)
            ps.create_files()

    agree(create, world_size)
    agree(lambda: ps.write(bufs), world_size)
    return ps.files()


def _size(max_shard_size) -> Optional[int]:
    if max_shard_size is None:
        return None
    if isinstance(max_shard_size, int):
        return max_shard_size
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    m = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", str(max_shard_size))
    if not m or (m.group(2) and m.group(2).upper() not in units):
        raise ValueError(f"invalid max_shard_size {max_shard_size!r} (examples: 5GB, 500MB, 10GiB)")
    return int(float(m.group(1)) * units.get(m.group(2).upper(), 1))
