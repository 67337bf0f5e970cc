"""The load-to-device pipeline on its host target (device "cpu").

The same ring, reader threads, ordering, error handling and O_DIRECT choice
that load onto a GPU run here with plain memory as the staging slots and
cpu tensors as the "device": results are compared with the reference
safetensors, and the error paths are checked to leave no reader thread
behind. The GPU-only parts (pinned memory, copy stream, events) are in
tests/gpu/.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import safetensors.torch as ref
import torch

import tensorseal
from tensorseal import _gpu, safe_open
from tensorseal._tensorseal import SafeFile, Stream

ROOT = pathlib.Path(__file__).resolve().parents[3]
KIB = 1024


def _threads() -> int:
    """Reader threads of the pipeline alive in this process (named
    tensorseal-read-N; the kernel keeps the first 15 characters)."""
    n = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                n += f.read().startswith("tensorseal-read")
        except OSError:  # the thread ended meanwhile
            pass
    return n


def _dtypes():
    names = [
        "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
        "uint16", "uint32", "uint64", "complex64", "float8_e4m3fn", "float8_e5m2", "float8_e8m0fnu",
    ]
    return [getattr(torch, n) for n in names if hasattr(torch, n)]


def _tensor(dt, shape, seed):
    g = torch.Generator().manual_seed(seed)
    n = int(np.prod(shape)) if shape else 1
    raw = torch.randint(0, 256, (n * dt.itemsize,), dtype=torch.uint8, generator=g)
    if dt == torch.bool:
        raw = raw % 2
    return raw.view(dt).reshape(shape)


def _checkpoint(path, seed=0):
    """Every dtype, odd sizes (so tensors start at unaligned offsets), an
    empty tensor and a 0-d one, plus a tensor spanning many slots."""
    tensors = {}
    for i, dt in enumerate(_dtypes()):
        tensors[f"t{i}.{str(dt)[6:]}"] = _tensor(dt, [3, 7 + i], seed + i)
    tensors["scalar"] = torch.tensor(3.5, dtype=torch.float32)
    tensors["empty"] = torch.zeros(0, 4, dtype=torch.float16)
    tensors["big"] = _tensor(torch.float32, [300, 257], seed + 99)
    ref.save_file(tensors, str(path), metadata={"format": "pt"})
    return tensors


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)) if a.numel() else True


@pytest.mark.parametrize("alloc", ["tensor", "group"])
@pytest.mark.parametrize("direct", ["off", "on", "auto"])
@pytest.mark.parametrize("staging", [16 * KIB, 64 * KIB, 256 << 20])
def test_every_dtype_bit_exact_with_the_reference(tmp_path, alloc, direct, staging):
    path = tmp_path / "all.safetensors"
    _checkpoint(path)
    expected = ref.load_file(str(path))
    out = _gpu.load_file(path, "cpu", staging_bytes=staging, slots=2, alloc=alloc, direct=direct, threads=3)
    assert set(out) == set(expected)
    for name, t in expected.items():
        assert _same(out[name], t), name
    stats = _gpu.last_stats
    assert stats["live_threads"] == 0 and _threads() == 0
    assert stats["direct_reads"] + stats["buffered_reads"] == stats["chunks"] > 0
    if staging == 16 * KIB:
        # The ring is reused many times over.
        assert stats["chunks"] > 4 * stats["slots"]
    if staging == 256 << 20:
        # A small file gets a small ring: host memory is bounded by what is read.
        assert stats["slot_bytes"] <= os.path.getsize(path) + 2 * 4096
    if direct == "off":
        assert stats["direct_reads"] == 0


def test_group_allocation_is_one_buffer_per_dtype(tmp_path):
    path = tmp_path / "g.safetensors"
    ref.save_file({"a": torch.ones(10), "b": torch.zeros(5), "c": torch.ones(3, dtype=torch.int8)}, str(path))
    out = _gpu.load_file(path, "cpu", alloc="group")
    assert out["a"].untyped_storage().data_ptr() == out["b"].untyped_storage().data_ptr()
    assert out["c"].untyped_storage().data_ptr() != out["a"].untyped_storage().data_ptr()
    # Adjacent same-dtype tensors are copied with one copy.
    assert _gpu.last_stats["copies"] == 2
    out = _gpu.load_file(path, "cpu", alloc="tensor")
    assert len({t.untyped_storage().data_ptr() for t in out.values()}) == 3
    assert all(t.untyped_storage().nbytes() == t.nbytes for t in out.values())


def test_sharded_checkpoint_through_one_ring(tmp_path):
    files, expected = [], {}
    for k in range(3):
        p = tmp_path / f"model-{k:05d}-of-00003.safetensors"
        t = {f"layer{k}.{i}": _tensor(torch.float16, [17, 31 + i], 10 * k + i) for i in range(4)}
        ref.save_file(t, str(p))
        expected.update(t)
        f = SafeFile(str(p))
        files.append((f, f.entries()))
    out = _gpu.load_files(files, "cpu", staging_bytes=32 * KIB, slots=2)
    assert set(out) == set(expected)
    for name, t in expected.items():
        assert _same(out[name], t), name


def test_a_subset_of_tensors_reads_only_their_chunks(tmp_path):
    path = tmp_path / "s.safetensors"
    ref.save_file({f"t{i}": _tensor(torch.float32, [256, 256], i) for i in range(8)}, str(path))
    f = SafeFile(str(path))
    wanted = [e for e in f.entries() if e[0] in ("t2", "t6")]
    with _gpu.Loader("cpu", direct="off") as loader:
        out = loader.load(f, wanted)
        assert set(out) == {"t2", "t6"}
        assert loader.stats["bytes_read"] == 2 * 256 * 256 * 4
    assert _same(out["t6"], _tensor(torch.float32, [256, 256], 6))


class _TruncatingStream:
    """Wraps the native Stream: truncates the file once chunk `at` has been
    taken, so the readers find it short partway through the load."""

    def __init__(self, path, at, inner_args, inner_kwargs=None):
        self._s = Stream(*inner_args, **(inner_kwargs or {}))
        self._path, self._at = path, at

    def __len__(self):
        return len(self._s)

    def wait(self, i):
        got = self._s.wait(i)
        if i == self._at:
            os.truncate(self._path, 4096)
        return got

    def __getattr__(self, name):
        return getattr(self._s, name)


@pytest.mark.parametrize("direct", ["off", "on"])
def test_file_truncated_mid_load_is_a_clean_error(tmp_path, monkeypatch, direct):
    path = tmp_path / "t.safetensors"
    ref.save_file({"w": _tensor(torch.float32, [512, 512], 1), "v": _tensor(torch.int8, [1000], 2)}, str(path))
    made = []

    def stream(*args, **kw):
        s = _TruncatingStream(str(path), 0, args, kw)
        made.append(s)
        return s

    monkeypatch.setattr(_gpu, "Stream", stream)
    loader = _gpu.Loader("cpu", staging_bytes=64 * KIB, slots=2, direct=direct, threads=4)
    with pytest.raises(tensorseal.SafetensorError, match="truncated") as info:
        loader.load(SafeFile(str(path)), SafeFile(str(path)).entries())
    assert info.value.kind == "file_truncated"
    assert made and made[0].live_threads() == 0
    assert _gpu.last_stats["live_threads"] == 0
    assert _threads() == 0
    loader.close()


def test_an_error_in_the_copy_loop_cancels_and_joins_the_readers(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    ref.save_file({"w": _tensor(torch.float32, [512, 512], 1)}, str(path))
    made = []

    class Interrupting(_TruncatingStream):
        def wait(self, i):
            if i == 3:
                raise KeyboardInterrupt
            return self._s.wait(i)

    def stream(*args, **kw):
        made.append(Interrupting(str(path), -1, args, kw))
        return made[-1]

    monkeypatch.setattr(_gpu, "Stream", stream)
    f = SafeFile(str(path))
    with pytest.raises(KeyboardInterrupt):
        _gpu.load_files([(f, f.entries())], "cpu", staging_bytes=64 * KIB, slots=2, threads=4)
    assert made[0].live_threads() == 0 and _threads() == 0
    # The stream was cancelled: a later wait raises instead of blocking.
    with pytest.raises(tensorseal.SafetensorError) as info:
        made[0]._s.wait(4)
    assert info.value.kind == "cancelled"


def test_truncated_before_the_load_is_an_error_too(tmp_path):
    path = tmp_path / "t.safetensors"
    ref.save_file({"w": _tensor(torch.float32, [512, 512], 1)}, str(path))
    f = SafeFile(str(path))
    os.truncate(path, 100_000)
    with pytest.raises(ValueError, match="outside the file"):
        # The header was validated against the old size: ranges are
        # refused before any read (the file object keeps its length).
        Stream(f, [(f.entries()[0][3], 2_000_000, 0, 0)], [bytearray(8192)])
    with pytest.raises(tensorseal.SafetensorError, match="truncated"):
        _gpu.Loader("cpu").load(f, f.entries())


def _direct_works(path) -> bool:
    """Whether this file system takes O_DIRECT reads (probed directly)."""
    import mmap

    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except (OSError, AttributeError):
        return False
    try:
        buf = mmap.mmap(-1, 4096)
        os.preadv(fd, [buf], 0)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="O_DIRECT is Linux-only")
@pytest.mark.parametrize("where", ["tmp", "shm"])
def test_direct_reads_where_allowed_buffered_otherwise(tmp_path, where):
    if where == "shm":
        if not os.path.isdir("/dev/shm"):
            pytest.skip("no /dev/shm")
        folder = pathlib.Path("/dev/shm") / f"tensorseal-test-{os.getpid()}"
        folder.mkdir()
    else:
        folder = tmp_path
    try:
        path = folder / "d.safetensors"
        expected = _checkpoint(path)
        out = _gpu.load_file(path, "cpu", staging_bytes=64 * KIB, direct="on")
        for name, t in expected.items():
            assert _same(out[name], t), name
        s = _gpu.last_stats
        if _direct_works(str(path)):
            # ext4/xfs/btrfs, and tmpfs since Linux 6.6, take O_DIRECT.
            assert s["direct_reads"] == s["chunks"] and s["direct_fallbacks"] == 0, s
        else:
            # tmpfs before 6.6, and others, refuse it: buffered reads.
            assert s["direct_reads"] == 0 and s["direct_fallbacks"] == 1, s
            assert s["buffered_reads"] == s["chunks"]
    finally:
        if where == "shm":
            for p in folder.iterdir():
                p.unlink()
            folder.rmdir()


def test_misaligned_slots_fall_back_to_buffered_reads(tmp_path):
    path = tmp_path / "m.safetensors"
    ref.save_file({"w": _tensor(torch.float32, [100, 100], 3)}, str(path))
    f = SafeFile(str(path))
    name, _code, _shape, start, end = f.entries()[0]
    raw = np.zeros(3 * 8192 + 4096 + 1, dtype=np.uint8)
    skip = (-raw.ctypes.data) % 4096 + 1  # misaligned on purpose
    slots = [raw[skip + k * 8192 : skip + (k + 1) * 8192] for k in range(3)]
    s = Stream(f, [(start, end - start, 0, 0)], slots, 2, "on")
    dst = np.zeros(end - start, dtype=np.uint8)
    for i in range(len(s)):
        slot, copies = s.wait(i)
        for _d, doff, soff, n in copies:
            dst[doff : doff + n] = slots[slot][soff : soff + n]
        s.release(i)
    st = s.stats()
    s.close()
    assert st["direct_reads"] == 0 and st["direct_fallbacks"] == 1
    assert np.array_equal(dst, _tensor(torch.float32, [100, 100], 3).reshape(-1).view(torch.uint8).numpy())


def test_stream_arguments_are_checked(tmp_path):
    path = tmp_path / "a.safetensors"
    ref.save_file({"w": torch.ones(10)}, str(path))
    f = SafeFile(str(path))
    with pytest.raises(ValueError, match="direct"):
        Stream(f, [], [bytearray(8192)], None, "sometimes")
    with pytest.raises(ValueError, match="writable"):
        Stream(f, [], [b"\0" * 8192])
    with pytest.raises(tensorseal.SafetensorError) as info:
        Stream(f, [(0, 8, 0, 0)], [bytearray(4096)])
    assert info.value.kind == "staging_slot_size"
    with pytest.raises(tensorseal.SafetensorError) as info:
        Stream(f, [(0, 8, 0, 0)], [])
    assert info.value.kind in ("staging_slot", "staging_slot_size")
    s = Stream(f, [(0, 8, 0, 0)], [bytearray(8192)])
    with pytest.raises(tensorseal.SafetensorError) as info:
        s.wait(5)
    assert info.value.kind == "chunk_order"
    s.wait(0)
    s.release(0)
    with pytest.raises(tensorseal.SafetensorError) as info:
        s.release(0)  # released already
    assert info.value.kind == "chunk_order"
    s.close()
    for bad in (dict(staging_bytes=0), dict(slots=-1), dict(alloc="many"), dict(direct="yes"), dict(threads=0)):
        with pytest.raises(tensorseal.InvalidArgumentError):
            _gpu.Loader("cpu", **bad)
    with pytest.raises(tensorseal.InvalidArgumentError):
        _gpu.Loader("meta")


def test_environment_knobs(monkeypatch):
    monkeypatch.setenv("TENSORSEAL_STAGING_BYTES", str(1 << 20))
    monkeypatch.setenv("TENSORSEAL_STAGING_SLOTS", "3")
    monkeypatch.setenv("TENSORSEAL_DEVICE_ALLOC", "group")
    monkeypatch.setenv("TENSORSEAL_DIRECT", "off")
    loader = _gpu.Loader("cpu")
    assert (loader.staging_bytes, loader.slots, loader.alloc, loader.direct) == (1 << 20, 3, "group", "off")
    monkeypatch.setenv("TENSORSEAL_STAGING_BYTES", "lots")
    with pytest.raises(tensorseal.InvalidArgumentError, match="TENSORSEAL_STAGING_BYTES"):
        _gpu.Loader("cpu")


def test_safe_open_on_cuda_uses_the_staged_loader(tmp_path):
    """Routing only: the loader for a CUDA device is made without touching
    CUDA (its copy stream and pinned ring are made on first load)."""
    path = tmp_path / "r.safetensors"
    ref.save_file({"w": torch.ones(10), "v": torch.ones(3)}, str(path))
    with safe_open(path, "pt", device="cuda:0") as f:
        loader = f._staged(f._handle())
        assert isinstance(loader, _gpu.Loader) and loader.device == torch.device("cuda:0")
        assert loader.size_hint == 13 * 4
        assert f._staged(f._handle()) is loader
    assert f._loader is None
    with safe_open(path, "pt") as f:
        assert f._staged(f._handle()) is None
    with safe_open(path, "np") as f:
        assert f._staged(f._handle()) is None
    import io

    from tensorseal import _safe_open_handle

    # A Python stream has no file for the readers: it keeps the old path.
    with _safe_open_handle(io.BytesIO(path.read_bytes()), "pt", device="cuda:0") as f:
        assert f._staged(f._handle()) is None


def test_loader_close_frees_the_ring(tmp_path):
    path = tmp_path / "f.safetensors"
    ref.save_file({"w": torch.ones(1000)}, str(path))
    f = SafeFile(str(path))
    loader = _gpu.Loader("cpu")
    loader.load(f, f.entries())
    import weakref

    refs = [weakref.ref(r) for r in loader._raw]
    assert refs
    loader.close()
    import gc

    gc.collect()
    assert all(r() is None for r in refs)


def test_importing_tensorseal_does_not_import_the_staged_loader():
    code = "import sys, tensorseal; print('tensorseal._gpu' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_bench_gpu_dry_run(tmp_path):
    """scripts/bench_gpu.py --dry-run: a tiny file, the host target, every
    measurement path of the real benchmark (so it cannot rot without a GPU)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_gpu.py"), "--dry-run", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for what in ("pinned H2D", "reference load_file", "tensorseal load_file", "ratio", "% of pinned"):
        assert what in text, text
    assert "page cache" in text and "cold" in text
    assert not list(tmp_path.glob("*.safetensors")), "the benchmark removes its checkpoint"


def test_a_failed_load_keeps_no_tensor_alive_through_its_exception(tmp_path, monkeypatch):
    """The exception of a failed load may be kept (logged, re-raised later):
    it must not keep the call's "device" tensors alive through its frames."""
    import weakref

    path = tmp_path / "k.safetensors"
    ref.save_file({f"w{i}": torch.ones(1000) for i in range(4)}, str(path))
    made = []
    real_empty = torch.empty

    def empty(*a, **kw):
        t = real_empty(*a, **kw)
        if kw.get("device") is not None:
            made.append(weakref.ref(t))
            if len(made) == 3:
                raise torch.OutOfMemoryError("simulated: out of device memory")
        return t

    monkeypatch.setattr(torch, "empty", empty)
    f = SafeFile(str(path))
    kept = []
    for alloc in ("tensor", "group"):
        made.clear()
        try:
            _gpu.Loader("cpu", alloc=alloc).load(f, f.entries())
        except torch.OutOfMemoryError as e:
            kept.append(e)
        assert made and all(r() is None for r in made), alloc
    assert len(kept) == 1  # group makes one allocation per dtype: no failure
    monkeypatch.undo()
    made.clear()
    big = tmp_path / "big.safetensors"
    ref.save_file({f"w{i}": torch.ones(100_000) for i in range(4)}, str(big))
    f = SafeFile(str(big))
    monkeypatch.setattr(_gpu, "Stream", lambda *a, **k: _TruncatingStream(str(big), 0, a, k))

    def device_tensors(*a, **kw):
        t = real_empty(*a, **kw)
        if kw.get("device") is not None:
            made.append(weakref.ref(t))
        return t

    monkeypatch.setattr(torch, "empty", device_tensors)
    try:
        _gpu.Loader("cpu", staging_bytes=16 * KIB, slots=2).load(f, f.entries())
    except tensorseal.SafetensorError as e:
        kept.append(e)
    assert len(kept) == 2 and made and all(r() is None for r in made)
