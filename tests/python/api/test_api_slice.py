"""get_slice: indexing matches numpy (framework "np") and torch ("pt"), except
where the reference refuses an index (numpy, and the pread backend): a
non-negative slice bound or int past the end of its dimension raises
SafetensorError (an IndexError too), as in the reference, where numpy would
clamp the slice. torch with the mmap backend is torch's semantics exactly,
as in the reference."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tensorseal.numpy as ts_np
from tensorseal import SafetensorError, safe_open

SHAPE = (4, 5, 3)
ARR = np.arange(60, dtype=np.int32).reshape(SHAPE)


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    p = tmp_path_factory.mktemp("slice") / "s.safetensors"
    ts_np.save_file(
        {
            "a": ARR,
            "v": np.arange(7, dtype=np.float64),
            "s": np.array(3.0, dtype=np.float32),
            "bf": np.arange(6, dtype=np.uint16),
            "z": np.zeros((0, 3), dtype=np.int8),
        },
        p,
    )
    return p


BOUNDS = [None, -6, -5, -2, -1, 0, 1, 3, 4, 6]
STEPS = [None, 1, 2, 3, -1, -2]


def slices(with_negative_steps):
    for start, stop, step in itertools.product(BOUNDS, BOUNDS, STEPS):
        if step is not None and step < 0 and not with_negative_steps:
            continue
        yield slice(start, stop, step)


def test_1d_every_slice_numpy(path):
    v = np.arange(7, dtype=np.float64)
    with safe_open(path, "np") as f:
        s = f.get_slice("v")
        for sl in slices(True):
            got = s[sl]
            np.testing.assert_array_equal(got, v[sl])
            assert got.dtype == v.dtype


def test_1d_every_slice_torch(path):
    v = torch.arange(7, dtype=torch.float64)
    with safe_open(path, "pt") as f:
        s = f.get_slice("v")
        for sl in slices(False):
            assert torch.equal(s[sl], v[sl]), sl


def test_negative_step_torch_raises_like_torch(path):
    with safe_open(path, "pt") as f:
        with pytest.raises(ValueError, match="step must be greater than zero"):
            f.get_slice("v")[::-1]
    # With pread, the reference's own rule and message.
    with safe_open(path, "pt", backend="pread") as f:
        with pytest.raises(ValueError, match="^Slice step must be a positive integer, got -1$") as e:
            f.get_slice("v")[::-1]
        assert isinstance(e.value, SafetensorError)


def past_the_end(idx, shape):
    """Whether the reference refuses ``idx`` as out of bounds: a
    non-negative int or slice start at or past its dimension's size (a start
    of 0 on an empty dimension aside), or a stop past it."""
    parts = idx if isinstance(idx, tuple) else (idx,)
    explicit = [p for p in parts if p is not None and p is not Ellipsis]
    dims = []
    for p in parts:
        if p is Ellipsis:
            dims += [slice(None)] * max(len(shape) - len(explicit), 0)
        elif p is not None:
            dims.append(p)
    for p, n in zip(dims, shape):
        if isinstance(p, slice):
            if p.start is not None and p.start >= n and not (p.start == 0 and n == 0):
                return True
            if p.stop is not None and p.stop > n:
                return True
        elif p >= n:
            return True
    return False


def same(get, expected, eq, idx=None, shape=SHAPE):
    """Asserts `get()` equals `expected()`, or both raise IndexError; an
    index the reference refuses as past the end raises SafetensorError."""
    if idx is not None and past_the_end(idx, shape):
        try:
            expected()
        except IndexError:
            pass  # too many indices, or an int past the end: both raise
        with pytest.raises(SafetensorError, match="out of bounds|more slicing indexes|Invalid index"):
            get()
        return
    try:
        exp = expected()
    except IndexError:
        with pytest.raises(IndexError):
            get()
        return
    got = get()
    assert eq(got, exp)


def np_eq(a, b):
    return isinstance(a, np.ndarray) and a.dtype == np.asarray(b).dtype and np.array_equal(a, b)


INDICES_2D = [0, -1, 3, slice(None), slice(1, None, 2), slice(-3, -1), slice(None, None, -1), Ellipsis]


def test_3d_tuples_numpy(path):
    with safe_open(path, "np") as f:
        s = f.get_slice("a")
        for idx in itertools.product(INDICES_2D, repeat=2):
            if idx.count(Ellipsis) > 1:
                continue
            same(lambda: s[idx], lambda: ARR[idx], np_eq, idx)
        # Single ints, Ellipsis, None (new axis), full tuples.
        np.testing.assert_array_equal(s[1], ARR[1])
        np.testing.assert_array_equal(s[..., 2], ARR[..., 2])
        np.testing.assert_array_equal(s[None, 1:3], ARR[None, 1:3])
        np.testing.assert_array_equal(s[-1, -2, -3], ARR[-1, -2, -3])
        np.testing.assert_array_equal(s[:], ARR)


def test_3d_tuples_torch(path):
    t = torch.from_numpy(ARR)
    with safe_open(path, "pt") as f:
        s = f.get_slice("a")
        for idx in itertools.product(INDICES_2D, repeat=2):
            if idx.count(Ellipsis) > 1 or any(isinstance(i, slice) and (i.step or 1) < 0 for i in idx):
                continue
            # Views of a mapping, as the reference's: laid out as the same
            # index on a contiguous tensor.
            same(
                lambda: s[idx],
                lambda: t[idx],
                lambda a, b: torch.equal(a, b) and a.stride() == b.stride(),
            )


def test_slice_is_a_copy(path):
    with safe_open(path, "np") as f:
        a = f.get_slice("a")[1:3]
        a[:] = 0
        np.testing.assert_array_equal(f.get_slice("a")[1:3], ARR[1:3])
    with safe_open(path, "pt") as f:
        t = f.get_slice("a")[1:3]
        t.zero_()
        assert torch.equal(f.get_slice("a")[1:3], torch.from_numpy(ARR[1:3]))


def test_shape_dtype_and_errors(path):
    with safe_open(path, "np") as f:
        s = f.get_slice("a")
        assert s.get_shape() == [4, 5, 3]
        assert s.get_dtype() == "I32"
        assert len(s) == 4
        assert f.get_slice("s").get_shape() == []
        np.testing.assert_array_equal(f.get_slice("s")[()], np.array(3.0, np.float32))
        assert f.get_slice("z")[:, 1].shape == (0,)
        with pytest.raises(IndexError):
            s[4]
        with pytest.raises(IndexError):
            s[0, 0, 0, 0]
        with pytest.raises(SafetensorError) as e:
            f.get_slice("nope")
        assert e.value.kind == "tensor_not_found"
    with safe_open(path, "pt") as f:
        with pytest.raises(IndexError):
            f.get_slice("a")[-5]


index_part = st.one_of(
    st.integers(-4, 3),
    st.builds(slice, st.one_of(st.none(), st.integers(-7, 7)), st.one_of(st.none(), st.integers(-7, 7)),
              st.one_of(st.none(), st.integers(1, 4), st.integers(-4, -1))),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(index_part, min_size=1, max_size=3))
def test_random_index_tuples_match_numpy_and_torch(path, parts):
    idx = tuple(parts)
    with safe_open(path, "np") as f:
        same(lambda: f.get_slice("a")[idx], lambda: ARR[idx], np_eq, idx)
    if any(isinstance(i, slice) and i.step is not None and i.step < 0 for i in idx):
        return
    with safe_open(path, "pt") as f:
        same(lambda: f.get_slice("a")[idx], lambda: torch.from_numpy(ARR)[idx], torch.equal)


class _ReadRecorder:
    """Wraps the native file handle and records the byte ranges read."""

    def __init__(self, inner):
        self.inner = inner
        self.reads = []

    def read_range(self, start, end, name=None):
        self.reads.append(end - start)
        return self.inner.read_range(start, end, name)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("backend", ["mmap", "pread"])
@pytest.mark.parametrize("fw", ["np", "pt"])
def test_slices_match_and_read_only_the_selected_rows(path, fw, backend):
    """Either backend: same results as indexing the whole tensor, and only
    the rows between the first and last row the first index selects are
    read (a whole-tensor read only for indices that do not start with an
    int or a slice)."""
    row = 5 * 3 * 4  # bytes in one row of "a" (int32, 5x3)
    rows = np.arange(SHAPE[0])
    full = ARR if fw == "np" else torch.from_numpy(ARR)
    eq = np_eq if fw == "np" else (lambda a, b: torch.equal(a, b) and a.is_contiguous())
    # torch slices are views of a mapping unless copies are asked for.
    with safe_open(path, fw, backend=backend, copy=True if fw == "pt" else None) as f:
        rec = _ReadRecorder(f._file)
        f._file = rec
        s = f.get_slice("a")
        checked = 0
        for idx in itertools.product(INDICES_2D, repeat=2):
            if idx.count(Ellipsis) > 1:
                continue
            if fw == "pt" and any(isinstance(i, slice) and (i.step or 1) < 0 for i in idx):
                continue
            rec.reads.clear()
            same(lambda: s[idx], lambda: full[idx], eq, idx)
            first = idx[0]
            if isinstance(first, (int, slice)) and len(np.atleast_1d(rows[first])):
                sel = np.atleast_1d(rows[first])
                assert rec.reads == [(sel.max() - sel.min() + 1) * row], (idx, rec.reads)
                checked += 1
            elif rec.reads:
                assert rec.reads == [SHAPE[0] * row], (idx, rec.reads)
        assert checked > 20
        # A 1-d tensor, every slice: elements are rows.
        v = np.arange(7, dtype=np.float64) if fw == "np" else torch.arange(7, dtype=torch.float64)
        sv = f.get_slice("v")
        for sl in slices(fw == "np"):
            rec.reads.clear()
            got = sv[sl]
            exp = v[sl]
            assert (np.array_equal(got, exp) if fw == "np" else torch.equal(got, exp)), sl
            sel = np.arange(7)[sl]
            if len(sel):
                assert rec.reads == [(sel.max() - sel.min() + 1) * 8], (sl, rec.reads)
        # Out-of-range ints still raise the framework's IndexError.
        with pytest.raises(IndexError):
            s[4]
        with pytest.raises(IndexError):
            s[-5]
