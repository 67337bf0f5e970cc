"""Round trips with the reference `safetensors` in both directions, and
byte-identical output where the core's rules say so (same tensors, at most
one metadata entry)."""

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

NUMPY_DTYPES = [
    np.bool_, np.uint8, np.int8, np.int16, np.uint16, np.float16, np.int32,
    np.uint32, np.float32, np.complex64, np.float64, np.int64, np.uint64,
]

TORCH_DTYPES = [
    torch.bool, torch.uint8, torch.int8, torch.int16, torch.uint16, torch.float16,
    torch.bfloat16, torch.int32, torch.uint32, torch.float32, torch.complex64,
    torch.float64, torch.int64, torch.uint64, torch.float8_e4m3fn, torch.float8_e5m2,
    torch.float8_e8m0fnu, torch.float4_e2m1fn_x2,
]
for _name in ("float8_e4m3fnuz", "float8_e5m2fnuz"):
    if hasattr(torch, _name):
        TORCH_DTYPES.append(getattr(torch, _name))


def np_sample(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * np.dtype(dtype).itemsize, dtype=np.uint8)
    arr = raw.view(dtype).reshape(shape)
    if dtype == np.bool_:
        arr = (raw % 2).astype(np.bool_).reshape(shape)
    return arr


def torch_sample(dtype, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = 1
    for d in shape:
        n *= d
    size = torch.empty(0, dtype=dtype).element_size()
    raw = torch.randint(0, 256, (n * size,), dtype=torch.uint8, generator=g)
    if dtype == torch.bool:
        return (raw % 2).bool().reshape(shape)
    return raw.view(dtype).reshape(shape)


def torch_equal(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    return torch.equal(a.view(torch.uint8) if a.element_size() == 1 and a.dtype != torch.bool else a,
                       b.view(torch.uint8) if b.element_size() == 1 and b.dtype != torch.bool else b) \
        if a.dtype not in (torch.bfloat16, torch.float16, torch.float32, torch.float64, torch.complex64) \
        else a.contiguous().view(-1).view(torch.uint8).equal(b.contiguous().view(-1).view(torch.uint8))


def numpy_dict():
    return {
        f"t.{np.dtype(d).name}": np_sample(d, (3, 5), seed=i) for i, d in enumerate(NUMPY_DTYPES)
    } | {"scalar": np.array(3.5, dtype=np.float32), "empty": np.zeros((0, 4), np.int16)}


def torch_dict():
    d = {f"t.{str(dt).split('.')[-1]}": torch_sample(dt, (3, 4), seed=i) for i, dt in enumerate(TORCH_DTYPES)}
    d["scalar"] = torch.tensor(1.5)
    d["empty"] = torch.zeros((2, 0), dtype=torch.int64)
    return d


@pytest.mark.parametrize("metadata", [None, {}, {"format": "np"}])
def test_numpy_save_bytes_identical_to_reference(metadata):
    d = numpy_dict()
    assert ts_np.save(d, metadata=metadata) == ref_np.save(d, metadata=metadata)


@pytest.mark.parametrize("metadata", [None, {}, {"format": "pt"}])
def test_torch_save_bytes_identical_to_reference(metadata):
    d = torch_dict()
    assert ts_pt.save(d, metadata=metadata) == ref_pt.save(d, metadata=metadata)


def test_save_file_identical_to_reference(tmp_path):
    d = torch_dict()
    ts_pt.save_file(d, tmp_path / "ours.safetensors", metadata={"a": "b"})
    ref_pt.save_file(d, tmp_path / "ref.safetensors", metadata={"a": "b"})
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "ref.safetensors").read_bytes()
    nd = numpy_dict()
    ts_np.save_file(nd, str(tmp_path / "ours_np.safetensors"))
    ref_np.save_file(nd, str(tmp_path / "ref_np.safetensors"))
    assert (tmp_path / "ours_np.safetensors").read_bytes() == (tmp_path / "ref_np.safetensors").read_bytes()


def test_several_metadata_entries_same_content_as_reference():
    d = {"x": np.arange(4, dtype=np.float32)}
    meta = {"b": "2", "a": "1", "c": "3"}
    ours = ts_np.save(d, metadata=meta)
    ref = ref_np.save(d, metadata=meta)
    assert len(ours) == len(ref)
    assert ours[-16:] == ref[-16:]
    # Ours writes metadata keys sorted: deterministic output.
    assert b'"__metadata__":{"a":"1","b":"2","c":"3"}' in ours
    with _ref_open(ours) as f:
        assert f.metadata() == meta


class _ref_open:
    def __init__(self, data):
        import tempfile
        self.tmp = tempfile.NamedTemporaryFile(suffix=".safetensors", delete=False)
        self.tmp.write(data)
        self.tmp.close()

    def __enter__(self):
        self.f = safetensors.safe_open(self.tmp.name, framework="np")
        return self.f.__enter__()

    def __exit__(self, *a):
        import os
        self.f.__exit__(*a)
        os.unlink(self.tmp.name)


def test_reference_reads_ours_numpy(tmp_path):
    d = numpy_dict()
    p = tmp_path / "x.safetensors"
    ts_np.save_file(d, p, metadata={"k": "v"})
    back = ref_np.load_file(str(p))
    assert list(back) == list(ts_np.load_file(p))
    for k, v in d.items():
        np.testing.assert_array_equal(back[k], v)
        assert back[k].dtype == v.dtype
    with safetensors.safe_open(str(p), framework="np") as f:
        assert f.metadata() == {"k": "v"}


def test_ours_reads_reference_numpy(tmp_path):
    d = numpy_dict()
    p = tmp_path / "x.safetensors"
    ref_np.save_file(d, str(p), metadata={"k": "v"})
    for backend in (None, "mmap", "pread"):
        back = ts_np.load_file(p, backend=backend)
        assert set(back) == set(d)
        for k, v in d.items():
            assert back[k].dtype == v.dtype and back[k].shape == v.shape
            np.testing.assert_array_equal(back[k], v)
    back = ts_np.load(p.read_bytes())
    for k, v in d.items():
        np.testing.assert_array_equal(back[k], v)


def test_reference_reads_ours_torch(tmp_path):
    d = torch_dict()
    p = tmp_path / "x.safetensors"
    ts_pt.save_file(d, p)
    back = ref_pt.load_file(str(p))
    assert set(back) == set(d)
    for k, v in d.items():
        assert torch_equal(back[k], v), k


def test_ours_reads_reference_torch(tmp_path):
    d = torch_dict()
    p = tmp_path / "x.safetensors"
    ref_pt.save_file(d, str(p))
    for backend in (None, "mmap", "pread"):
        back = ts_pt.load_file(p, backend=backend)
        assert set(back) == set(d)
        for k, v in d.items():
            assert torch_equal(back[k], v), (k, backend)
    back = ts_pt.load(p.read_bytes())
    for k, v in d.items():
        assert torch_equal(back[k], v), k


def test_float4_doubles_last_dimension_like_reference(tmp_path):
    t = torch_sample(torch.float4_e2m1fn_x2, (2, 3))
    data = ts_pt.save({"f4": t})
    assert data == ref_pt.save({"f4": t})
    p = tmp_path / "f4.safetensors"
    p.write_bytes(data)
    with tensorseal.safe_open(p, "pt") as f:
        assert f.get_slice("f4").get_shape() == [2, 6]
        assert f.get_slice("f4").get_dtype() == "F4"
        back = f.get_tensor("f4")
    assert back.dtype == torch.float4_e2m1fn_x2 and back.shape == (2, 3)
    assert torch.equal(back.view(torch.uint8), t.view(torch.uint8))


def test_loaded_arrays_are_writable_and_independent(tmp_path):
    d = {"a": np.arange(10, dtype=np.float32), "b": np.ones(3)}
    p = tmp_path / "x.safetensors"
    ts_np.save_file(d, p)
    for loaded in (ts_np.load_file(p), ts_np.load(p.read_bytes())):
        loaded["a"][0] = 42
        assert loaded["b"][0] == 1
    assert ts_np.load_file(p)["a"][0] == 0
    t = ts_pt.load_file(p)
    t["a"] += 1
    assert ts_pt.load_file(p)["a"][0] == 0


def test_loaded_torch_tensors_do_not_share_storage(tmp_path):
    d = {f"w{i}": torch.full((100,), float(i)) for i in range(5)}
    p = tmp_path / "x.safetensors"
    ts_pt.save_file(d, p)
    loaded = ts_pt.load_file(p)
    # Each tensor has a storage of its own, so saving them back works.
    assert all(len(g) == 1 for g in ts_pt._find_shared_tensors(loaded))
    ref_pt.save_file(loaded, str(tmp_path / "again.safetensors"))
    ts_pt.save_file(loaded, tmp_path / "again2.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == (tmp_path / "again2.safetensors").read_bytes()


def test_deserialize_matches_reference():
    d = numpy_dict()
    data = ref_np.save(d)
    ours = tensorseal.deserialize(data)
    ref = safetensors.deserialize(data)
    # Ours lists tensors in file order; the reference in hash-map order.
    assert [n for n, _ in ours] == tensorseal_offset_order(data)
    assert sorted((n, v["dtype"], list(v["shape"]), bytes(v["data"])) for n, v in ours) == sorted(
        (n, v["dtype"], list(v["shape"]), bytes(v["data"])) for n, v in ref
    )


def tensorseal_offset_order(data):
    import json
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    return sorted(header, key=lambda k: header[k]["data_offsets"])


def test_empty_dict_identical():
    assert ts_np.save({}) == ref_np.save({})
    assert ts_pt.save({}, metadata={"a": "b"}) == ref_pt.save({}, metadata={"a": "b"})
    assert ts_np.load(ts_np.save({})) == {}


def test_no_tensors_empty_metadata_is_valid_json():
    # The reference writes `{},"__metadata__":{}}` here (invalid JSON that
    # it cannot read back); ours writes a valid header.
    ours = ts_np.save({}, metadata={})
    assert ours == b"\x18" + b"\0" * 7 + b'{"__metadata__":{}}     '
    with _ref_open(ours) as f:
        assert f.keys() == [] and f.metadata() == {}


def test_unicode_names_and_metadata_identical():
    d = {"ünïcode/näme \"q\"\n": np.arange(3, dtype=np.int64), "emoji🙂": np.zeros(1, np.uint8)}
    meta = {"descr": "tab\there \u2603"}
    assert ts_np.save(d, metadata=meta) == ref_np.save(d, metadata=meta)


dtype_st = st.sampled_from(NUMPY_DTYPES)
shape_st = st.lists(st.integers(0, 4), min_size=0, max_size=3)
name_st = st.text(min_size=1, max_size=12).filter(lambda s: "\0" not in s and s != "__metadata__")


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(name_st, st.tuples(dtype_st, shape_st), max_size=6),
       st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=1)))
def test_random_dicts_identical_bytes_and_round_trip(spec, metadata):
    d = {name: np_sample(dt, tuple(shape), seed=i) for i, (name, (dt, shape)) in enumerate(spec.items())}
    ours = ts_np.save(d, metadata=metadata)
    if d or metadata != {}:  # see test_no_tensors_empty_metadata_is_valid_json
        assert ours == ref_np.save(d, metadata=metadata)
    back = ts_np.load(ours)
    assert set(back) == set(d)
    for k, v in d.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        np.testing.assert_array_equal(back[k], v)
