"""The memory model: what returned arrays and tensors share, what survives a
rewritten file, what a mapping costs, and what `import tensorseal` loads.

Anything that could crash the process (SIGBUS) or needs a clean address
space (RSS, rlimits, sys.modules) runs in a fresh subprocess.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import tensorseal.numpy as ts_np
import tensorseal.torch as ts_pt
from tensorseal import SafetensorError, safe_open


def run_py(code, *, env=None, timeout=300):
    """Runs `code` in a fresh interpreter; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def assert_ok(proc):
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


@pytest.fixture
def sample(tmp_path):
    d = {
        "w": np.arange(4096 * 3, dtype=np.float32).reshape(96, 128),
        "b": np.arange(7, dtype=np.int64),
        "h": np.linspace(-1, 1, 10).astype(np.float16),
    }
    p = tmp_path / "s.safetensors"
    ts_np.save_file(d, p)
    return p, d


def _np(t):
    return t if isinstance(t, np.ndarray) else t.numpy()


# --- a returned array never changes what a later read returns ---------------

OPENERS = [
    ("np", "mmap", None),
    ("np", "pread", None),
    ("np", "mmap", False),
    ("pt", "mmap", None),
    ("pt", "mmap", True),
    ("pt", "pread", None),
]


@pytest.mark.parametrize("fw,backend,copy", OPENERS)
def test_mutating_a_result_changes_no_later_read(sample, fw, backend, copy):
    p, d = sample
    before = p.read_bytes()
    with safe_open(p, fw, backend=backend, copy=copy) as f:
        a = f.get_tensor("w")
        if fw == "np" and copy is False:
            assert not a.flags.writeable  # read-only views refuse writes
            with pytest.raises(ValueError):
                a *= 0
        else:
            a *= 0
            assert not _np(a).any()
        for _ in range(2):  # a tensor asked for again, twice
            np.testing.assert_array_equal(_np(f.get_tensor("w")), d["w"])
            np.testing.assert_array_equal(_np(f.get_slice("w")[:]), d["w"])
            np.testing.assert_array_equal(_np(f.get_slice("w")[10:20]), d["w"][10:20])
        again = f.get_tensor("w")
        if not (fw == "np" and copy is False):
            again += 1
        np.testing.assert_array_equal(_np(f.get_tensors()["w"]), d["w"])
        # Other tensors of the same mapping are untouched too.
        np.testing.assert_array_equal(_np(f.get_tensor("b")), d["b"])
    assert p.read_bytes() == before


def test_slices_are_never_views_of_earlier_results(sample):
    p, d = sample
    for fw in ("np", "pt"):
        with safe_open(p, fw) as f:
            s = f.get_slice("w")
            x = s[5:50]
            x *= 0
            np.testing.assert_array_equal(_np(s[5:50]), d["w"][5:50])
            np.testing.assert_array_equal(_np(f.get_tensor("w")), d["w"])


@pytest.mark.parametrize("fw", ["np", "pt"])
@pytest.mark.parametrize("backend", ["mmap", "pread"])
def test_load_file_results_are_independent(sample, fw, backend):
    p, d = sample
    mod = ts_np if fw == "np" else ts_pt
    before = p.read_bytes()
    first = mod.load_file(p, backend=backend)
    for t in first.values():
        t *= 0
    second = mod.load_file(p, backend=backend)
    for k, v in d.items():
        np.testing.assert_array_equal(_np(second[k]), v)
    assert p.read_bytes() == before


def _maps_of(path):
    path = str(path.resolve())
    out = []
    with open("/proc/self/smaps") as fh:
        cur = None
        for line in fh:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                cur = {"lo": lo, "hi": hi, "perms": parts[1], "path": parts[5] if len(parts) > 5 else ""}
                if cur["path"] == path:
                    out.append(cur)
            elif parts[0] == "VmFlags:" and cur is not None:
                cur["flags"] = parts[1:]
    return out


def _in(ptr, maps):
    return any(m["lo"] <= ptr < m["hi"] for m in maps)


def test_torch_load_file_views_a_private_mapping_by_default(sample):
    p, d = sample
    sd = ts_pt.load_file(p)
    maps = _maps_of(p)
    assert all(_in(t.data_ptr(), maps) for t in sd.values())
    # One storage per tensor, as the reference (no tensor looks "shared").
    assert len({t.untyped_storage().data_ptr() for t in sd.values()}) == len(sd)
    for k, v in d.items():
        np.testing.assert_array_equal(sd[k].numpy(), v)
    for backend, copy in (("mmap", True), ("pread", None)):
        cp = ts_pt.load_file(p, backend=backend, copy=copy)
        assert not any(_in(t.data_ptr(), _maps_of(p)) for t in cp.values())


def test_mappings_are_read_only_or_reserve_nothing(sample):
    """Writable mappings carry MAP_NORESERVE (smaps flag "nr"), read-only
    ones are PROT_READ: neither charges the commit limit (in the default
    overcommit modes)."""
    p, _ = sample
    keep = []
    with safe_open(p, "pt") as f:
        keep.append(f.get_tensor("w"))
    keep.append(ts_pt.load_file(p))
    with safe_open(p, "np", copy=False) as f:
        keep.append(f.get_tensor("w"))
    maps = _maps_of(p)
    assert len(maps) >= 3
    for m in maps:
        writable = "w" in m["perms"]
        assert not writable or "nr" in m["flags"], m
        assert m["perms"][3] == "p", m  # private: nothing reaches the file


def test_opening_maps_nothing(sample):
    p, _ = sample
    with safe_open(p, "pt") as f:
        f.keys(), f.metadata(), f.offset_keys()
        assert _maps_of(p) == []
    with safe_open(p, "np") as f:
        f.get_tensor("w"), f.get_slice("w")[3:5]
        assert _maps_of(p) == []  # numpy copies come from positioned reads


# --- files far larger than memory -----------------------------------------



def _sparse_file(path, nbytes):
    """A file with a tiny tensor "small" at the end of a huge hole "big"."""
    header = (
        '{"big":{"dtype":"U8","shape":[%d],"data_offsets":[0,%d]},'
        '"small":{"dtype":"F32","shape":[4],"data_offsets":[%d,%d]}}' % (nbytes, nbytes, nbytes, nbytes + 16)
    ).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as fh:
        fh.write(len(header).to_bytes(8, "little") + header)
        fh.seek(8 + len(header) + nbytes)
        fh.write(np.arange(4, dtype=np.float32).tobytes())


def _mem_total():
    with open("/proc/meminfo") as fh:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh}
    return info["MemTotal"] + info.get("SwapTotal", 0)


def test_file_larger_than_memory_opens_and_reads(tmp_path):
    """A writable private mapping without MAP_NORESERVE larger than RAM +
    swap is refused even under the default heuristic overcommit; the file
    must still open and serve a small tensor to every framework."""
    p = tmp_path / "huge.safetensors"
    _sparse_file(p, 2 * _mem_total())
    proc = run_py(
        f"""
        import numpy as np
        from tensorseal import safe_open
        p = {str(p)!r}
        with safe_open(p, "pt") as f:
            assert f.get_tensor("small").tolist() == [0, 1, 2, 3]
            assert f.get_slice("big")[-3:].tolist() == [0, 0, 0]
        with safe_open(p, "np") as f:
            assert f.get_tensor("small").tolist() == [0, 1, 2, 3]
        with safe_open(p, "np", copy=False) as f:
            assert f.get_tensor("small").tolist() == [0, 1, 2, 3]
        print("ok")
        """
    )
    assert_ok(proc)


def test_torch_falls_back_to_mapping_one_tensor_when_the_file_cannot_be_mapped(tmp_path):
    """Where the whole file cannot be mapped (ENOMEM: strict overcommit,
    simulated here with an address-space limit), get_tensor maps only the
    tensor's pages."""
    p = tmp_path / "huge.safetensors"
    _sparse_file(p, 1 << 40)  # 1 TiB of hole
    proc = run_py(
        f"""
        import resource
        import torch
        from tensorseal import safe_open
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (1 << 39, hard))
        with safe_open({str(p)!r}, "pt") as f:
            t = f.get_tensor("small")
            assert t.tolist() == [0, 1, 2, 3]
            t += 1
            assert f.get_tensor("small").tolist() == [0, 1, 2, 3]
        print("ok")
        """
    )
    assert_ok(proc)


# --- rewriting the file under live results ----------------------------------

REWRITE = r"""
import os, shutil, sys
import numpy as np, torch
import tensorseal.numpy as ts_np, tensorseal.torch as ts_pt
from tensorseal import SafetensorError, safe_open

p, other, how = sys.argv[1], sys.argv[2], sys.argv[3]
exp = np.arange(1 << 18, dtype=np.float32).reshape(512, 512)
owned = {"np load_file": ts_np.load_file(p)["w"]}
for backend in ("mmap", "pread"):
    with safe_open(p, "np", backend=backend) as f:
        owned["np get_tensor " + backend] = f.get_tensor("w")
        owned["np get_slice " + backend] = f.get_slice("w")[100:400]
    with safe_open(p, "pt", backend=backend, copy=True) as f:
        owned["pt get_tensor copy " + backend] = f.get_tensor("w")
        owned["pt get_slice " + backend] = f.get_slice("w")[100:400]
owned["pt load_file copy"] = ts_pt.load_file(p, copy=True)["w"]
owned["pt load_file pread"] = ts_pt.load_file(p, backend="pread")["w"]
handles = [safe_open(p, fw, backend=b) for fw in ("np", "pt") for b in ("mmap", "pread")]

if how == "truncate":
    os.truncate(p, 0)
elif how == "open-wb":
    with open(p, "wb") as fh:
        fh.write(b"x" * 100)
elif how == "copyfile":
    shutil.copyfile(other, p)
else:
    raise SystemExit("unknown " + how)

for name, a in owned.items():
    a = a if isinstance(a, np.ndarray) else a.numpy()
    want = exp[100:400] if "slice" in name else exp
    assert np.array_equal(a, want), name
    a += 1  # still writable memory of its own

# Reads from handles opened before the rewrite fail cleanly or return the
# new bytes, never crash (positioned reads, no mapping).
for f in handles:
    try:
        f.get_slice("w")[0:2]
    except SafetensorError:
        pass
    if f._fw == "np":
        try:
            f.get_tensor("w")
        except SafetensorError:
            pass
print("survived")
"""


@pytest.mark.parametrize("how", ["truncate", "open-wb", "copyfile"])
def test_owned_results_survive_the_file_being_rewritten(tmp_path, how):
    p = tmp_path / "w.safetensors"
    other = tmp_path / "other.safetensors"
    ts_np.save_file({"w": np.arange(1 << 18, dtype=np.float32).reshape(512, 512)}, p)
    ts_np.save_file({"v": np.ones(3, dtype=np.float32)}, other)
    proc = subprocess.run(
        [sys.executable, "-c", REWRITE, str(p), str(other), how], capture_output=True, text=True, timeout=300
    )
    assert_ok(proc)
    assert "survived" in proc.stdout


def test_read_after_truncation_is_a_safetensor_error(sample):
    p, _ = sample
    with safe_open(p, "np", backend="pread") as f:
        os.truncate(p, 64)
        # The reference's exact words (no path, as the reference has none).
        with pytest.raises(SafetensorError, match="^Could not read tensor w from file: failed to fill whole buffer$") as e:
            f.get_tensor("w")
        assert e.value.kind == "io"


# --- pread memory -------------------------------------------------------------

PREAD_RSS = r"""
import gc, sys
import numpy as np, torch
import tensorseal.torch as ts_pt
from tensorseal import safe_open

p, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def rss():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

def maps():
    with open("/proc/self/maps") as fh:
        return sum(1 for _ in fh)

gc.collect()
# Warm up torch's own allocations with a few tensors.
with safe_open(p, "pt", backend="pread") as f:
    for k in f.keys()[:10]:
        f.get_tensor(k)
gc.collect()
r0, m0 = rss(), maps()
if mode == "load_file":
    sd = ts_pt.load_file(p, backend="pread")
else:
    with safe_open(p, "pt", backend="pread") as f:
        sd = {k: f.get_tensor(k) for k in f.keys()}
assert len(sd) == n
print(rss() - r0, maps() - m0)
"""


@pytest.mark.parametrize("mode", ["load_file", "get_tensor"])
def test_pread_memory_grows_with_bytes_read_not_per_tensor(tmp_path, mode):
    n = 20_000
    p = tmp_path / "many.safetensors"
    ts_np.save_file({f"t{i}": np.full(16, i, dtype=np.float32) for i in range(n)}, p)
    proc = subprocess.run([sys.executable, "-c", PREAD_RSS, str(p), str(n), mode], capture_output=True, text=True)
    assert_ok(proc)
    grew, new_maps = map(int, proc.stdout.split())
    # 64 bytes of data per tensor plus the torch and Python objects (about
    # 1 KiB); one anonymous mapping per tensor would cost 4 KiB each, and a
    # mapping each.
    assert grew < n * 2048, f"RSS grew {grew / 2**20:.1f} MiB for {n} tensors"
    assert new_maps < 100, f"{new_maps} new mappings for {n} tensors"


# --- import ------------------------------------------------------------------


def test_import_loads_no_heavy_module():
    """`import tensorseal` loads neither typing, ctypes, numpy nor torch
    (scripts/check_import_time.py measures the time itself)."""
    proc = run_py(
        """
        import sys
        heavy = ("typing", "ctypes", "numpy", "torch", "ml_dtypes", "json", "threading")
        before = {m for m in heavy if m in sys.modules}
        import tensorseal
        from tensorseal import safe_open, SafetensorError
        print(sorted(m for m in heavy if m in sys.modules and m not in before))
        """
    )
    assert_ok(proc)
    assert proc.stdout.strip() == "[]"


def test_safe_open_numpy_needs_no_torch(sample):
    p, _ = sample
    proc = run_py(
        f"""
        import sys
        from tensorseal import safe_open
        with safe_open({str(p)!r}, "np") as f:
            f.get_tensor("w"), f.get_slice("w")[1:3]
        print("torch" in sys.modules)
        """
    )
    assert_ok(proc)
    assert proc.stdout.strip() == "False"
