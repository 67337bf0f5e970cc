"""Sparse torch tensors in safetensors files, by the convention of
docs/sparse.md: each sparse tensor ``W`` is stored as plain component
tensors (``W.indices`` + ``W.values`` for COO, ``W.crow_indices`` +
``W.col_indices`` + ``W.values`` for CSR, ``W.ccol_indices`` +
``W.row_indices`` + ``W.values`` for CSC) and described in the metadata key
``__sparse__``. Used by ``tensorseal.torch`` when called with
``sparse=True``."""

import json
from typing import Dict, Optional, Tuple

import torch

from ._tensorseal import SafetensorError

KEY = "__sparse__"

#: layout name -> (torch layout, component names in order)
LAYOUTS = {
    "coo": (torch.sparse_coo, ("indices", "values")),
    "csr": (torch.sparse_csr, ("crow_indices", "col_indices", "values")),
    "csc": (torch.sparse_csc, ("ccol_indices", "row_indices", "values")),
}
_BY_TORCH = {v[0]: k for k, v in LAYOUTS.items()}


def split(
    tensors: Dict[str, torch.Tensor], metadata: Optional[Dict[str, str]]
) -> Tuple[Dict[str, torch.Tensor], Optional[Dict[str, str]]]:
    """Replaces each sparse tensor by its components and describes it in
    the metadata. Dense tensors pass through."""
    if not isinstance(tensors, dict) or not any(
        isinstance(t, torch.Tensor) and t.layout != torch.strided for t in tensors.values()
    ):
        return tensors, metadata
    if metadata is not None and KEY in metadata:
        raise ValueError(f"metadata key {KEY!r} is reserved for the sparse tensors' description")
    out: Dict[str, torch.Tensor] = {}
    desc = {}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor) or t.layout == torch.strided:
            out[name] = t
            continue
        layout = _BY_TORCH.get(t.layout)
        if layout is None:
            raise ValueError(f"tensor {name!r}: sparse layout {t.layout} is not one of COO, CSR, CSC")
        if t.dense_dim() != 0 or (layout != "coo" and t.dim() != 2):
            raise ValueError(f"tensor {name!r}: only 2-D CSR/CSC and COO without dense dimensions are supported")
        t = t.detach().cpu()
        if layout == "coo":
            t = t.coalesce()
            parts = (t.indices(), t.values())
        elif layout == "csr":
            parts = (t.crow_indices(), t.col_indices(), t.values())
        else:
            parts = (t.ccol_indices(), t.row_indices(), t.values())
        for comp, p in zip(LAYOUTS[layout][1], parts):
            cname = f"{name}.{comp}"
            if cname in tensors:
                raise ValueError(f"tensor {name!r}: component name {cname!r} is already a tensor")
            out[cname] = p.contiguous()
        d = {"layout": layout, "shape": list(t.shape)}
        if layout == "coo":
            d["coalesced"] = True
        desc[name] = d
    meta = dict(metadata or {})
    meta[KEY] = json.dumps(desc, sort_keys=True, separators=(",", ":"))
    return out, meta


def describe(metadata: Optional[Dict[str, str]]) -> Dict[str, dict]:
    """The ``__sparse__`` description of a file's metadata (empty if none)."""
    if not metadata or KEY not in metadata:
        return {}
    try:
        desc = json.loads(metadata[KEY])
    except ValueError as e:
        raise SafetensorError(f"metadata {KEY!r} is not valid JSON: {e}") from None
    if not isinstance(desc, dict):
        raise SafetensorError(f"metadata {KEY!r} must be a JSON object, not {type(desc).__name__}")
    return desc


def _check(cond: bool, name: str, why: str) -> None:
    if not cond:
        raise SafetensorError(f"sparse tensor {name!r}: {why}")


def join(tensors: Dict[str, torch.Tensor], metadata: Optional[Dict[str, str]]) -> Dict[str, torch.Tensor]:
    """Rebuilds the sparse tensors the metadata describes from their
    components, checking the rules of docs/sparse.md."""
    desc = describe(metadata)
    if not desc:
        return tensors
    out = dict(tensors)
    for name, d in desc.items():
        _check(isinstance(d, dict), name, "description is not an object")
        layout = d.get("layout")
        _check(layout in LAYOUTS, name, f"layout {layout!r} is not coo, csr or csc")
        shape = d.get("shape")
        _check(
            isinstance(shape, list) and all(isinstance(x, int) and x >= 0 for x in shape),
            name,
            f"shape {shape!r} is not a list of non-negative integers",
        )
        _check(name not in tensors, name, "the name is also a plain tensor")
        parts = []
        for comp in LAYOUTS[layout][1]:
            cname = f"{name}.{comp}"
            _check(cname in tensors, name, f"component {cname!r} is missing")
            parts.append(out.pop(cname))
        *idx, values = parts
        for i in idx:
            _check(i.dtype in (torch.int32, torch.int64), name, f"indices must be I32 or I64, not {i.dtype}")
        nnz = values.shape[0] if values.dim() else -1
        _check(values.dim() == 1, name, f"values must be 1-D, not {list(values.shape)}")
        if layout == "coo":
            (ind,) = idx
            _check(ind.dim() == 2 and ind.shape == (len(shape), nnz), name,
                   f"indices shape {list(ind.shape)} is not [{len(shape)}, {nnz}]")
            if nnz:
                _check(bool((ind >= 0).all()) and bool((ind < torch.tensor(shape).unsqueeze(1)).all()),
                       name, "an index is out of bounds")
            coalesced = bool(d.get("coalesced"))
            if coalesced and nnz > 1:
                # Row-major linear positions must strictly increase.
                lin = torch.zeros(nnz, dtype=torch.float64)
                for dim, size in enumerate(shape):
                    lin = lin * size + ind[dim].double()
                _check(bool((lin[1:] > lin[:-1]).all()), name,
                       "marked coalesced but its indices are not sorted and unique")
            t = torch.sparse_coo_tensor(ind.long(), values, shape, is_coalesced=coalesced, check_invariants=True)
        else:
            _check(len(shape) == 2, name, f"shape {shape} is not 2-D")
            comp, plain = idx
            major = shape[0] if layout == "csr" else shape[1]
            minor = shape[1] if layout == "csr" else shape[0]
            _check(comp.dim() == 1 and comp.shape[0] == major + 1, name,
                   f"compressed indices must have {major + 1} entries, not {list(comp.shape)}")
            _check(plain.dim() == 1 and plain.shape[0] == nnz, name, f"{nnz} values but {list(plain.shape)} indices")
            _check(int(comp[0]) == 0 and int(comp[-1]) == nnz and bool((comp[1:] >= comp[:-1]).all()), name,
                   "compressed indices must start at 0, never decrease and end at the number of values")
            if nnz:
                _check(bool((plain >= 0).all()) and bool((plain < minor).all()), name, "an index is out of bounds")
            ctor = torch.sparse_csr_tensor if layout == "csr" else torch.sparse_csc_tensor
            try:
                t = ctor(comp, plain, values, shape, check_invariants=True)
            except RuntimeError as e:
                raise SafetensorError(f"sparse tensor {name!r}: {e}") from None
        out[name] = t
    return out
