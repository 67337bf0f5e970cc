"""numpy arrays in any memory order and byte order are saved with their
values (converted in bounded chunks when needed)."""

import numpy as np
import pytest
import safetensors.numpy as ref_np

import tensorseal.numpy as ts_np


def layouts():
    base = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    return {
        "fortran": np.asfortranarray(base),
        "transposed": base.T,
        "strided": base[:, ::2, 1::2],
        "reversed": base[::-1, :, ::-1],
        "big_endian": base.astype(">f4"),
        "big_endian_fortran": np.asfortranarray(base.astype(">i8")),
        "big_endian_scalar": np.array(7, dtype=">u2"),
        "column": np.arange(10, dtype=np.int16)[::3],
        "broadcast": np.broadcast_to(np.arange(3, dtype=np.int32), (4, 3)),
        "bool_fortran": np.asfortranarray(base > 10),
    }


@pytest.mark.parametrize("name", list(layouts()))
def test_layout_values_preserved(tmp_path, name):
    arr = layouts()[name]
    expected = np.array(arr, dtype=arr.dtype.newbyteorder("<"), order="C")
    data = ts_np.save({"x": arr})
    # Same bytes as the reference writes for the C-ordered little-endian copy.
    assert data == ref_np.save({"x": expected})
    for back in (ref_np.load(data)["x"], ts_np.load(data)["x"]):
        assert back.shape == arr.shape
        np.testing.assert_array_equal(back, arr)
    p = tmp_path / "x.safetensors"
    ts_np.save_file({"x": arr}, p)
    np.testing.assert_array_equal(ref_np.load_file(str(p))["x"], arr)


def test_large_non_contiguous_is_chunked(tmp_path, monkeypatch):
    # Small chunks so the multi-chunk path runs on a small array.
    monkeypatch.setattr(ts_np, "_CHUNK", 1000)
    arr = np.asfortranarray(np.arange(97 * 31, dtype=">f8").reshape(97, 31))
    p = tmp_path / "x.safetensors"
    ts_np.save_file({"x": arr, "y": arr[::2]}, p)
    back = ref_np.load_file(str(p))
    np.testing.assert_array_equal(back["x"], arr)
    np.testing.assert_array_equal(back["y"], arr[::2])
    assert ts_np.save({"x": arr}) == ref_np.save({"x": np.ascontiguousarray(arr).astype("<f8")})


def test_chunked_rows_larger_than_chunk(monkeypatch):
    monkeypatch.setattr(ts_np, "_CHUNK", 16)
    arr = np.asfortranarray(np.arange(5 * 40, dtype=np.int32).reshape(5, 40))
    np.testing.assert_array_equal(ref_np.load(ts_np.save({"x": arr}))["x"], arr)


def test_reference_writes_raw_memory_of_non_c_ordered_arrays():
    # Why the difference matters (safetensors 0.8.0, pinned in
    # requirements-test.txt): the reference saves the memory of a Fortran or
    # strided array as if it were C-ordered, so values come back scrambled.
    f = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    s = np.arange(10.0)[::2]
    assert not np.array_equal(ref_np.load(ref_np.save({"f": f}))["f"], f)
    assert not np.array_equal(ref_np.load(ref_np.save({"s": s}))["s"], s)
    assert np.array_equal(ref_np.load(ts_np.save({"f": f}))["f"], f)
    assert np.array_equal(ref_np.load(ts_np.save({"s": s}))["s"], s)
