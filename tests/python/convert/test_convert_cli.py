"""`tensorseal convert`: checkpoints converted without running them equal
`torch.load(weights_only=True)` bit for bit; the reverse direction loads
with weights_only=True; malicious pickles are refused and never run."""

import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import load_file as np_load_file
from safetensors.torch import load_file, save_file

FIX = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "convert"
MAL = FIX / "malicious"
TORCH_FIXTURES = [
    "every_dtype.pt", "every_dtype_legacy.pt", "views.pt", "views_legacy.pt", "small.pt",
    "big_endian.pt", "renamed_root.pt", "deflated.pt", "bare_tensor.pt",
]


def raw(t: torch.Tensor) -> bytes:
    """The logical bytes of a tensor, row-major, little-endian."""
    t = t.detach().contiguous().reshape(-1)
    if t.numel() == 0:
        return b""
    return t.view(torch.uint8).numpy().tobytes()


def flat(obj, prefix=""):
    """Tensors of a (nested) checkpoint by dotted path."""
    out = {}
    if isinstance(obj, torch.Tensor):
        out[prefix or "tensor"] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)) and any(isinstance(x, (torch.Tensor, dict, list, tuple)) for x in obj):
        for i, v in enumerate(obj):
            out.update(flat(v, f"{prefix}.{i}" if prefix else str(i)))
    return out


def assert_same(expected: dict, out_path: pathlib.Path):
    got = load_file(out_path)
    with safe_open(out_path, "pt") as f:
        meta = f.metadata() or {}
    assert meta.get("format") == "pt"
    for name, t in expected.items():
        key = name if name in got else meta.get(name)
        assert key in got, f"{name} missing (aliases: {meta})"
        g = got[key]
        assert g.dtype == t.dtype, name
        assert tuple(g.shape) == tuple(t.shape), name
        assert raw(g) == raw(t), name
    assert set(got) <= set(expected)
    return got, meta


@pytest.mark.parametrize("fixture", TORCH_FIXTURES)
def test_torch_checkpoints_convert_bit_exact(run_cli, tmp_path, fixture):
    src = FIX / fixture
    out = tmp_path / "out.safetensors"
    r = run_cli("convert", src, out)
    assert r.returncode == 0, r.stderr
    expected = flat(torch.load(src, weights_only=True))
    assert_same(expected, out)


def test_views_keep_separate_tensors_and_record_identical_alias(run_cli, tmp_path):
    out = tmp_path / "v.safetensors"
    r = run_cli("convert", FIX / "views.pt", out, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["aliases"] == [{"alias": "weight_alias", "kept": "weight"}]
    assert rep["verified"] is True
    got, meta = assert_same(flat(torch.load(FIX / "views.pt", weights_only=True)), out)
    assert meta["weight_alias"] == "weight"
    assert "weight_alias" not in got
    # Overlapping but different views stay separate tensors.
    for name in ["row", "transposed", "strided", "narrow", "expanded"]:
        assert name in got


def test_big_endian_checkpoint_is_swapped(run_cli, tmp_path):
    out = tmp_path / "be.safetensors"
    assert run_cli("convert", FIX / "big_endian.pt", out).returncode == 0
    got = load_file(out)
    assert torch.equal(got["w"], torch.arange(6, dtype=torch.float32).reshape(2, 3))
    assert torch.equal(got["t"], torch.arange(6, dtype=torch.int32).reshape(2, 3).t())
    assert got["c"].item() == 1 + 2j


def test_nested_default_select_and_flatten(run_cli, tmp_path):
    src = FIX / "nested.pt"
    ck = torch.load(src, weights_only=True)
    r = run_cli("convert", src, tmp_path / "a.safetensors")
    assert r.returncode == 0, r.stderr
    assert "state_dict" in r.stderr
    assert_same(flat(ck["state_dict"]), tmp_path / "a.safetensors")

    r = run_cli("convert", src, tmp_path / "b.safetensors", "--select", "ema.model")
    assert r.returncode == 0, r.stderr
    assert_same(flat(ck["ema"]["model"]), tmp_path / "b.safetensors")

    r = run_cli("convert", src, tmp_path / "c.safetensors", "--flatten")
    assert r.returncode == 0, r.stderr
    _, meta = assert_same(flat(ck), tmp_path / "c.safetensors")
    assert "optimizer.state.0.momentum_buffer" in load_file(tmp_path / "c.safetensors")
    values = json.loads(meta["tensorseal.values"])
    assert values["epoch"] == 3 and values["name"] == "run-1"

    r = run_cli("convert", src, tmp_path / "d.safetensors", "--select", "nope")
    assert r.returncode == 1 and "nope" in r.stderr


def test_hf_directory_and_sharded_output(run_cli, tmp_path):
    src = FIX / "hf_sharded"
    expected = {}
    for f in sorted(src.glob("*.bin")):
        expected.update(torch.load(f, weights_only=True))
    out = tmp_path / "st"
    r = run_cli("convert", src, out)
    assert r.returncode == 0, r.stderr
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert files == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    got = {}
    for f in files:
        got.update(load_file(out / f))
    assert {k: raw(v) for k, v in got.items()} == {k: raw(v) for k, v in expected.items()}

    out2 = tmp_path / "st2"
    r = run_cli("convert", src, out2, "--max-shard-size", "40")
    assert r.returncode == 0, r.stderr
    index = json.loads((out2 / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == 3
    out3 = tmp_path / "st3"
    assert run_cli("convert", src / "pytorch_model-00001-of-00002.bin", out3).returncode == 0
    assert (out3 / "model.safetensors").exists()


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIX.glob("*.np[yz]") if p.name != "object_array.npy"))
def test_numpy_files_convert(run_cli, tmp_path, fixture):
    src = FIX / fixture
    out = tmp_path / "n.safetensors"
    r = run_cli("convert", src, out)
    assert r.returncode == 0, r.stderr
    got = np_load_file(out)
    if fixture.endswith(".npy"):
        expected = {src.stem: np.load(src)}
    else:
        with np.load(src) as z:
            expected = {k: z[k] for k in z.files}
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k].dtype == v.dtype.newbyteorder("<") or got[k].dtype == v.dtype
        assert got[k].shape == v.shape
        assert np.ascontiguousarray(got[k]).tobytes() == np.ascontiguousarray(v.astype(v.dtype.newbyteorder("<"))).tobytes()


def test_numpy_object_arrays_are_refused(run_cli, tmp_path):
    r = run_cli("convert", FIX / "object_array.npy", tmp_path / "o.safetensors")
    assert r.returncode == 1
    assert "object array" in r.stderr
    assert not (tmp_path / "o.safetensors").exists()


MANIFEST = json.loads((MAL / "manifest.json").read_text())


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_malicious_pickles_are_refused_and_never_run(run_cli, tmp_path, name):
    work = tmp_path / "work"
    work.mkdir()
    r = run_cli("convert", MAL / f"{name}.pt", "out.safetensors", cwd=work)
    assert r.returncode == 1, r.stderr
    assert f"`{MANIFEST[name]}`" in r.stderr, r.stderr
    assert "refusing global" in r.stderr
    assert not (work / "PWNED").exists()
    assert not (work / "out.safetensors").exists()


def test_malicious_fixture_payload_is_live(tmp_path):
    """Positive control: torch.load(weights_only=False) of the fixture runs the
    payload (in a throw-away directory), so the test above can fail."""
    work = tmp_path / "control"
    work.mkdir()
    shutil.copy(MAL / "reduce_os_system.pt", work / "m.pt")
    code = "import torch; torch.load('m.pt', weights_only=False)"
    subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True)
    assert (work / "PWNED").exists()


def test_reverse_loads_with_weights_only(run_cli, tmp_path):
    tensors = {
        "f32": torch.randn(3, 4),
        "bf16": torch.randn(5).to(torch.bfloat16),
        "f16": torch.randn(2, 2).half(),
        "i64": torch.arange(10),
        "u8": torch.arange(7, dtype=torch.uint8),
        "bool": torch.tensor([True, False]),
        "c64": torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64),
        "u16": torch.arange(3, dtype=torch.int32).to(torch.uint16),
        "u32": torch.arange(3, dtype=torch.int32).to(torch.uint32),
        "u64": torch.arange(3).to(torch.uint64),
        "f8a": torch.randn(4).to(torch.float8_e4m3fn),
        "f8b": torch.randn(4).to(torch.float8_e5m2),
        "empty": torch.empty(0, 2),
        "scalar": torch.tensor(3.0),
        "big": torch.arange(70000, dtype=torch.int32),
    }
    src = tmp_path / "ref.safetensors"
    save_file(tensors, src)
    dst = tmp_path / "back.pt"
    r = run_cli("convert", src, dst, "--to", "torch")
    assert r.returncode == 0, r.stderr
    loaded = torch.load(dst, weights_only=True)
    assert list(loaded) == sorted(tensors) or set(loaded) == set(tensors)
    for k, v in tensors.items():
        assert loaded[k].dtype == v.dtype and loaded[k].shape == v.shape, k
        assert raw(loaded[k]) == raw(v), k
    # Members are aligned to 64 bytes like torch's writer.
    import zipfile
    with zipfile.ZipFile(dst) as z:
        for info in z.infolist():
            if "/data/" in info.filename:
                with open(dst, "rb") as fh:
                    fh.seek(info.header_offset + 26)
                    n, m = np.frombuffer(fh.read(4), dtype="<u2")
                data_start = info.header_offset + 30 + int(n) + int(m)
                assert data_start % 64 == 0, info.filename


def test_reverse_restores_aliases_as_shared_storage(run_cli, tmp_path):
    st = tmp_path / "v.safetensors"
    assert run_cli("convert", FIX / "views.pt", st).returncode == 0
    back = tmp_path / "v.pt"
    r = run_cli("convert", st, back, "--to", "torch")
    assert r.returncode == 0, r.stderr
    loaded = torch.load(back, weights_only=True)
    orig = torch.load(FIX / "views.pt", weights_only=True)
    for k, v in orig.items():
        assert raw(loaded[k]) == raw(v), k
    assert loaded["weight"].data_ptr() == loaded["weight_alias"].data_ptr()
    # And the round trip converts again to the same safetensors tensors.
    st2 = tmp_path / "v2.safetensors"
    assert run_cli("convert", back, st2).returncode == 0
    a, b = load_file(st), load_file(st2)
    assert {k: raw(v) for k, v in a.items()} == {k: raw(v) for k, v in b.items()}


def test_existing_output_needs_force(run_cli, tmp_path):
    out = tmp_path / "x.safetensors"
    out.write_bytes(b"keep")
    r = run_cli("convert", FIX / "small.pt", out)
    assert r.returncode == 2 and "--force" in r.stderr
    assert out.read_bytes() == b"keep"
    assert run_cli("convert", FIX / "small.pt", out, "--force").returncode == 0
    assert_same(torch.load(FIX / "small.pt", weights_only=True), out)


def test_bare_pickle_is_refused_as_incomplete(run_cli, tmp_path):
    import pickle
    p = tmp_path / "plain.pkl"
    p.write_bytes(pickle.dumps({"a": 1}))
    r = run_cli("convert", p, tmp_path / "o.safetensors")
    assert r.returncode == 1 and "bare pickle" in r.stderr


def test_numpy_arrays_inside_a_checkpoint(run_cli, tmp_path):
    src = FIX / "numpy_inside.pt"
    out = tmp_path / "np.safetensors"
    r = run_cli("convert", src, out, "--flatten")
    assert r.returncode == 0, r.stderr
    # Our own benign fixture: loading it with weights_only=False is safe here
    # (torch's weights_only loader does not allow numpy globals by default).
    ck = torch.load(src, weights_only=False)
    with safe_open(out, "np") as f:
        for k in ["np_f32", "np_be_i16", "np_fortran", "np_bool"]:
            a = f.get_tensor(k)
            want = ck[k]
            assert a.shape == want.shape, k
            assert np.array_equal(a, want), k
            assert a.dtype == want.dtype.newbyteorder("<") or a.dtype == want.dtype, k
        assert np.array_equal(f.get_tensor("weights.w"), np.ones(2, dtype=np.float32))


@pytest.mark.parametrize(
    "flags, mode, verified",
    [
        ([], "checksum", True),
        (["--verify", "checksum"], "checksum", True),
        (["--verify=full"], "full", True),
        (["--verify", "none"], "none", False),
        (["--no-verify"], "none", False),
    ],
)
def test_verify_modes_write_identical_bytes(run_cli, tmp_path, flags, mode, verified):
    out = tmp_path / "v.safetensors"
    r = run_cli("convert", FIX / "views.pt", out, "--json", *flags)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["verification"] == mode
    assert rep["verified"] is verified
    ref = tmp_path / "ref.safetensors"
    assert run_cli("convert", FIX / "views.pt", ref, "--verify", "full").returncode == 0
    assert out.read_bytes() == ref.read_bytes()


def test_verify_mode_is_validated_and_no_verify_conflicts(run_cli, tmp_path):
    out = tmp_path / "v.safetensors"
    r = run_cli("convert", FIX / "views.pt", out, "--verify", "sometimes")
    assert r.returncode == 2
    assert "sometimes" in r.stderr
    r = run_cli("convert", FIX / "views.pt", out, "--verify", "full", "--no-verify")
    assert r.returncode == 2
    assert not out.exists()


def _strace_works() -> bool:
    exe = shutil.which("strace")
    if exe is None:
        return False
    r = subprocess.run([exe, "-f", "-o", "/dev/null", "true"], capture_output=True)
    return r.returncode == 0


def _fsyncs(tensorseal_bin, tmp_path, *args):
    """Runs the CLI under strace; returns (CompletedProcess, number of
    fsync/fdatasync calls that succeeded)."""
    log = tmp_path / f"strace-{len(list(tmp_path.iterdir()))}.log"
    r = subprocess.run(
        ["strace", "-f", "-e", "trace=fsync,fdatasync", "-o", str(log), str(tensorseal_bin), *map(str, args)],
        capture_output=True,
        text=True,
    )
    lines = log.read_text().splitlines()
    # With several threads strace splits a call into "fsync(4 <unfinished
    # ...>" and "<... fsync resumed>) = 0": count the calls by their start,
    # and require that none failed.
    calls = [line for line in lines if "fsync(" in line or "fdatasync(" in line]
    failed = [line for line in lines if "sync" in line and "= -1" in line]
    assert not failed, failed
    return r, len(calls)


@pytest.mark.skipif(not _strace_works(), reason="strace is not available or not permitted")
def test_sync_flag_fsyncs_every_output_and_only_then(tensorseal_bin, tmp_path):
    """Without --sync outputs are atomic but not fsynced (like save_file);
    with --sync every file written and its directory are fsynced. Bytes are
    the same either way."""
    src = FIX / "views.pt"
    outs = {}
    for sync in (False, True):
        d = tmp_path / ("sync" if sync else "nosync")
        d.mkdir()
        flags = ["--sync"] if sync else []
        # One file.
        r, n = _fsyncs(tensorseal_bin, tmp_path, "convert", src, d / "one.safetensors", *flags)
        assert r.returncode == 0, r.stderr
        assert n == (2 if sync else 0), (sync, n)  # the file, then its directory
        # Shards and an index: three files, each with its directory.
        r, n = _fsyncs(tensorseal_bin, tmp_path, "convert", src, d / "sharded", "--max-shard-size", "40", *flags)
        assert r.returncode == 0, r.stderr
        shards = sorted(p.name for p in (d / "sharded").iterdir())
        assert "model.safetensors.index.json" in shards and len(shards) >= 3, shards
        assert n == (2 * len(shards) if sync else 0), (sync, n, shards)
        # The reverse direction.
        r, n = _fsyncs(tensorseal_bin, tmp_path, "convert", d / "one.safetensors", d / "back.pt", "--to", "torch", *flags)
        assert r.returncode == 0, r.stderr
        assert n == (2 if sync else 0), (sync, n)
        # split and merge.
        r, n = _fsyncs(tensorseal_bin, tmp_path, "split", d / "one.safetensors", d / "split", "--max-shard-size", "40", *flags)
        assert r.returncode == 0, r.stderr
        parts = sorted(p.name for p in (d / "split").iterdir())
        assert n == (2 * len(parts) if sync else 0), (sync, n, parts)
        r, n = _fsyncs(tensorseal_bin, tmp_path, "merge", d / "split", d / "merged.safetensors", *flags)
        assert r.returncode == 0, r.stderr
        assert n == (2 if sync else 0), (sync, n)
        # No temporary files left anywhere.
        leftovers = [p for p in d.rglob(".*") if "tmp" in p.name]
        assert not leftovers, leftovers
        outs[sync] = {
            str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()
        }
    assert outs[False].keys() == outs[True].keys()
    for name in outs[False]:
        if name.endswith(".pt"):
            continue  # zip timestamps may differ; loaded tensors are compared elsewhere
        assert outs[False][name] == outs[True][name], name
    a = torch.load(tmp_path / "nosync" / "back.pt", weights_only=True)
    b = torch.load(tmp_path / "sync" / "back.pt", weights_only=True)
    assert a.keys() == b.keys() and len(a) > 0
    for k in a:
        assert torch.equal(a[k], b[k]), k
