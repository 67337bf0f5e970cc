"""The read-ahead paths: a file whose pages are not cached is read in
parallel parts (pread into owned memory) or populated ahead on several
threads (copy-on-write mappings, whole tensors or the rows a slice
selects). Whatever the path, the bytes must be exactly the file's: these
tests evict the file from the page cache before each read, so the
uncached paths run, and compare with the reference `safetensors`."""

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ref_np = pytest.importorskip("safetensors.numpy")
ref_pt = pytest.importorskip("safetensors.torch")

import tensorseal
import tensorseal.numpy as ts_np
import tensorseal.torch as ts_pt

# Sizes around the 1 MiB part and populate minimums, the 8 MiB split of
# heap reads, the 16 MiB read chunk and the 32 MiB cold-plan limit, with
# odd byte counts so parts end mid-page.
SHAPES = {
    "a": (3, 5),
    "b": (1024 * 1024 + 3,),  # 4 MiB + 12 bytes of f32: one read
    "e": (5, 629_147),  # 12 MiB + 28 bytes of f32: a heap read split in parts
    "c": (9, 1024 * 1024 + 1),  # ~36 MiB: past the 32 MiB cold-read and heap-read limits
    "d": (7, 3),
}


def evict(path):
    """Drops the file's pages from the page cache (where the OS allows), so
    the next read finds them uncached."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    rng = np.random.default_rng(7)
    tensors = {k: rng.standard_normal(s, dtype=np.float32) for k, s in SHAPES.items()}
    path = str(tmp_path_factory.mktemp("readahead") / "m.safetensors")
    ref_np.save_file(tensors, path)
    return path, tensors


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="needs posix_fadvise")
def test_numpy_load_file_uncached_is_exact(sample):
    path, tensors = sample
    for _ in range(2):
        evict(path)
        got = ts_np.load_file(path)
        assert got.keys() == tensors.keys()
        for k, v in tensors.items():
            np.testing.assert_array_equal(got[k], v)
            assert got[k].flags.writeable


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="needs posix_fadvise")
@pytest.mark.parametrize("fw", ["np", "pt"])
def test_get_tensor_and_slices_uncached_are_exact(sample, fw):
    path, _ = sample
    indexes = [
        slice(None, None),
        slice(1, 4),
        slice(2, None),
        slice(-3, -1),
        (slice(0, 2), slice(5, 9)),
        1,
        -1,
    ]
    with safe(path, fw, ref=True) as r:
        for name in ("b", "e", "c"):
            for index in indexes:
                if name == "b" and isinstance(index, tuple):
                    continue
                evict(path)
                with safe(path, fw) as f:
                    got = f.get_slice(name)[index]
                # The reference's get_slice refuses negative bounds:
                # compare with indexing its whole tensor.
                want = r.get_tensor(name)[index]
                assert_same(got, want, fw)
                evict(path)
                with safe(path, fw) as f:
                    assert_same(f.get_tensor(name), r.get_tensor(name), fw)


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="needs posix_fadvise")
def test_torch_load_file_uncached_is_exact(sample):
    path, _ = sample
    evict(path)
    got = ts_pt.load_file(path)
    want = ref_pt.load_file(path)
    assert got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k])


def test_read_ahead_part_outside_the_tensor_is_refused(sample):
    path, _ = sample
    f = tensorseal._tensorseal.SafeFile(path)
    nbytes = SHAPES["b"][0] * 4
    f.cow_tensor("b", True, (0, nbytes))
    with pytest.raises(ValueError, match="outside tensor"):
        f.cow_tensor("b", True, (0, nbytes + 1))
    with pytest.raises(ValueError, match="outside tensor"):
        f.cow_tensor("b", True, (8, 4))


@pytest.mark.parametrize("keep", [64, 12 << 20, (24 << 20) + 7])
def test_split_read_of_a_truncated_file_is_a_safetensor_error(tmp_path, keep):
    """A heap read split in parts (here a 32 MiB tensor, read in two or
    more parts) fails as one read does, whichever part comes up short."""
    p = str(tmp_path / "t.safetensors")
    ts_np.save_file({"w": np.ones((8, 1 << 20), dtype=np.float32)}, p)
    with tensorseal.safe_open(p, "np", backend="pread") as f:
        os.truncate(p, keep)
        with pytest.raises(
            tensorseal.SafetensorError, match="^Could not read tensor w from file: failed to fill whole buffer$"
        ):
            f.get_tensor("w")


def safe(path, fw, ref=False):
    if ref:
        import safetensors

        return safetensors.safe_open(path, fw)
    return tensorseal.safe_open(path, fw)


def assert_same(got, want, fw):
    if fw == "np":
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    else:
        assert got.dtype == want.dtype and got.shape == want.shape
        assert torch.equal(got, want)


NO_THREADS = r"""
import resource, sys, threading
resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))
try:
    threading.Thread(target=lambda: None).start()
    print("threads still start")
    sys.exit(3)
except RuntimeError:
    pass
import numpy as np, tensorseal, tensorseal.numpy as tn
p = sys.argv[1]
want = np.arange(9 << 20, dtype=np.float32).reshape(9, 1 << 20)
with tensorseal.safe_open(p, "np") as f:
    assert np.array_equal(f.get_tensor("w"), want)  # 36 MiB: read_parallel
    assert np.array_equal(f.get_slice("w")[2:5], want[2:5])  # 12 MiB: a split heap read
assert np.array_equal(tn.load_file(p)["w"], want)
print("ok")
"""


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to run as another user")
def test_reads_work_where_no_thread_can_be_spawned(request):
    """Where the OS refuses every new thread (RLIMIT_NPROC of a user with no
    process), reads that would use reader threads are done on the calling
    thread instead of panicking."""
    import shutil
    import subprocess
    import sys

    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv")
    import tempfile

    # Not tmp_path: pytest's base directory is private to root.
    d = tempfile.mkdtemp(prefix="tensorseal-nothreads-")
    request.addfinalizer(lambda: shutil.rmtree(d, ignore_errors=True))
    p = os.path.join(d, "w.safetensors")
    ts_np.save_file({"w": np.arange(9 << 20, dtype=np.float32).reshape(9, 1 << 20)}, p)
    os.chmod(d, 0o755)
    os.chmod(p, 0o644)
    cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    probe = subprocess.run(cmd + ["-c", "import tensorseal, numpy"], capture_output=True, env=env, timeout=120)
    if probe.returncode != 0:
        pytest.skip("the interpreter or package is not readable by an unprivileged user here")
    proc = subprocess.run(cmd + ["-c", NO_THREADS, p], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "ok"
