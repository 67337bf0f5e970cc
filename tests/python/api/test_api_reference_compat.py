"""Drop-in behaviours checked side by side with the reference: slicing rules
and messages, ``_safe_open_handle`` (file objects, fsspec, streams),
exception types and messages, the framework names, the
``install_as_safetensors`` import hook, and the flax/tensorflow modules."""

import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import safetensors
import safetensors.numpy as ref_np
import safetensors.torch as ref_pt
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tensorseal
import tensorseal.numpy as ts_np
import tensorseal.torch as ts_pt
from tensorseal import SafetensorError, _safe_open_handle, safe_open

ARR = np.arange(10 * 5 * 3, dtype=np.float32).reshape(10, 5, 3)


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    p = tmp_path_factory.mktemp("compat") / "a.safetensors"
    ref_np.save_file({"a": ARR, "v": np.arange(7, dtype=np.int64)}, str(p))
    return p


def outcome(fn):
    """("ok", array as numpy), or ("error", message) for either library's
    SafetensorError, or (exception type name, message) for anything else."""
    try:
        r = fn()
    except (safetensors.SafetensorError, tensorseal.SafetensorError) as e:
        return "error", str(e)
    except (IndexError, ValueError, TypeError) as e:
        return type(e).__name__, str(e)
    return "ok", (r.numpy() if isinstance(r, torch.Tensor) else np.asarray(r))


def assert_same(ours, ref):
    assert ours[0] == ref[0], (ours, ref)
    if ours[0] != "ok":
        assert ours[1] == ref[1]
    else:
        assert ours[1].shape == ref[1].shape and ours[1].dtype == ref[1].dtype
        np.testing.assert_array_equal(ours[1], ref[1])


# Indices within what the reference accepts: ints (bools too), non-negative
# slice bounds (possibly past the end), positive steps, Ellipsis, [].
part = st.one_of(
    st.integers(-12, 12),
    st.booleans(),
    st.builds(slice, st.one_of(st.none(), st.integers(0, 12)), st.one_of(st.none(), st.integers(0, 12)),
              st.one_of(st.none(), st.integers(1, 4))).filter(
        lambda s: s.start is None or s.stop is None or s.start <= s.stop),
    st.just(Ellipsis),
)
index = st.one_of(part, st.lists(part, min_size=0, max_size=4).map(tuple), st.just([]), st.just([0, 1]))


@settings(max_examples=400, deadline=None)
@given(index)
def test_slices_give_the_references_results_and_errors(path, idx):
    # numpy and pread: the reference's own rules; torch + mmap: torch's.
    for fw, backend in [("np", "mmap"), ("np", "pread"), ("pt", "pread"), ("pt", "mmap")]:
        with safe_open(path, fw, backend=backend) as f, \
                safetensors.safe_open(str(path), fw, backend=backend) as r:
            assert_same(outcome(lambda: f.get_slice("a")[idx]), outcome(lambda: r.get_slice("a")[idx]))


def test_slice_errors_are_also_index_and_value_errors(path):
    with safe_open(path, "np") as f:
        s = f.get_slice("a")
        with pytest.raises(IndexError, match=r"^Error during slicing \[20\] with shape \[10, 5, 3\]: index 20 out"):
            s[20]
        with pytest.raises(IndexError, match="^Only one ellipsis"):
            s[..., ...]
        with pytest.raises(ValueError, match="^Slice step must be a positive integer, got 0$"):
            s[::0]
        with pytest.raises(IndexError, match="^Unsupported slice index at position 1"):
            s[0, 1.5]
        # True is index 1, as in the reference (numpy would add an axis).
        np.testing.assert_array_equal(s[True], ARR[1])
        # Where the reference has no behaviour, numpy's: negative bounds, None.
        np.testing.assert_array_equal(s[-3:, None], ARR[-3:, None])
        np.testing.assert_array_equal(s[5:2], ARR[5:2])


def test_zero_size_tensor_with_huge_dims_is_empty(tmp_path):
    import json
    import struct

    h = json.dumps({"z": {"dtype": "F32", "shape": [0, 2**62, 2**62], "data_offsets": [0, 0]}}).encode()
    p = tmp_path / "z.safetensors"
    p.write_bytes(struct.pack("<Q", len(h)) + h)
    with safetensors.safe_open(str(p), "pt") as r:
        want = r.get_tensor("z").shape
    for backend in ["mmap", "pread"]:
        with safe_open(p, "pt", backend=backend) as f:
            assert f.get_tensor("z").shape == want
            assert f.get_slice("z")[:].shape == want
    assert ts_pt.load_file(p)["z"].shape == want


# --- _safe_open_handle --------------------------------------------------------


def test_safe_open_handle_over_python_file_objects(path):
    for mode in ["r", "rb"]:
        with open(path, mode) as fh, _safe_open_handle(fh, framework="np") as g:
            assert g.keys() == ["a", "v"]
            np.testing.assert_array_equal(g.get_tensor("a"), ARR)
            np.testing.assert_array_equal(g.get_slice("a")[2:4, 1], ARR[2:4, 1])
    with open(path, "rb") as fh, safetensors._safe_open_handle(fh, framework="pt") as r, \
            _safe_open_handle(fh, framework="pt") as g:
        assert torch.equal(g.get_tensor("a"), r.get_tensor("a"))


def test_safe_open_handle_over_streams_without_a_descriptor(path):
    data = path.read_bytes()
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    with fs.open("/compat.safetensors", "wb") as w:
        w.write(data)
    with fs.open("/compat.safetensors", "rb") as fh:
        with _safe_open_handle(fh, framework="pt") as g:  # the reference needs a real file here
            assert g.offset_keys() == safe_open(path, "np").offset_keys()
            assert torch.equal(g.get_tensor("a"), torch.from_numpy(ARR))
            assert torch.equal(g.get_slice("a")[3:, ::2], torch.from_numpy(ARR[3:, ::2]))
            with pytest.raises(SafetensorError, match="^File does not contain tensor nope$"):
                g.get_tensor("nope")
    with _safe_open_handle(io.BytesIO(data), framework="np") as g:
        np.testing.assert_array_equal(g.get_tensors()["v"], np.arange(7))
    with pytest.raises(SafetensorError, match="^Error while deserializing header: ") as e:
        _safe_open_handle(io.BytesIO(data[:-1]), framework="np")
    assert e.value.kind == "buffer_length_mismatch"
    with pytest.raises(SafetensorError, match="^Error while deserializing header: "):
        _safe_open_handle(io.BytesIO(b"abc"), framework="np")


# --- exceptions ----------------------------------------------------------------


def test_pread_read_after_truncation_is_a_safetensor_error(tmp_path):
    p = tmp_path / "t.safetensors"
    ts_np.save_file({"a": np.arange(1000.0)}, p)
    f = safe_open(p, "np", backend="pread")
    r = safetensors.safe_open(str(p), "np", backend="pread")
    os.truncate(p, 100)
    with pytest.raises(safetensors.SafetensorError) as ref:
        r.get_tensor("a")
    with pytest.raises(SafetensorError) as ours:
        f.get_tensor("a")
    assert str(ours.value) == str(ref.value)
    with pytest.raises(SafetensorError, match="^Could not read tensor a from file"):
        f.get_slice("a")[900:910]


def test_missing_file_message_is_the_references(tmp_path):
    missing = str(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError) as ref:
        safetensors.safe_open(missing, "np")
    for fn in [lambda: safe_open(missing, "np"), lambda: ts_np.load_file(missing), lambda: ts_pt.load_file(missing)]:
        with pytest.raises(FileNotFoundError) as ours:
            fn()
        assert str(ours.value) == str(ref.value)


def test_save_errors_match_the_references_messages(tmp_path):
    t = torch.zeros(4, 4)
    cases = [
        {"s": torch.zeros(2, 3).to_sparse()},
        {"a": t, "b": t},
        {"a": t.t()},
    ]
    for d in cases:
        with pytest.raises(Exception) as ref:
            ref_pt.save_file(d, str(tmp_path / "r.safetensors"))
        with pytest.raises(type(ref.value)) as ours:
            ts_pt.save_file(d, tmp_path / "o.safetensors")
        assert str(ours.value) == str(ref.value)


def test_frameworks_the_reference_names(path):
    with pytest.raises(SafetensorError, match="^framework caffe is invalid$"):
        safe_open(path, "caffe")
    with pytest.raises(SafetensorError, match="^Device cuda is not supported for framework tensorflow$"):
        safe_open(path, "tf", device="cuda")


# --- install_as_safetensors -----------------------------------------------------


def test_install_as_safetensors_in_a_fresh_interpreter():
    code = textwrap.dedent(
        """
        import sys, tensorseal
        tensorseal.install_as_safetensors()
        import safetensors
        assert safetensors is tensorseal
        assert "torch" not in sys.modules  # submodules stay lazy
        from safetensors.torch import save_file, load_file
        import safetensors.numpy, tensorseal.torch, tensorseal.numpy
        assert save_file is tensorseal.torch.save_file and safetensors.numpy is tensorseal.numpy
        assert tensorseal.torch.__spec__.name == "tensorseal.torch"
        from safetensors import SafetensorError, safe_open, _safe_open_handle
        assert SafetensorError is tensorseal.SafetensorError
        import safetensors._safetensors_rust as native
        assert native is tensorseal._tensorseal
        try:
            import safetensors.nonexistent
        except ModuleNotFoundError:
            pass
        else:
            raise AssertionError("safetensors.nonexistent imported")
        tensorseal.uninstall_as_safetensors()
        import safetensors as real
        assert real is not tensorseal and real.__name__ == "safetensors"
        print("ok")
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_install_replaces_an_already_imported_reference():
    code = textwrap.dedent(
        """
        import safetensors, safetensors.torch, tensorseal
        assert safetensors is not tensorseal
        tensorseal.install_as_safetensors()
        import safetensors as again, safetensors.torch
        assert again is tensorseal and sys_mod() is tensorseal.torch
        print("ok")
        """
    ).replace("sys_mod()", "__import__('sys').modules['safetensors.torch']")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


# --- framework modules -----------------------------------------------------------


def test_flax_module_matches_the_reference(tmp_path):
    jnp = pytest.importorskip("jax.numpy")
    import safetensors.flax as ref_flax

    import tensorseal.flax as ts_flax

    d = {"a": jnp.arange(12, dtype=jnp.float32).reshape(3, 4), "b": jnp.ones((2,), dtype=jnp.bfloat16)}
    assert ts_flax.save(dict(d)) == ref_flax.save(dict(d))
    ts_flax.save_file(d, tmp_path / "f.safetensors")
    assert set(d) == {"a", "b"} and not isinstance(d["a"], np.ndarray)  # the caller's dict is left alone
    for loaded in [ts_flax.load_file(tmp_path / "f.safetensors"), ts_flax.load(ref_flax.save(dict(d)))]:
        for k in d:
            assert loaded[k].dtype == d[k].dtype
            np.testing.assert_array_equal(np.asarray(loaded[k]), np.asarray(d[k]))
    with safe_open(tmp_path / "f.safetensors", "flax") as f:
        assert type(f.get_slice("a")[1:]) is type(d["a"])


def test_tensorflow_module_matches_the_reference(tmp_path):
    tf = pytest.importorskip("tensorflow")
    import safetensors.tensorflow as ref_tf

    import tensorseal.tensorflow as ts_tf

    d = {"a": tf.reshape(tf.range(12, dtype=tf.float32), (3, 4)), "b": tf.ones((2,), dtype=tf.int64)}
    assert ts_tf.save(dict(d)) == ref_tf.save(dict(d))
    ts_tf.save_file(d, tmp_path / "t.safetensors")
    loaded = ts_tf.load_file(tmp_path / "t.safetensors")
    for k in d:
        assert loaded[k].dtype == d[k].dtype
        np.testing.assert_array_equal(loaded[k].numpy(), d[k].numpy())
    with safe_open(tmp_path / "t.safetensors", "tf") as f:
        assert isinstance(f.get_tensor("a"), tf.Tensor)
