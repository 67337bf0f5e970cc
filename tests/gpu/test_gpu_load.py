"""Loading straight into GPU memory (CUDA, or ROCm through torch's "cuda"
device), checked bit for bit against the reference safetensors.

Skipped, with the reason, where torch sees no GPU. Run on a GPU machine:

    python -m pytest -q -rs tests/gpu

Each test checks that nothing leaks: device memory back to its baseline
(``torch.cuda.memory_allocated``), pinned host memory back to its baseline
(``torch.cuda.host_memory_stats``, where this torch has it) and no reader
thread left (threads named ``tensorseal-read-N``).
"""

from __future__ import annotations

import gc
import os

import pytest
import torch

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA or ROCm GPU (torch.cuda.is_available() is False)"
)

import safetensors.torch as ref  # noqa: E402

import tensorseal  # noqa: E402
import tensorseal.torch as ts  # noqa: E402
from tensorseal import _gpu, safe_open  # noqa: E402
from tensorseal._tensorseal import SafeFile, Stream  # noqa: E402

DEV = "cuda:0"
KIB = 1024


def _reader_threads() -> int:
    n = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                n += f.read().startswith("tensorseal-read")
        except OSError:
            pass
    return n


def _pinned_in_use() -> int:
    """Pinned host bytes checked out of torch's host allocator (its cache
    excluded). A tiny pinned allocation first makes the allocator process
    the events of blocks freed after asynchronous copies."""
    stats = getattr(torch.cuda, "host_memory_stats", None)
    if stats is None:
        return 0
    torch.empty(1, dtype=torch.uint8, pin_memory=True)
    try:
        return stats().get("active_bytes.all.current", 0)
    except RuntimeError:
        return 0


class _Baseline:
    """Device memory, pinned memory and reader threads before a test; the
    same must hold after it."""

    def __init__(self):
        torch.cuda.synchronize()
        gc.collect()
        self.device = torch.cuda.memory_allocated(DEV)
        self.pinned = _pinned_in_use()

    def check(self):
        gc.collect()
        torch.cuda.synchronize()
        assert torch.cuda.memory_allocated(DEV) == self.device, "device memory leaked"
        assert _pinned_in_use() == self.pinned, "pinned host memory leaked"
        assert _reader_threads() == 0, "reader threads left running"


@pytest.fixture
def baseline():
    b = _Baseline()
    yield b


def _dtypes():
    names = [
        "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
        "uint16", "uint32", "uint64", "complex64", "float8_e4m3fn", "float8_e5m2", "float8_e8m0fnu",
    ]
    return [getattr(torch, n) for n in names if hasattr(torch, n)]


def _tensor(dt, shape, seed):
    g = torch.Generator().manual_seed(seed)
    n = 1
    for s in shape:
        n *= s
    raw = torch.randint(0, 256, (n * dt.itemsize,), dtype=torch.uint8, generator=g)
    if dt == torch.bool:
        raw = raw % 2
    return raw.view(dt).reshape(shape)


def _checkpoint(path, seed=0, big=(1024, 1031)):
    tensors = {f"t{i}.{str(dt)[6:]}": _tensor(dt, [5, 9 + i], seed + i) for i, dt in enumerate(_dtypes())}
    tensors["scalar"] = torch.tensor(2.5)
    tensors["empty"] = torch.zeros(0, 3, dtype=torch.bfloat16)
    tensors["big"] = _tensor(torch.float32, list(big), seed + 99)
    ref.save_file(tensors, str(path))
    return tensors


def _same(a, b):
    assert a.device == b.device, (a.device, b.device)
    assert a.dtype == b.dtype and a.shape == b.shape
    if a.numel():
        assert torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


@pytest.mark.parametrize("alloc", ["tensor", "group"])
@pytest.mark.parametrize("staging", [64 * KIB, None])
def test_load_file_bit_exact_with_the_reference(tmp_path, monkeypatch, baseline, alloc, staging):
    path = tmp_path / "all.safetensors"
    _checkpoint(path)
    monkeypatch.setenv("TENSORSEAL_DEVICE_ALLOC", alloc)
    if staging:
        monkeypatch.setenv("TENSORSEAL_STAGING_BYTES", str(staging))
    expected = ref.load_file(str(path), device=DEV)
    got = ts.load_file(path, device=DEV)
    assert set(got) == set(expected)
    for name in expected:
        _same(got[name], expected[name])
    st = _gpu.last_stats
    assert st["pinned"] and st["alloc"] == alloc and st["live_threads"] == 0
    if staging:
        assert st["chunks"] > st["slots"], st  # the ring went round
    del got, expected
    baseline.check()


@pytest.mark.parametrize("device", [DEV, 0, torch.device(DEV)])
def test_safe_open_get_tensor_and_get_tensors(tmp_path, baseline, device):
    path = tmp_path / "o.safetensors"
    _checkpoint(path, seed=3)
    with ref.safe_open(str(path), "pt", device=DEV) as r, safe_open(path, "pt", device=device) as f:
        raws = None
        for name in r.keys():
            _same(f.get_tensor(name), r.get_tensor(name))
            if raws is None:
                raws = [t.data_ptr() for t in f._loader._raw]
            # One ring per handle, allocated once.
            assert [t.data_ptr() for t in f._loader._raw] == raws
        got = f.get_tensors()
        for name in r.keys():
            _same(got[name], r.get_tensor(name))
        del got
    baseline.check()


def test_slices_match_the_reference(tmp_path, baseline):
    path = tmp_path / "s.safetensors"
    _checkpoint(path, seed=5)
    with ref.safe_open(str(path), "pt", device=DEV) as r, safe_open(path, "pt", device=DEV) as f:
        for index in (slice(1, 3), (slice(None), slice(0, None, 2)), (2, slice(1, -1)), slice(-4, None)):
            for name in ("big", "t1.float32", "t3.bfloat16"):
                _same(f.get_slice(name)[index], r.get_slice(name)[index])
    baseline.check()


def test_sharded_checkpoint(tmp_path, baseline):
    shards, expected = [], {}
    for k in range(3):
        p = tmp_path / f"model-{k + 1:05d}-of-00003.safetensors"
        t = {f"l{k}.{i}": _tensor(torch.bfloat16, [64, 100 + i], 10 * k + i) for i in range(5)}
        ref.save_file(t, str(p))
        expected.update(ref.load_file(str(p), device=DEV))
        shards.append(p)
    files = [(SafeFile(str(p)), SafeFile(str(p)).entries()) for p in shards]
    got = _gpu.load_files(files, DEV, staging_bytes=256 * KIB)
    for name in expected:
        _same(got[name], expected[name])
    per_file = {}
    for p in shards:
        per_file.update(ts.load_file(p, device=DEV))
    for name in expected:
        _same(per_file[name], expected[name])
    del got, per_file, expected, files
    baseline.check()


class _TruncatingStream:
    def __init__(self, path, args, kw):
        self._s = Stream(*args, **kw)
        self._path = path

    def __len__(self):
        return len(self._s)

    def wait(self, i):
        got = self._s.wait(i)
        if i == 0:
            os.truncate(self._path, 4096)
        return got

    def __getattr__(self, name):
        return getattr(self._s, name)


@pytest.mark.parametrize("direct", ["off", "on"])
def test_file_truncated_mid_load_leaks_nothing(tmp_path, monkeypatch, baseline, direct):
    path = tmp_path / "t.safetensors"
    ref.save_file({"w": _tensor(torch.float32, [1024, 1024], 1), "v": _tensor(torch.int8, [4096], 2)}, str(path))
    monkeypatch.setattr(_gpu, "Stream", lambda *a, **k: _TruncatingStream(str(path), a, k))
    monkeypatch.setenv("TENSORSEAL_STAGING_BYTES", str(256 * KIB))
    monkeypatch.setenv("TENSORSEAL_DIRECT", direct)
    with pytest.raises(tensorseal.SafetensorError, match="truncated") as info:
        ts.load_file(path, device=DEV)
    assert info.value.kind == "file_truncated"
    del info
    baseline.check()


def test_out_of_device_memory_leaks_nothing(tmp_path, baseline):
    path = tmp_path / "big.safetensors"
    ref.save_file({f"w{i}": torch.ones(4 << 20, dtype=torch.uint8) for i in range(16)}, str(path))  # 64 MiB
    free, total = torch.cuda.mem_get_info(DEV)
    # Let this process use what it has now plus 32 MiB: the 64 MiB load fails partway.
    used = torch.cuda.memory_reserved(DEV)
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(min(1.0, (used + (32 << 20)) / total), DEV)
    try:
        for alloc in ("tensor", "group"):
            with pytest.raises(torch.OutOfMemoryError):
                _gpu.load_file(path, DEV, alloc=alloc)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, DEV)
    baseline.check()


def test_loads_are_complete_on_the_callers_stream(tmp_path, baseline):
    """The copies run on a stream of their own; what load_file returns must
    be complete for work queued on the caller's stream right away."""
    path = tmp_path / "c.safetensors"
    t = {f"x{i}": torch.full((1 << 20,), float(i)) for i in range(8)}
    ref.save_file(t, str(path))
    side = torch.cuda.Stream(DEV)
    with torch.cuda.stream(side):
        got = ts.load_file(path, device=DEV)
        sums = {k: v.sum() for k, v in got.items()}
    torch.cuda.synchronize()
    for i in range(8):
        assert sums[f"x{i}"].item() == float(i) * (1 << 20)
    del got, sums
    baseline.check()
