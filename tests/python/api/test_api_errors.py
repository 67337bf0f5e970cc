"""Errors: exception types, messages quoting the value at fault, kinds."""

import io
import os
import struct

import numpy as np
import pytest
import safetensors
import safetensors.torch as ref_pt
import torch

import tensorseal.numpy as ts_np
import tensorseal.torch as ts_pt
from tensorseal import SafetensorError, _safe_open_handle, safe_open


def write(tmp_path, data, name="bad.safetensors"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def file_with(header: bytes, data: bytes = b""):
    return struct.pack("<Q", len(header)) + header + data


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError) as e:
        safe_open(missing, "np")
    # The reference's message (scripts grep for it), and the errno.
    assert str(e.value) == f"No such file or directory: {missing}"
    assert e.value.errno == 2
    with pytest.raises(FileNotFoundError):
        ts_np.load_file(missing)
    with pytest.raises(FileNotFoundError):
        ts_pt.load_file(str(missing))


def test_directory(tmp_path):
    with pytest.raises(IsADirectoryError):
        safe_open(tmp_path, "np")
    with pytest.raises(IsADirectoryError):
        ts_np.load_file(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_permission_denied(tmp_path):
    p = write(tmp_path, ts_np.save({"a": np.zeros(1)}))
    p.chmod(0)
    with pytest.raises(PermissionError):
        safe_open(p, "np")


CASES = [
    ("file_too_small", b"\x01\x02", "shorter than the 8-byte"),
    ("header_too_large", struct.pack("<Q", 200_000_000) + b"{}", "200000000"),
    ("header_past_end", struct.pack("<Q", 64) + b"{}", "64"),
    ("invalid_json", file_with(b"{abc}   "), "JSON"),
    ("invalid_utf8", file_with(b'{"\xff":1}  '), "UTF-8"),
    ("unknown_dtype", file_with(b'{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4), "F33"),
    ("size_mismatch", file_with(b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', b"\0" * 4), "needs 8 bytes"),
    ("buffer_length_mismatch", file_with(b'{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}', b"\0" * 5), "trailing"),
    ("buffer_length_mismatch", file_with(b'{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}', b"\0" * 2), "truncated"),
    ("non_contiguous", file_with(b'{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}', b"\0" * 3), "contiguous"),
    ("duplicate_key", file_with(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\0"), '"a"'),
    ("invalid_metadata", file_with(b'{"__metadata__":{"k":1}}'), '"k"'),
    ("empty_name", file_with(b'{"":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\0"), "empty"),
]


@pytest.mark.parametrize("kind,data,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_files(tmp_path, kind, data, fragment):
    p = write(tmp_path, data)
    for call in (
        lambda: safe_open(p, "np"),
        lambda: ts_np.load_file(p),
        lambda: ts_pt.load_file(p),
        lambda: ts_np.load(data),
        lambda: ts_pt.load(data),
    ):
        with pytest.raises(SafetensorError) as e:
            call()
        assert e.value.kind == kind, (kind, str(e.value))
        assert fragment in str(e.value)


def test_tensor_not_found(tmp_path):
    p = write(tmp_path, ts_np.save({"a": np.zeros(1)}))
    with safe_open(p, "pt") as f:
        with pytest.raises(SafetensorError, match="^File does not contain tensor missing$") as e:
            f.get_tensor("missing")
        assert e.value.kind == "tensor_not_found"
        with pytest.raises(SafetensorError, match="^File does not contain tensor missing$"):
            f.get_slice("missing")


def test_numpy_cannot_represent_bfloat16(tmp_path):
    p = tmp_path / "bf.safetensors"
    ts_pt.save_file({"w": torch.ones(2, dtype=torch.bfloat16)}, p)
    try:
        import ml_dtypes  # noqa: F401
    except ImportError:
        with safe_open(p, "np") as f:
            with pytest.raises(TypeError, match="'w' has dtype BF16"):
                f.get_tensor("w")
        with pytest.raises(TypeError, match="BF16"):
            ts_np.load_file(p)


def test_save_unsupported_dtypes():
    with pytest.raises(SafetensorError, match="complex128"):
        ts_np.save({"a": np.zeros(2, dtype=np.complex128)})
    with pytest.raises(SafetensorError, match="object"):
        ts_np.save({"a": np.array([None, 1], dtype=object)})
    with pytest.raises(SafetensorError, match="complex128"):
        ts_pt.save({"a": torch.zeros(2, dtype=torch.complex128)})


def test_save_invalid_inputs():
    with pytest.raises(ValueError, match="Expected a dict"):
        ts_np.save([np.zeros(1)])
    with pytest.raises(ValueError, match="Expected a dict"):
        ts_pt.save([torch.zeros(1)])
    with pytest.raises(ValueError, match="Key `a` is invalid"):
        ts_np.save({"a": [1, 2]})
    with pytest.raises(ValueError, match="Key `a` is invalid"):
        ts_pt.save({"a": np.zeros(1)})
    with pytest.raises(TypeError):
        ts_np.save({"a": np.zeros(1)}, metadata={"k": 1})
    with pytest.raises(TypeError):
        ts_pt.save({"a": torch.zeros(1)}, metadata={"k": 1})


def test_save_rejects_names_that_cannot_be_read_back():
    # The reference writes these; its own reader (and ours) then rejects or
    # misreads the file.
    with pytest.raises(SafetensorError) as e:
        ts_np.save({"": np.zeros(1)})
    assert e.value.kind == "empty_name"
    with pytest.raises(SafetensorError) as e:
        ts_np.save({"__metadata__": np.zeros(1)})
    assert e.value.kind == "invalid_write"
    with pytest.raises(SafetensorError) as e:
        ts_np.save({"a\0b": np.zeros(1)})
    assert e.value.kind == "name_contains_nul"


def test_torch_non_contiguous_sparse_shared_like_reference():
    base = torch.zeros(4, 4)
    for mod in (ts_pt, ref_pt):
        with pytest.raises(ValueError, match="non contiguous tensor: `a`"):
            mod.save({"a": base[:, :2]})
        with pytest.raises(ValueError, match="sparse"):
            mod.save({"a": base.to_sparse()})
        with pytest.raises(RuntimeError, match="share memory"):
            mod.save({"a": base, "b": base})
        with pytest.raises(RuntimeError, match="share memory"):
            mod.save({"a": base, "b": base[1]})
    # Disjoint halves of one buffer are fine (as in the reference).
    assert ts_pt.save({"a": base[:2], "b": base[2:]}) == ref_pt.save({"a": base[:2], "b": base[2:]})


def test_save_file_to_missing_directory(tmp_path):
    """SafetensorError with the reference's message, as the reference
    raises; also a FileNotFoundError carrying errno and filename."""
    target = tmp_path / "no" / "such" / "x.safetensors"
    for save in [ts_np.save_file, lambda d, p: ts_pt.save_file({"a": torch.zeros(1)}, p)]:
        with pytest.raises(SafetensorError) as e:
            save({"a": np.zeros(1)}, target)
        assert isinstance(e.value, FileNotFoundError) and e.value.errno == 2
        assert str(e.value).startswith("Error while serializing: I/O error: No such file or directory (os error 2)")
        assert e.value.kind == "io"
    import safetensors

    with pytest.raises(safetensors.SafetensorError, match="^Error while serializing: I/O error: No such file or directory"):
        ref_pt.save_file({"a": torch.zeros(1)}, str(target))


def test_failed_save_leaves_no_file(tmp_path):
    target = tmp_path / "x.safetensors"

    def boom():
        yield np.zeros(4, np.uint8)
        raise RuntimeError("conversion failed")

    from tensorseal._tensorseal import serialize_file

    with pytest.raises(RuntimeError, match="conversion failed"):
        serialize_file([("a", "U8", [8], boom)], target)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SafetensorError, match="expected 8 bytes"):
        serialize_file([("a", "U8", [8], lambda: [np.zeros(4, np.uint8)])], target)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SafetensorError, match="needs 8 bytes"):
        serialize_file([("a", "U8", [8], np.zeros(4, np.uint8))], target)
    assert list(tmp_path.iterdir()) == []


def _torch_zip(tmp_path):
    p = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, p)
    return p.read_bytes()


def _torch_legacy(tmp_path):
    p = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, p, _use_new_zipfile_serialization=False)
    return p.read_bytes()


def _npy(tmp_path):
    p = tmp_path / "a.npy"
    np.save(p, np.ones(3, dtype=np.float32))
    return p.read_bytes()


def _npz(tmp_path):
    p = tmp_path / "a.npz"
    np.savez(p, a=np.ones(3))
    return p.read_bytes()


CONVERT = "convert it with `tensorseal convert`"

# (what the file holds, its bytes, fragments the message must contain)
OTHER_FORMATS = [
    ("torch_zip", _torch_zip, ["a PyTorch zip checkpoint", CONVERT]),
    ("torch_legacy", _torch_legacy, ["legacy PyTorch checkpoint", CONVERT]),
    ("npy", _npy, ["a NumPy .npy array", CONVERT]),
    ("npz", _npz, ["a NumPy .npz archive", CONVERT]),
    ("gguf", lambda _: b"GGUF\x03\x00\x00\x00" + b"\x07" * 64, ["a GGUF model"]),
    ("json", lambda _: b'{"architectures": ["BertModel"], "hidden_size": 768}\n', ["a JSON text file"]),
    (
        "git_lfs_pointer",
        lambda _: b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 548105171\n",
        ["a Git LFS pointer", "git lfs pull"],
    ),
]


@pytest.mark.parametrize("name,make,fragments", OTHER_FORMATS, ids=[c[0] for c in OTHER_FORMATS])
def test_other_formats_are_named(tmp_path, name, make, fragments):
    """A file that is not safetensors raises the reference's exception type
    (as the reference does for it), with a message naming what it is and
    what to do, instead of an absurd header length."""
    data = make(tmp_path)
    p = write(tmp_path, data)
    # The reference refuses it with its SafetensorError too.
    with pytest.raises(safetensors.SafetensorError):
        ref_pt.load_file(p)
    for call in (
        lambda: safe_open(p, "np"),
        lambda: ts_np.load_file(p),
        lambda: ts_pt.load_file(p),
        lambda: ts_np.load(data),
        lambda: ts_pt.load(data),
        lambda: _safe_open_handle(io.BytesIO(data), framework="np"),
    ):
        with pytest.raises(SafetensorError) as e:
            call()
        msg = str(e.value)
        assert e.value.kind == "not_safetensors", msg
        assert "not a safetensors file: this is " in msg, msg
        for f in fragments:
            assert f in msg, msg
        assert "header length" not in msg, msg


def test_empty_file_says_empty(tmp_path):
    p = write(tmp_path, b"")
    with pytest.raises(SafetensorError) as e:
        safe_open(p, "np")
    assert e.value.kind == "file_too_small"
    assert "file is empty (0 bytes)" in str(e.value)
