"""safe_open: keys, metadata, lazy zero-copy views, backends, lifetime."""

import gc

import numpy as np
import pytest
import safetensors
import safetensors.numpy as ref_np
import torch

import tensorseal
from tensorseal import SafetensorError, safe_open


@pytest.fixture
def sample(tmp_path):
    d = {
        "zeta": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        "alpha": np.arange(10, dtype=np.int64),
        "mid": np.linspace(0, 1, 7).astype(np.float16),
        "flag": np.array([True, False, True]),
        "scalar": np.array(7, dtype=np.int32),
        "empty": np.zeros((3, 0), dtype=np.float64),
    }
    p = tmp_path / "sample.safetensors"
    ref_np.save_file(d, str(p), metadata={"format": "np", "who": "test"})
    return p, d


def test_keys_sorted_offset_keys_file_order_metadata(sample):
    p, d = sample
    with safe_open(p, framework="np") as f, safetensors.safe_open(str(p), framework="np") as r:
        assert f.keys() == sorted(d) == r.keys()
        assert f.offset_keys() == r.offset_keys()
        assert f.metadata() == {"format": "np", "who": "test"} == r.metadata()


def test_metadata_none_when_absent(tmp_path):
    p = tmp_path / "x.safetensors"
    ref_np.save_file({"a": np.zeros(2)}, str(p))
    with safe_open(p, "np") as f:
        assert f.metadata() is None


@pytest.mark.parametrize("framework", ["np", "numpy", "pt", "torch"])
@pytest.mark.parametrize("backend", ["mmap", "pread"])
def test_get_tensor_values(sample, framework, backend):
    p, d = sample
    with safe_open(str(p), framework=framework, backend=backend) as f:
        for name, expected in d.items():
            t = f.get_tensor(name)
            got = t if isinstance(t, np.ndarray) else t.numpy()
            assert got.dtype == expected.dtype and got.shape == expected.shape
            np.testing.assert_array_equal(got, expected)
        all_ = f.get_tensors()
        assert list(all_) == f.offset_keys()


def test_torch_matches_reference(sample):
    p, _ = sample
    with safe_open(p, "pt") as f, safetensors.safe_open(str(p), "pt") as r:
        for name in r.keys():
            a, b = f.get_tensor(name), r.get_tensor(name)
            assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def test_without_with_and_after_close(sample):
    p, d = sample
    f = safe_open(p, "np")
    t = f.get_tensor("zeta")
    f.close()
    with pytest.raises(SafetensorError, match="closed"):
        f.keys()
    with pytest.raises(SafetensorError, match="closed"):
        f.get_tensor("zeta")
    del f
    gc.collect()
    # The tensor keeps the mapping alive.
    np.testing.assert_array_equal(t, d["zeta"])


def _mapping_of(path):
    """(start, end) of the address ranges mapping `path` in this process."""
    ranges = []
    with open("/proc/self/maps") as m:
        for line in m:
            parts = line.split()
            if len(parts) >= 6 and parts[5] == str(path):
                s, e = (int(x, 16) for x in parts[0].split("-"))
                ranges.append((s, e))
    return ranges


def _in_mapping(ptr, path):
    return any(s <= ptr < e for s, e in _mapping_of(path.resolve()))


def test_numpy_arrays_are_copies_by_default(sample):
    # As the reference's: memory of the array's own, writable, not a view
    # of any mapping of the file.
    p, d = sample
    for backend in ("mmap", "pread"):
        with safe_open(p, "np", backend=backend) as f:
            t = f.get_tensor("zeta")
            assert t.flags.writeable
            assert not _in_mapping(t.__array_interface__["data"][0], p)
            np.testing.assert_array_equal(t, d["zeta"])


def test_zero_copy_numpy_views_on_request_are_read_only(sample):
    p, d = sample
    with safe_open(p, "np", copy=False) as f:
        buf = f._file.read_only_map()
        assert buf.kind == "mmap-ro" and buf.readonly
        lo, hi = buf.address, buf.address + len(buf)
        t = f.get_tensor("zeta")
        ptr = t.__array_interface__["data"][0]
        assert lo <= ptr and ptr + t.nbytes <= hi
        assert _in_mapping(ptr, p)
        assert not t.flags.writeable
        with pytest.raises(ValueError):
            t[0] = 1
        np.testing.assert_array_equal(t, d["zeta"])
        # The owner is reachable from the array: the mapping outlives the file.
        base = t
        while isinstance(base, np.ndarray) and base.base is not None:
            base = base.base
        assert not isinstance(base, np.ndarray)
    with pytest.raises(ValueError, match="copy=False"):
        safe_open(p, "np", backend="pread", copy=False)


def test_zero_copy_torch(sample):
    # The reference's semantics: a view of a private copy-on-write mapping.
    p, d = sample
    with safe_open(p, "pt") as f:
        t = f.get_tensor("zeta")
        assert _in_mapping(t.data_ptr(), p)
        np.testing.assert_array_equal(t.numpy(), d["zeta"])
    with safe_open(p, "pt", copy=True) as f:
        t = f.get_tensor("zeta")
        assert not _in_mapping(t.data_ptr(), p)
        np.testing.assert_array_equal(t.numpy(), d["zeta"])


def test_pread_backend_copies(sample):
    p, _ = sample
    for fw in ("np", "pt"):
        with safe_open(p, fw, backend="pread") as f:
            t = f.get_tensor("zeta")
            ptr = t.__array_interface__["data"][0] if fw == "np" else t.data_ptr()
            assert not _in_mapping(ptr, p)


def test_writes_to_views_never_reach_the_file(sample):
    p, d = sample
    before = p.read_bytes()
    with safe_open(p, "np") as f:
        t = f.get_tensor("alpha")
        t[:] = -1
    with safe_open(p, "pt") as f:
        t = f.get_tensor("zeta")
        t.fill_(5)
    assert p.read_bytes() == before


def test_lazy_open_reads_only_header(tmp_path):
    # A file whose data is huge but sparse (a hole): opening must not read it.
    p = tmp_path / "big.safetensors"
    header = b'{"w":{"dtype":"U8","shape":[1073741824],"data_offsets":[0,1073741824]}}'
    header += b" " * (-len(header) % 8)
    with open(p, "wb") as fh:
        fh.write(len(header).to_bytes(8, "little") + header)
        fh.truncate(8 + len(header) + (1 << 30))
    with safe_open(p, "np") as f:
        s = f.get_slice("w")
        assert s.get_shape() == [1 << 30]
        assert s[5:9].tolist() == [0, 0, 0, 0]


def test_framework_and_device_validation(sample):
    p, _ = sample
    with pytest.raises(ValueError, match="^framework caffe is invalid$"):
        safe_open(p, "caffe")
    with pytest.raises(ValueError, match="^Device cuda:0 is not supported for framework numpy$"):
        safe_open(p, "np", device="cuda:0")
    with pytest.raises(ValueError, match="backend"):
        safe_open(p, "np", backend="fast")


def test_pathlike_and_str(sample):
    p, _ = sample
    with safe_open(p, "np") as a, safe_open(str(p), "np") as b:
        assert a.keys() == b.keys()


def test_version_and_exports():
    assert isinstance(tensorseal.__version__, str) and tensorseal.__version__
    assert issubclass(tensorseal.SafetensorError, Exception)
