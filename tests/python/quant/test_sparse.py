"""Sparse torch tensors through tensorseal.torch with ``sparse=True``
(docs/sparse.md), the reference's refusal by default, and files the
reference safetensors reads as plain tensors."""

import json

import pytest
import torch
from safetensors import safe_open as ref_safe_open
from safetensors.torch import load_file as ref_load_file
from safetensors.torch import save_file as ref_save_file

from tensorseal import SafetensorError
from tensorseal.torch import load, load_file, save, save_file


def dense(seed=0, shape=(6, 7), density=0.3, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g).to(dtype)
    return x * (torch.rand(shape, generator=g) < density)


def same(a, b):
    assert a.layout == b.layout and a.dtype == b.dtype and a.shape == b.shape
    assert torch.equal(a.to_dense(), b.to_dense())


@pytest.mark.parametrize(
    "make",
    [
        lambda x: x.to_sparse(),
        lambda x: x.to_sparse_csr(),
        lambda x: x.to_sparse_csc(),
        lambda x: x.reshape(2, 3, 7).to_sparse(),
    ],
    ids=["coo", "csr", "csc", "coo3d"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64])
def test_round_trip(make, dtype, tmp_path):
    s = make(dense(dtype=dtype))
    tensors = {"w": s, "b": torch.arange(3.0)}
    save_file(tensors, tmp_path / "s.safetensors", metadata={"k": "v"}, sparse=True)
    back = load_file(tmp_path / "s.safetensors", sparse=True)
    assert sorted(back) == ["b", "w"]
    same(back["w"], s.coalesce() if s.layout == torch.sparse_coo else s)
    assert torch.equal(back["b"], tensors["b"])
    # Same through bytes.
    same(load(save(tensors, sparse=True), sparse=True)["w"], back["w"])
    # The file is plain safetensors: the reference reads the components.
    plain = ref_load_file(tmp_path / "s.safetensors")
    assert "w" not in plain and "w.values" in plain
    with ref_safe_open(tmp_path / "s.safetensors", "pt") as f:
        meta = f.metadata()
    assert meta["k"] == "v"
    desc = json.loads(meta["__sparse__"])
    assert desc["w"]["shape"] == list(s.shape)


def test_empty_and_all_zero(tmp_path):
    for s in [torch.zeros(4, 5).to_sparse_csr(), torch.zeros(0, 3).to_sparse(), torch.zeros(3, 4).to_sparse_csc()]:
        save_file({"z": s}, tmp_path / "z.safetensors", sparse=True)
        same(load_file(tmp_path / "z.safetensors", sparse=True)["z"], s)


def test_default_refuses_like_the_reference(tmp_path):
    s = dense().to_sparse()
    with pytest.raises(ValueError) as ours:
        save_file({"w": s}, tmp_path / "a.safetensors")
    with pytest.raises(ValueError) as ref:
        ref_save_file({"w": s}, tmp_path / "b.safetensors")
    assert str(ours.value) == str(ref.value)


def test_invalid_components_are_refused(tmp_path):
    s = dense().to_sparse_csr()
    save_file({"w": s}, tmp_path / "s.safetensors", sparse=True)
    t = ref_load_file(tmp_path / "s.safetensors")
    with ref_safe_open(tmp_path / "s.safetensors", "pt") as f:
        meta = f.metadata()
    bad = dict(t)
    bad["w.col_indices"] = bad["w.col_indices"].clone()
    bad["w.col_indices"][0] = 99
    ref_save_file(bad, tmp_path / "bad.safetensors", metadata=meta)
    with pytest.raises(SafetensorError, match="out of bounds"):
        load_file(tmp_path / "bad.safetensors", sparse=True)
    del bad["w.values"]
    ref_save_file(bad, tmp_path / "bad.safetensors", metadata=meta)
    with pytest.raises(SafetensorError, match="w.values"):
        load_file(tmp_path / "bad.safetensors", sparse=True)
    meta2 = dict(meta, __sparse__=json.dumps({"w": {"layout": "bsr", "shape": [6, 7]}}))
    ref_save_file(t, tmp_path / "bad.safetensors", metadata=meta2)
    with pytest.raises(SafetensorError, match="bsr"):
        load_file(tmp_path / "bad.safetensors", sparse=True)
    with pytest.raises(ValueError, match="reserved"):
        save_file({"w": s}, tmp_path / "x.safetensors", metadata={"__sparse__": "{}"}, sparse=True)
