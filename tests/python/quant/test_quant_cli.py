"""`tensorseal inspect` (quantization and sparse sections), `tensorseal
dequantize` and `tensorseal densify`, against the layout fixtures and torch."""

import json
import pathlib

import pytest
import torch
from safetensors.numpy import load_file as np_load
from safetensors.torch import load_file as torch_load

from tensorseal.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parents[3]
LAYOUTS = ROOT / "tests" / "fixtures" / "quant" / "layouts"


def test_inspect_quant_section(run_cli):
    r = run_cli("inspect", LAYOUTS / "fp8_block", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    (layer,) = doc["quantization"]["layers"]
    assert layer["scheme"] == "fp8-block" and layer["group_size"] == "128x128" and layer["bits"] == 8
    assert doc["quantization"]["config_method"] == "fp8"
    assert doc["quantization"]["totals"]["fp8-block"]["layers"] == 1
    assert "sparse" not in doc
    r = run_cli("inspect", LAYOUTS / "gptq_v1")
    assert r.returncode == 0, r.stderr
    assert "quantized layers: 1" in r.stdout and "gptq" in r.stdout and "bits/w" in r.stdout
    # A plain checkpoint has no such section.
    r = run_cli("inspect", ROOT / "tests" / "fixtures" / "quant" / "layouts" / "gptq_v1" / "expected.safetensors", "--json")
    assert "quantization" not in json.loads(r.stdout)


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_dequantize_cli(run_cli, tmp_path, dtype):
    out = tmp_path / "o.safetensors"
    r = run_cli("dequantize", LAYOUTS / "awq_gemm", out, "--dtype", dtype, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["dequantized"] == 1 and doc["files"] == [str(out)]
    got = torch_load(out)
    want = torch_load(LAYOUTS / "awq_gemm" / "expected.safetensors")
    w = "model.layers.0.mlp.down_proj.weight"
    assert torch.equal(got[w].float() if dtype == "f32" else got[w], want[w].to(got[w].dtype))


def test_dequantize_cli_errors(run_cli, tmp_path):
    r = run_cli("dequantize", tmp_path / "missing", tmp_path / "o.safetensors")
    assert r.returncode == 2 and r.stdout == "" and r.stderr.startswith("error:")
    r = run_cli("dequantize", LAYOUTS / "awq_gemm", tmp_path / "o.safetensors", "--dtype", "int4")
    assert r.returncode == 2
    # A broken layer is invalid input: exit 1, nothing written.
    t = np_load(LAYOUTS / "awq_gemm" / "model.safetensors")
    t["model.layers.0.mlp.down_proj.scales"] = t["model.layers.0.mlp.down_proj.scales"][:1, :8]
    from safetensors.numpy import save_file as np_save

    np_save(t, tmp_path / "bad.safetensors")
    r = run_cli("dequantize", tmp_path / "bad.safetensors", tmp_path / "o.safetensors")
    assert r.returncode == 1, r.stderr
    assert "scales" in r.stderr and not (tmp_path / "o.safetensors").exists()


def test_sparse_inspect_and_densify(run_cli, tmp_path):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, 12, generator=g) * (torch.rand(8, 12, generator=g) < 0.25)
    tensors = {"coo": x.to_sparse(), "csr": x.to_sparse_csr(), "csc": x.to_sparse_csc(), "dense": torch.ones(3)}
    src = tmp_path / "s.safetensors"
    save_file(tensors, src, sparse=True)
    r = run_cli("inspect", src, "--json")
    assert r.returncode == 0, r.stderr
    sparse = {s["name"]: s for s in json.loads(r.stdout)["sparse"]}
    nnz = int((x != 0).sum())
    assert set(sparse) == {"coo", "csr", "csc"}
    assert all(s["nnz"] == nnz and s["density"] == pytest.approx(nnz / 96) and s["shape"] == [8, 12] for s in sparse.values())
    r = run_cli("inspect", src)
    assert "sparse tensors: 3" in r.stdout and "density" in r.stdout
    out = tmp_path / "d.safetensors"
    r = run_cli("densify", src, out)
    assert r.returncode == 0, r.stderr
    d = torch_load(out)
    assert sorted(d) == ["coo", "csc", "csr", "dense"]
    for k in ("coo", "csr", "csc"):
        assert torch.equal(d[k], x), k
    assert torch.equal(d["dense"], torch.ones(3))


def test_dequantize_refuses_existing_output_without_force(run_cli, tmp_path):
    """The overwrite rule of convert/split/merge: an existing output is
    refused (exit 2, left untouched) unless --force, which also removes the
    files of an earlier checkpoint that the new one does not overwrite."""
    out = tmp_path / "o.safetensors"
    out.write_bytes(b"keep me")
    r = run_cli("dequantize", LAYOUTS / "awq_gemm", out, "--json")
    assert r.returncode == 2 and "--force" in r.stderr
    assert out.read_bytes() == b"keep me"
    r = run_cli("dequantize", LAYOUTS / "awq_gemm", out, "--json", "--force")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "tensorseal-dequantize/1" and doc["removed"] == []
    assert "model.layers.0.mlp.down_proj.weight" in torch_load(out)

    # A directory holding an older sharded checkpoint: its stale shards go.
    d = tmp_path / "dense"
    d.mkdir()
    stale = d / "model-00002-of-00002.safetensors"
    stale.write_bytes(b"old shard")
    (d / "model.safetensors.index.json").write_text("{}")
    r = run_cli("dequantize", LAYOUTS / "awq_gemm", d)
    assert r.returncode == 2 and stale.exists()
    r = run_cli("dequantize", LAYOUTS / "awq_gemm", d, "--force", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert sorted(pathlib.Path(p).name for p in doc["removed"]) == [
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    ]
    assert sorted(p.name for p in d.glob("model*")) == ["model.safetensors"]
