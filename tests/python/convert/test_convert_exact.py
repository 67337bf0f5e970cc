"""`tensorseal convert` writes exactly what torch.load(weights_only=True) or
numpy.load returns, tensor by tensor (name, dtype, shape, bytes), or refuses
with a clear error and writes nothing: byte order, dict keys, views and the
output size bound, interruption (issue 11, items 11-13).

The fixtures and their expectations are in tests/fixtures/convert/exact/
(scripts/gen_convert_fixtures.py)."""

import json
import pathlib
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import load_file as np_load_file

EXACT = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "convert" / "exact"
MANIFEST = json.loads((EXACT / "manifest.json").read_text())


def expected_tensors(path: pathlib.Path) -> dict:
    """What the standard loader returns, flattened to `name -> ndarray` with
    the names the README documents: dotted paths of str(key) and list
    indices, as numpy arrays (torch tensors' logical row-major values)."""
    if path.suffix == ".npy":
        return {path.stem: np.load(path)}
    if path.suffix == ".npz":
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    if path.is_dir() or path.name.endswith(".index.json"):
        # A sharded checkpoint, as transformers loads it: every tensor of every
        # shard the index names.
        index = path / "pytorch_model.bin.index.json" if path.is_dir() else path
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        out = {}
        for s in shards:
            out.update(expected_tensors(index.parent / s))
        return out
    out = {}

    def walk(obj, prefix):
        if isinstance(obj, torch.Tensor):
            t = obj.detach().contiguous()
            out[prefix or "tensor"] = t.view(torch.uint8).numpy() if t.dtype == torch.bfloat16 else t.numpy()
            out[(prefix or "tensor") + "\0dtype"] = t.dtype
            out[(prefix or "tensor") + "\0shape"] = tuple(t.shape)
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{prefix}.{i}" if prefix else str(i))

    walk(torch.load(path, weights_only=True), "")
    return out


def logical_le_bytes(a: np.ndarray) -> bytes:
    """Row-major little-endian bytes of an array, as safetensors stores it."""
    a = np.ascontiguousarray(a)
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and not np.little_endian):
        a = a.astype(a.dtype.newbyteorder("<"))
    return a.tobytes()


def no_leftovers(folder: pathlib.Path):
    left = [p.name for p in folder.iterdir() if ".tmp-" in p.name]
    assert left == [], f"temporary files left behind: {left}"


@pytest.mark.parametrize("case", sorted(MANIFEST))
def test_exact_fixture(run_cli, tmp_path, case):
    spec = MANIFEST[case]
    src = EXACT / case.split("@")[0]
    out = tmp_path / "out.safetensors"
    r = run_cli("convert", src, out, *spec["args"])
    if spec["expect"] == "refuse":
        assert r.returncode == 1, (r.returncode, r.stderr)
        assert spec["why"] in r.stderr, r.stderr
        assert not out.exists()
        no_leftovers(tmp_path)
        return
    assert r.returncode == 0, r.stderr
    no_leftovers(tmp_path)
    want = expected_tensors(src)
    names = {k for k in want if "\0" not in k}
    numpy_src = src.suffix in (".npy", ".npz")
    with safe_open(out, "np" if numpy_src else "pt") as f:
        # Names of one storage view are written once; the others are aliases in the metadata.
        meta = f.metadata() or {}
        names -= {k for k in names if meta.get(k) in names and meta.get(k) != k}
        assert set(f.keys()) == names
        for name in names:
            w, g = want[name], f.get_tensor(name)
            if numpy_src:
                assert g.dtype.newbyteorder("=") == w.dtype.newbyteorder("="), name
                assert g.shape == w.shape, name
                assert logical_le_bytes(g) == logical_le_bytes(w), name
            else:
                assert g.dtype == want[name + "\0dtype"], name
                assert tuple(g.shape) == want[name + "\0shape"], name
                g = g.contiguous()
                gb = g.view(torch.uint8).numpy() if g.dtype == torch.bfloat16 else g.numpy()
                assert logical_le_bytes(gb) == logical_le_bytes(w), name


def test_big_endian_fixture_really_is_big_endian():
    """The swapped files differ from the little-endian one in their storage
    bytes, so a converter that copied them as is would fail the comparison."""
    import zipfile

    def storages(p):
        with zipfile.ZipFile(EXACT / p) as z:
            return {n.split("/", 1)[1]: z.read(n) for n in z.namelist() if "/data/" in n}

    le, be = storages("bo_little.pt"), storages("bo_big.pt")
    assert le.keys() == be.keys()
    assert sum(le[k] != be[k] for k in le) >= 8


def test_key_names_follow_python_dicts(run_cli, tmp_path):
    out = tmp_path / "k.safetensors"
    assert run_cli("convert", EXACT / "keys_equal_merge.pt", out).returncode == 0
    got = np_load_file(out)
    # SETITEMS 1, True, 1.0 -> key 1 (first object), value of the 1.0 assignment.
    assert {k: float(v[0]) for k, v in got.items()} == {"1": 3.0, "x": 4.0, "2.0": 6.0, "False": 9.0}


def test_collision_names_both_keys(run_cli, tmp_path):
    r = run_cli("convert", EXACT / "keys_int_vs_str.pt", tmp_path / "o.safetensors")
    assert r.returncode == 1
    assert "1 and '1'" in r.stderr, r.stderr
    r = run_cli("convert", EXACT / "keys_dotted_path.pt", tmp_path / "o.safetensors")
    assert "['a.b']" in r.stderr and "['a']['b']" in r.stderr, r.stderr


def test_default_output_limit_scales_with_the_input(run_cli, tmp_path):
    r = run_cli("convert", EXACT / "views_huge_expand.pt", tmp_path / "o.safetensors")
    assert r.returncode == 1
    assert "--max-output-size" in r.stderr and "4398046511104 bytes" in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []
    r = run_cli("convert", EXACT / "views_overlap.pt", tmp_path / "o.safetensors", "--max-output-size", "ten")
    assert r.returncode == 2 and "--max-output-size" in r.stderr


def _expanded_checkpoint(tmp_path, gib=2):
    """A tiny file whose one tensor expands to `gib` GiB of output."""
    src = tmp_path / "expand.pt"
    n = gib << 28  # float32 elements
    torch.save({"x": torch.ones(1).expand(n // 1024, 1024)}, src)
    return src


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_conversion_leaves_no_temporary_file(tensorseal_bin, tmp_path, sig, code):
    src = _expanded_checkpoint(tmp_path)
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "o.safetensors"
    p = subprocess.Popen([str(tensorseal_bin), "convert", src, out, "--max-output-size", "4GiB"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(".tmp-" in f.name for f in outdir.iterdir()):
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "no temporary file appeared"
            time.sleep(0.01)
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == code, err
    assert "interrupted" in err
    assert list(outdir.iterdir()) == []


def test_error_mid_write_leaves_no_temporary_file(run_cli, tmp_path):
    r = run_cli("convert", EXACT / "missing_storage.pt", tmp_path / "o.safetensors")
    assert r.returncode == 1 and "not in the file" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_manifest_covers_each_class_with_several_variants():
    kinds = {"bo_": 0, "keys_": 0, "views_": 0}
    for case in MANIFEST:
        for k in kinds:
            kinds[k] += case.startswith(k)
    assert all(n >= 3 for n in kinds.values()), kinds
