"""Drop-in details, each checked against the reference side by side: slices
outliving their file, ``device=None``, the exception types the reference
raises, the reference's private names that other libraries import, the
top-level ``TensorSpec`` / ``serialize`` / ``serialize_file`` /
``deserialize`` API, numpy array subclasses, and saving while another
Python thread is busy."""

import os
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest
import safetensors
import safetensors.numpy as ref_np
import safetensors.torch as ref_pt
import torch
from torch import nn

import tensorseal
import tensorseal.numpy as ts_np
import tensorseal.torch as ts_pt
from tensorseal import SafetensorError, safe_open


@pytest.fixture
def sample(tmp_path):
    d = {
        "w": torch.arange(60, dtype=torch.float32).reshape(5, 12),
        "b": torch.arange(7, dtype=torch.int16),
        "s": torch.tensor(3.5, dtype=torch.float64),
    }
    p = tmp_path / "sample.safetensors"
    ref_pt.save_file(d, str(p))
    return p, d


# --- slices outlive the safe_open that made them ---------------------------


@pytest.mark.parametrize("framework", ["pt", "np"])
@pytest.mark.parametrize("backend", ["mmap", "pread"])
def test_slice_usable_after_close(sample, framework, backend):
    p, d = sample
    with safe_open(p, framework, backend=backend) as f:
        s = f.get_slice("w")
    with safetensors.safe_open(str(p), framework) as r:
        ref = r.get_slice("w")
    # The file is closed: the reference's slice still works, so must ours.
    for index in [1, slice(1, 4), (slice(None), slice(2, 10, 3)), (-1, slice(-5, None, 2))]:
        ours = s[index]
        want = d["w"][index] if framework == "pt" else d["w"].numpy()[index]
        if framework == "pt":
            assert torch.equal(ours, want)
        else:
            np.testing.assert_array_equal(ours, want)
    ours_plain, ref_plain = s[1:3], ref[1:3]
    if framework == "pt":
        assert torch.equal(ours_plain, ref_plain)
    else:
        np.testing.assert_array_equal(ours_plain, ref_plain)
    with pytest.raises(SafetensorError, match="closed"):
        f.get_slice("w")  # the handle itself is closed


# --- device=None means the cpu ---------------------------------------------


def test_device_none_is_the_cpu(sample):
    p, d = sample
    for framework in ["pt", "np"]:
        with safe_open(p, framework, device=None) as f, safetensors.safe_open(str(p), framework, device=None) as r:
            assert f.keys() == r.keys()
            np.testing.assert_array_equal(np.asarray(f.get_tensor("b")), np.asarray(r.get_tensor("b")))
    ours = ts_pt.load_file(p, device=None)
    ref = ref_pt.load_file(str(p), device=None)
    assert ours.keys() == ref.keys()
    assert all(torch.equal(ours[k], ref[k]) and ours[k].device.type == "cpu" for k in ref)
    model = nn.Linear(3, 2)
    q = p.parent / "model.safetensors"
    ts_pt.save_model(model, q)
    assert ts_pt.load_model(nn.Linear(3, 2), q, device=None) == ref_pt.load_model(nn.Linear(3, 2), str(q), device=None)


def test_load_model_returns_a_set_of_missing_names_like_the_reference(tmp_path):
    p = tmp_path / "m.safetensors"
    ref_pt.save_model(nn.Linear(3, 2), str(p))
    ours = ts_pt.load_model(nn.Linear(3, 2), p)
    ref = ref_pt.load_model(nn.Linear(3, 2), str(p))
    assert ours == ref == (set(), [])
    assert type(ours[0]) is type(ref[0]) is set
    ref_pt.save_file({"weight": torch.zeros(2, 3), "extra": torch.zeros(1)}, str(p))
    ours = ts_pt.load_model(nn.Linear(3, 2), p, strict=False)
    ref = ref_pt.load_model(nn.Linear(3, 2), str(p), strict=False)
    assert ours == ref == ({"bias"}, ["extra"])


# --- the exception types the reference raises --------------------------------


@pytest.mark.parametrize(
    "framework, device",
    [("np", "cuda"), ("np", "cuda:0"), ("pt", "xyz"), ("pt", -1), ("pt", "cuda:x")],
)
def test_bad_devices_raise_safetensor_error_like_the_reference(sample, framework, device):
    p, _ = sample
    if device != "cuda:x":  # the reference lets torch's ValueError through here
        with pytest.raises(safetensors.SafetensorError):
            safetensors.safe_open(str(p), framework, device=device)
    with pytest.raises(SafetensorError, match="(?i)device") as e:
        safe_open(p, framework, device=device)
    assert isinstance(e.value, ValueError)  # and what a Python user expects
    assert e.value.kind == "invalid_argument"
    if framework == "pt":
        with pytest.raises(SafetensorError, match="device"):
            ts_pt.load_file(p, device=device)


def test_bad_backend_raises_safetensor_error_like_the_reference(sample):
    p, _ = sample
    with pytest.raises(safetensors.SafetensorError):
        safetensors.safe_open(str(p), "pt", backend="fast")
    with pytest.raises(SafetensorError, match="backend") as e:
        safe_open(p, "pt", backend="fast")
    assert isinstance(e.value, ValueError)


def test_dtype_torch_cannot_hold_raises_safetensor_error_like_the_reference(tmp_path):
    # An F6 tensor: valid safetensors, but torch has no such dtype.
    header = b'{"x":{"dtype":"F6_E3M2","shape":[4],"data_offsets":[0,3]}}'
    header += b" " * (-len(header) % 8)
    p = tmp_path / "f6.safetensors"
    p.write_bytes(len(header).to_bytes(8, "little") + header + b"\x01\x02\x03")
    with pytest.raises(safetensors.SafetensorError):
        ref_pt.load_file(str(p))
    with pytest.raises(SafetensorError, match="F6_E3M2") as e:
        ts_pt.load_file(p)
    assert isinstance(e.value, TypeError)
    assert e.value.kind == "unsupported_dtype"
    with safe_open(p, "pt") as f:
        with pytest.raises(SafetensorError, match="'x'"):
            f.get_tensor("x")


# --- private names other libraries import from the reference -----------------


def test_reference_private_names_exist_and_agree():
    for code, dtype in ref_pt._TYPES.items():
        assert ts_pt._TYPES[code] is dtype
        assert ts_pt._getdtype(code) is ref_pt._getdtype(code)
    for dtype, size in ref_pt._SIZE.items():
        if dtype is not None:
            assert ts_pt._SIZE[dtype] == size
    assert "F4" not in ts_pt._TYPES  # packed: a header shape does not fit it
    with pytest.raises(KeyError):
        ts_pt._getdtype("NOPE")
    for name in ["_float8_e4m3fn", "_float8_e5m2", "_float8_e8m0", "_float4_e2m1_x2"]:
        assert getattr(ts_pt, name) is getattr(ref_pt, name)
    for code, dtype in ref_np._TYPES.items():
        if code in ts_np._TYPES:
            assert ts_np._getdtype(code) == np.dtype(dtype)
        else:
            assert code == "BF16"  # only with the optional ml_dtypes package
    big = np.arange(3, dtype=">i4")
    assert ts_np._is_little_endian(big) is ref_np._is_little_endian(big) is False
    assert ts_np._is_little_endian(big.astype("<i4")) is True


def test_view_helpers_read_deserialize_output():
    d = {"a": torch.arange(6, dtype=torch.bfloat16).reshape(2, 3), "z": torch.zeros(0, 2)}
    blob = ts_pt.save(d)
    ours = ts_pt._view2torch(tensorseal.deserialize(blob))
    ref = ref_pt._view2torch(safetensors.deserialize(blob))
    assert ours.keys() == ref.keys()
    assert all(torch.equal(ours[k], ref[k]) and ours[k].dtype == ref[k].dtype for k in ref)
    n = {"x": np.arange(5, dtype=np.float32), "y": np.ones((2, 2), dtype=np.uint8)}
    blob = ts_np.save(n)
    ours = ts_np._view2np(tensorseal.deserialize(blob))
    ref = ref_np._view2np(safetensors.deserialize(blob))
    assert ours.keys() == ref.keys()
    for k in ref:
        np.testing.assert_array_equal(ours[k], ref[k])
        assert ours[k].dtype == ref[k].dtype


# --- the top-level TensorSpec / serialize / serialize_file / deserialize -------


def specs(module, arrays):
    out = {}
    for name, a in arrays.items():
        dtype = "bfloat16" if a.dtype == torch.bfloat16 else str(a.dtype).split(".")[-1]
        out[name] = module.TensorSpec(dtype=dtype, shape=a.shape, data_ptr=a.data_ptr(), data_len=a.nbytes)
    return out


def test_serialize_from_tensor_specs_matches_the_reference(tmp_path):
    arrays = {
        "w": torch.arange(12, dtype=torch.float32).reshape(3, 4),
        "h": torch.arange(5, dtype=torch.bfloat16),
        "e": torch.zeros(0, 3, dtype=torch.int64),
        "s": torch.tensor(True),
        "q": torch.ones(2, 4, dtype=torch.uint8).view(torch.float4_e2m1fn_x2),
    }
    ours, ref = specs(tensorseal, arrays), specs(safetensors, arrays)
    for k in arrays:
        assert (ours[k].dtype, ours[k].shape, ours[k].data_len) == (ref[k].dtype, ref[k].shape, ref[k].data_len)
    assert ours["q"].shape == [2, 8]  # F4: two values per stored byte
    meta = {"format": "pt"}
    assert tensorseal.serialize(ours, meta) == safetensors.serialize(ref, meta)
    tensorseal.serialize_file(ours, tmp_path / "ours.safetensors", meta)
    safetensors.serialize_file(ref, str(tmp_path / "ref.safetensors"), meta)
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "ref.safetensors").read_bytes()
    blob = tensorseal.serialize(ours)
    # Same entries; ours in file order, the reference's in hash order.
    assert dict(tensorseal.deserialize(blob)) == dict(safetensors.deserialize(blob))
    with safe_open(tmp_path / "ours.safetensors", "pt") as f:
        assert [k for k, _ in tensorseal.deserialize(blob)] == f.offset_keys()
    assert all(type(v["data"]) is bytearray for _, v in tensorseal.deserialize(blob))


def test_tensor_spec_errors():
    a = np.arange(3, dtype=np.float32)
    with pytest.raises(SafetensorError, match="Unknown dtype"):
        tensorseal.TensorSpec(dtype="F32", shape=[3], data_ptr=a.ctypes.data, data_len=12)
    with pytest.raises(SafetensorError, match="null"):
        tensorseal.TensorSpec(dtype="float32", shape=[3], data_ptr=0, data_len=12)
    with pytest.raises(SafetensorError, match="negative"):
        tensorseal.TensorSpec(dtype="float32", shape=[-3], data_ptr=a.ctypes.data, data_len=12)
    short = tensorseal.TensorSpec(dtype="float32", shape=[3], data_ptr=a.ctypes.data, data_len=8)
    with pytest.raises(safetensors.SafetensorError):
        safetensors.serialize({"a": safetensors.TensorSpec(dtype="float32", shape=[3], data_ptr=a.ctypes.data, data_len=8)})
    with pytest.raises(SafetensorError, match='"a".*12 bytes'):
        tensorseal.serialize({"a": short})
    with pytest.raises(TypeError):
        tensorseal.serialize({"a": {"dtype": "F32", "shape": [3], "data": a.tobytes()}})


# --- numpy array subclasses ----------------------------------------------------


def test_numpy_subclasses_save_their_data_like_the_reference(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # np.matrix
        matrix = np.matrix([[1, 2], [3, 4]], dtype=np.int32)
    cases = {"masked": np.ma.array([1.0, 2.0, 3.0], mask=[0, 1, 0]), "matrix": matrix}
    mm = np.memmap(tmp_path / "mm.bin", dtype=np.float32, mode="w+", shape=(4,))
    mm[:] = [1, 2, 3, 4]
    cases["memmap"] = mm
    for name, arr in cases.items():
        assert ts_np.save({name: arr}) == ref_np.save({name: arr}), name


# --- saving while another Python thread is busy ---------------------------------


def test_save_prepares_tensors_without_releasing_the_gil(monkeypatch):
    # torch methods that dispatch an operator (detach, reshape, view) drop the
    # GIL; while another Python thread runs, each costs a switch interval to
    # get it back, and saving 100 tensors took seconds. Preparing the specs
    # now only reads attributes: count the dispatching calls instead of timing.
    calls = []
    for method in ["detach", "reshape", "view", "contiguous", "numpy", "to"]:
        original = getattr(torch.Tensor, method)

        def spy(self, *a, _m=method, _o=original, **k):
            calls.append(_m)
            return _o(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, method, spy)
    d = {f"t{i}": torch.randn(8, 4, requires_grad=(i % 2 == 0)) for i in range(20)}
    blob = ts_pt.save(d)
    assert calls == []
    monkeypatch.undo()
    assert blob == ref_pt.save({k: v.detach() for k, v in d.items()})


def test_save_with_a_busy_thread_is_correct():
    stop = threading.Event()

    def spin():
        x = 0
        while not stop.is_set():
            x += 1

    d = {f"t{i}": torch.randn(16, 16) for i in range(10)}
    th = threading.Thread(target=spin)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    th.start()
    try:
        blob = ts_pt.save(d)
    finally:
        stop.set()
        th.join()
        sys.setswitchinterval(old)
    assert blob == ref_pt.save(d)


def test_tensors_without_bytes_raise_instead_of_crashing():
    # Reading data_ptr() blindly would segfault on these: a zero tensor (null
    # pointer), storage freed under the tensor (FSDP's resize_(0)), and a
    # wrapper subclass (DTensor, FakeTensor, torchao: no storage of its own).
    # Run in a child so that a crash fails this test instead of pytest.
    code = textwrap.dedent(
        """
        import torch, tensorseal.torch as ts

        class Wrapper(torch.Tensor):
            @staticmethod
            def __new__(cls, inner):
                return torch.Tensor._make_wrapper_subclass(cls, inner.shape, dtype=inner.dtype)

            @classmethod
            def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
                raise NotImplementedError(str(func))

        freed = torch.randn(1000)
        freed.untyped_storage().resize_(0)
        shrunk = torch.randn(1000)
        shrunk.untyped_storage().resize_(16)
        cases = [torch._efficientzerotensor(4), freed, shrunk, Wrapper(torch.randn(4))]
        for t in cases:
            try:
                ts.save({"t": t})
                print("saved")
            except Exception as e:
                print(type(e).__name__, str(e).replace(" ", "_")[:60])
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    kinds = [line.split()[0] for line in r.stdout.splitlines()]
    assert kinds == ["RuntimeError", "SafetensorError", "SafetensorError", "NotImplementedError"], r.stdout
    assert "'t'" in r.stdout.splitlines()[1].replace("_", " ")


def test_an_old_ml_dtypes_does_not_break_import(tmp_path):
    # ml_dtypes before 0.5 has no float8_e8m0fnu; the numpy module builds its
    # dtype table at import, which must not fail because of it.
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "ml_dtypes.py").write_text("import numpy\nbfloat16 = numpy.dtype('float16')\n")
    header = b'{"x":{"dtype":"F8_E8M0","shape":[2],"data_offsets":[0,2]}}'
    header += b" " * (-len(header) % 8)
    p = tmp_path / "e8m0.safetensors"
    p.write_bytes(len(header).to_bytes(8, "little") + header + b"\x7f\x80")
    code = textwrap.dedent(
        f"""
        import sys
        import tensorseal, tensorseal.numpy as tn
        assert "ml_dtypes" not in sys.modules  # the table is built on first use
        assert "BF16" in tn._TYPES and "F8_E8M0" not in tn._TYPES, tn._TYPES
        try:
            tn.load_file({str(p)!r})
        except tensorseal.UnsupportedDtypeError as e:
            print("refused", "ml_dtypes" in str(e))
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["refused", "True"]


def test_framework_must_be_a_str_like_the_reference(sample):
    p, _ = sample
    for framework in [None, 1, b"pt"]:
        with pytest.raises(TypeError):
            safetensors.safe_open(str(p), framework)
        with pytest.raises(TypeError, match="framework"):
            safe_open(p, framework)


def test_saving_to_the_empty_path_is_file_not_found():
    with pytest.raises(FileNotFoundError) as e:
        ts_pt.save_file({"a": torch.zeros(1)}, "")
    assert e.value.errno == 2 and e.value.filename == ""
    with pytest.raises(FileNotFoundError):
        open("", "wb")  # what Python itself says
