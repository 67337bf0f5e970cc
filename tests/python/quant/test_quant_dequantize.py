"""tensorseal.quant against the committed layout fixtures (quantized and
dequantized with each format's published formula by
scripts/gen_quant_fixtures.py) and, for compressed-tensors layouts, against
the compressed-tensors package itself."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as np_load
from safetensors.torch import load_file as torch_load

import tensorseal.quant as tq
from tensorseal import SafetensorError

ROOT = pathlib.Path(__file__).resolve().parents[3]
LAYOUTS = ROOT / "tests" / "fixtures" / "quant" / "layouts"
NAMES = sorted(p.name for p in LAYOUTS.iterdir())


def test_fixtures_are_what_the_script_makes():
    # The committed fixtures are exactly what the generator makes with the
    # pinned ml_dtypes / torch / numpy.
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_quant_fixtures.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("name", NAMES)
def test_f32_equals_formula_bit_for_bit(name, tmp_path):
    out = tmp_path / "o.safetensors"
    s = tq.dequantize(LAYOUTS / name, out, dtype="f32")
    assert s["dequantized"] == 1 and s["files"] == [str(out)]
    got = np_load(out)
    want = np_load(LAYOUTS / name / "expected.safetensors")
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
        assert got[k].tobytes() == want[k].tobytes(), k


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype,tdtype", [("bf16", torch.bfloat16), ("f16", torch.float16)])
def test_half_outputs_round_like_torch(name, dtype, tdtype, tmp_path):
    out = tmp_path / "o.safetensors"
    info = tq.inspect(LAYOUTS / name)
    tq.dequantize(LAYOUTS / name, out, dtype=dtype)
    got = torch_load(out)
    want = torch_load(LAYOUTS / name / "expected.safetensors")
    w = info[0]["name"]
    assert got[w].dtype == tdtype
    assert torch.equal(got[w].view(torch.int16), want[w].to(tdtype).view(torch.int16))


def test_inspect_reports_scheme_and_effective_bits():
    (layer,) = tq.inspect(LAYOUTS / "gptq_v1")
    assert layer["scheme"] == "gptq" and layer["bits"] == 4 and layer["group_size"] == "32"
    assert layer["shape"] == [16, 64]
    # qweight 512 B + qzeros 16 B + scales 64 B + g_idx 256 B over 1024 weights.
    assert layer["stored_bytes"] == 512 + 16 + 64 + 256
    assert layer["effective_bits"] == pytest.approx((512 + 16 + 64 + 256) * 8 / 1024)
    (layer,) = tq.inspect(LAYOUTS / "gptq_v2")
    assert layer["scheme"] == "gptq_v2"


def test_sharded_directory_output(tmp_path):
    s = tq.dequantize(LAYOUTS / "fp8_block", tmp_path / "d", dtype="f32", max_shard_size=100_000)
    assert len(s["files"]) == 2
    idx = json.loads((tmp_path / "d" / "model.safetensors.index.json").read_text())
    assert set(idx["weight_map"]) == set(np_load(LAYOUTS / "fp8_block" / "expected.safetensors"))


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="int3"):
        tq.dequantize(LAYOUTS / "gptq_v1", tmp_path / "o.safetensors", dtype="int3")
    with pytest.raises(FileNotFoundError):
        tq.dequantize(tmp_path / "missing.safetensors", tmp_path / "o.safetensors")
    # A layer missing a part: the error names it, nothing is written.
    from safetensors.numpy import save_file

    t = np_load(LAYOUTS / "gptq_v1" / "model.safetensors")
    del t["model.layers.0.self_attn.q_proj.qzeros"]
    save_file(t, tmp_path / "m.safetensors")
    with pytest.raises(SafetensorError, match="qzeros") as e:
        tq.dequantize(tmp_path / "m.safetensors", tmp_path / "o.safetensors")
    assert e.value.kind == "quant_missing_tensor"
    assert not (tmp_path / "o.safetensors").exists()


# --- compressed-tensors' own decompressors --------------------------------

ct = pytest.importorskip("compressed_tensors")
CT_CASES = ["ct_pack_sym", "ct_pack_asym", "ct_nvfp4", "ct_mxfp4"]
TORCH_TO_OURS = {torch.bfloat16: "bf16", torch.float16: "f16", torch.float32: "f32"}


@pytest.mark.parametrize("name", CT_CASES)
def test_matches_compressed_tensors(name, tmp_path):
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    cfg = json.loads((LAYOUTS / name / "config.json").read_text())["quantization_config"]
    group = next(iter(cfg["config_groups"].values()))
    scheme = QuantizationScheme(targets=group["targets"], weights=QuantizationArgs(**group["weights"]))
    compressor = BaseCompressor.get_value_from_registry(cfg["format"])
    tensors = torch_load(LAYOUTS / name / "model.safetensors")
    (layer,) = tq.inspect(LAYOUTS / name)
    prefix = layer["name"][: -len(".weight")]
    local = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    theirs = compressor.decompress(local, scheme)["weight"]
    out = tmp_path / "o.safetensors"
    tq.dequantize(LAYOUTS / name, out, dtype=TORCH_TO_OURS[theirs.dtype])
    ours = torch_load(out)[layer["name"]]
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert torch.equal(ours.view(torch.int16 if ours.element_size() == 2 else torch.int32),
                       theirs.contiguous().view(torch.int16 if ours.element_size() == 2 else torch.int32))


def test_quant_is_imported_lazily():
    code = (
        "import sys, tensorseal; assert 'tensorseal.quant' not in sys.modules; "
        "assert callable(tensorseal.quant.dequantize); assert 'tensorseal.quant' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
