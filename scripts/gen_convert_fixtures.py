#!/usr/bin/env python3
"""Builds the fixtures of `tensorseal convert` under tests/fixtures/convert/.

Benign checkpoints are written with real torch and numpy. Malicious pickles
are assembled opcode by opcode here and are NEVER unpickled: each payload
would create the file `PWNED` in the current directory if it ran.

Run with the venv python: /work/venv/bin/python scripts/gen_convert_fixtures.py
"""

import io
import json
import os
import pathlib
import pickle
import shutil
import struct
import zipfile
from collections import OrderedDict

import numpy as np
import torch

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "convert"
torch.manual_seed(0)
rng = np.random.default_rng(0)


def every_dtype_state():
    """A state dict with every dtype torch can save that safetensors has."""
    sd = OrderedDict()
    base = torch.randn(3, 4)
    for name, dt in [
        ("f32", torch.float32), ("f64", torch.float64), ("f16", torch.float16),
        ("bf16", torch.bfloat16), ("i64", torch.int64), ("i32", torch.int32),
        ("i16", torch.int16), ("i8", torch.int8), ("u8", torch.uint8),
        ("u16", torch.uint16), ("u32", torch.uint32), ("u64", torch.uint64),
        ("bool", torch.bool), ("c64", torch.complex64),
        ("f8_e4m3fn", torch.float8_e4m3fn), ("f8_e5m2", torch.float8_e5m2),
        ("f8_e4m3fnuz", torch.float8_e4m3fnuz), ("f8_e5m2fnuz", torch.float8_e5m2fnuz),
    ]:
        if dt == torch.bool:
            t = base > 0
        elif dt == torch.complex64:
            t = torch.complex(base, -base)
        elif dt in (torch.uint16, torch.uint32, torch.uint64):
            t = (base.abs() * 1000).to(torch.int64).to(dt)
        elif not dt.is_floating_point:
            t = (base * 50).to(dt)
        else:
            t = base.to(dt)
        sd[name] = t
    return sd


def views_state():
    """Parameters, views, non-contiguous, shared storage, empty and 0-d."""
    w = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    sd = OrderedDict()
    sd["param"] = torch.nn.Parameter(torch.randn(2, 3))
    sd["weight"] = w
    sd["weight_alias"] = w  # identical: kept once, alias in metadata
    sd["row"] = w[1]  # contiguous view with an offset
    sd["transposed"] = w.t()  # non-contiguous
    sd["strided"] = w[:, ::2]  # non-contiguous, stride 2
    sd["narrow"] = w[1:3, 2:5]
    sd["expanded"] = torch.tensor([1.0, 2.0]).expand(3, 2)  # stride 0
    sd["empty"] = torch.empty(0, 3)
    sd["scalar"] = torch.tensor(7.5)
    sd["half_view"] = torch.randn(8).half()[2:6]
    return sd


def put(z, name, data, compress=zipfile.ZIP_STORED):
    """Writes a zip member with a fixed timestamp (reproducible fixtures)."""
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.compress_type = compress
    z.writestr(info, data)


def save(obj, name, legacy=False):
    path = OUT / name
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for f in OUT.iterdir():
        if f.is_file():
            f.unlink()

    every = every_dtype_state()
    save(every, "every_dtype.pt")
    legacy_every = OrderedDict((k, v) for k, v in every.items()
                               if v.dtype not in (torch.uint16, torch.uint32, torch.uint64)
                               and not str(v.dtype).startswith("torch.float8"))
    save(legacy_every, "every_dtype_legacy.pt", legacy=True)
    views = views_state()
    save(views, "views.pt")
    save(views, "views_legacy.pt", legacy=True)
    nested = {
        "epoch": 3,
        "lr": 0.5,
        "name": "run-1",
        "state_dict": OrderedDict(a=torch.ones(2, 2), b=torch.zeros(3, dtype=torch.int64)),
        "optimizer": {"state": {0: {"momentum_buffer": torch.full((2, 2), 0.25)}}, "param_groups": [{"lr": 0.5, "params": [0]}]},
        "ema": {"model": OrderedDict(a=torch.full((2, 2), 2.0))},
        "list_of_tensors": [torch.tensor([1, 2]), torch.tensor([3])],
    }
    save(nested, "nested.pt")
    save(torch.arange(5, dtype=torch.int16), "bare_tensor.pt")
    # NumPy arrays pickled inside a checkpoint (bytes in the pickle itself).
    save({"weights": OrderedDict(w=torch.ones(2)),
          "np_f32": np.arange(6, dtype=np.float32).reshape(2, 3),
          "np_be_i16": np.arange(4, dtype=">i2"),
          "np_fortran": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
          "np_bool": np.array([True, False])}, "numpy_inside.pt")

    # Big-endian and renamed-root copies of a small zip checkpoint.
    small = OrderedDict(w=torch.arange(6, dtype=torch.float32).reshape(2, 3),
                        i=torch.arange(4, dtype=torch.int64),
                        h=torch.tensor([1.5, -2.0], dtype=torch.float16),
                        c=torch.tensor([1 + 2j], dtype=torch.complex64),
                        t=torch.arange(6, dtype=torch.int32).reshape(2, 3).t())
    src = save(small, "small.pt")
    with zipfile.ZipFile(src) as z:
        names = z.namelist()
        root = names[0].split("/")[0]
        members = [(n[len(root) + 1:], z.read(n)) for n in names]
    # Storage key -> element size, read from the pickle without running it:
    # each persistent id is ('storage', <StorageClass>, key, 'cpu', numel).
    pkl = dict(members)["data.pkl"]
    elem = {"FloatStorage": 4, "LongStorage": 8, "HalfStorage": 2, "ComplexFloatStorage": 4, "IntStorage": 4}
    import pickletools
    ops = list(pickletools.genops(pkl))
    key_size = {}
    for i, (op, arg, _) in enumerate(ops):
        if op.name == "GLOBAL" and arg.startswith("torch ") and arg.split()[1] in elem:
            j = i + 1
            while ops[j][0].name in ("BINPUT", "LONG_BINPUT", "MEMOIZE"):
                j += 1
            key_size[ops[j][1]] = elem[arg.split()[1]]
    for variant, rename, big in [("renamed_root.pt", "some-other-root", False), ("big_endian.pt", None, True)]:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z2:
            for rel, data in members:
                if big and rel == "byteorder":
                    data = b"big"
                if big and rel.startswith("data/"):
                    es = key_size[rel[5:]]
                    data = np.frombuffer(data, dtype=np.uint8).reshape(-1, es)[:, ::-1].tobytes()
                put(z2, f"{rename or root}/{rel}", data)
        (OUT / variant).write_bytes(out.getvalue())
    # A deflated copy (torch never compresses, other tools may).
    with zipfile.ZipFile(OUT / "deflated.pt", "w", zipfile.ZIP_DEFLATED) as z2:
        for rel, data in members:
            put(z2, f"deflated/{rel}", data, zipfile.ZIP_DEFLATED)

    # Hugging Face-style sharded directory.
    hf = OUT / "hf_sharded"
    hf.mkdir(exist_ok=True)
    s1 = OrderedDict(**{"layer.0.weight": torch.randn(4, 4), "layer.0.bias": torch.randn(4)})
    s2 = OrderedDict(**{"layer.1.weight": torch.randn(4, 4).to(torch.bfloat16)})
    torch.save(s1, hf / "pytorch_model-00001-of-00002.bin")
    torch.save(s2, hf / "pytorch_model-00002-of-00002.bin")
    wm = {k: "pytorch_model-00001-of-00002.bin" for k in s1}
    wm.update({k: "pytorch_model-00002-of-00002.bin" for k in s2})
    (hf / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": wm}, indent=2))

    # NumPy.
    np.save(OUT / "array_f32.npy", rng.standard_normal((3, 4)).astype(np.float32))
    np.save(OUT / "array_be_i64.npy", np.arange(6, dtype=">i8").reshape(2, 3))
    np.save(OUT / "array_fortran_f64.npy", np.asfortranarray(rng.standard_normal((3, 5))))
    np.save(OUT / "array_bool.npy", np.array([[True, False], [False, True]]))
    np.save(OUT / "array_0d_u16.npy", np.array(7, dtype=np.uint16))
    np.savez(OUT / "arrays.npz", a=np.arange(4, dtype=np.int32), b=np.ones((2, 2), dtype=">f4"),
             c=np.array([1 + 1j], dtype=np.complex64))
    np.savez_compressed(OUT / "arrays_compressed.npz", x=np.arange(10, dtype=np.float16))
    np.save(OUT / "object_array.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)

    write_malicious()
    write_exact()


# ------------------------------------------------ exactness (issue 11: 11-13)
# Each file of tests/fixtures/convert/exact/ is listed in its manifest.json as
# either "same" (the converted tensors must equal torch.load(weights_only=True)
# or numpy.load tensor by tensor: names, dtype, shape, bytes) or "refuse"
# (convert must exit 1 with `why` in its message and write nothing).

EXACT = OUT / "exact"


class _StorageKeys(pickle.Unpickler):
    """Reads our own data.pkl for its storage keys and types. Only used on
    files this script just wrote with torch.save; nothing foreign is loaded."""

    def __init__(self, f):
        super().__init__(f)
        self.keys = {}

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if name.endswith("Storage"):
            return name
        return lambda *a, **k: None

    def persistent_load(self, pid):
        _, storage_type, key, _, _ = pid
        self.keys[key] = storage_type


ELEM = {"DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2,
        "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1,
        "ByteStorage": 1, "BoolStorage": 1, "ComplexFloatStorage": 4,
        "ComplexDoubleStorage": 8}


def zip_members(path):
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        root = names[0].split("/")[0]
        return root, [(n[len(root) + 1:], z.read(n)) for n in names]


def write_zip(path, entries):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries:
            put(z, name, data)
    path.write_bytes(out.getvalue())


def big_endian_copy(src, dst, record=("byteorder", b"big")):
    """`src` with every storage byte-swapped in units of its storage type
    (complex: each part), as a big-endian machine's torch.save writes it,
    and the byteorder record replaced by `record` (None: no record)."""
    root, members = zip_members(src)
    u = _StorageKeys(io.BytesIO(dict(members)["data.pkl"]))
    u.load()
    entries = []
    for rel, data in members:
        if rel == "byteorder":
            if record is not None:
                entries.append((f"{root}/{record[0]}", record[1]))
            continue
        if rel.startswith("data/") and rel[5:] in u.keys:
            es = ELEM[u.keys[rel[5:]]]
            data = np.frombuffer(data, dtype=np.uint8).reshape(-1, es)[:, ::-1].tobytes()
        entries.append((f"{root}/{rel}", data))
    write_zip(dst, entries)


class DupDict:
    """A dict pickled as the given assignments in order, duplicates included
    (as a pickle's SETITEMS may hold them)."""

    def __init__(self, pairs):
        self.pairs = pairs


def _pickle_module():
    """A pickle module whose Pickler writes DupDict as EMPTY_DICT + SETITEMS."""
    import types

    class Pickler(pickle._Pickler):
        dispatch = dict(pickle._Pickler.dispatch)

        def save_dupdict(self, obj):
            self.write(pickle.EMPTY_DICT)
            self.memoize(obj)
            self._batch_setitems(iter(obj.pairs))

        dispatch[DupDict] = save_dupdict

    m = types.ModuleType("dup_pickle")
    m.Pickler = Pickler
    m.Unpickler = pickle.Unpickler
    m.load = pickle.load
    m.loads = pickle.loads
    m.dump = pickle.dump
    m.__name__ = "pickle"
    return m


def write_exact():
    if EXACT.exists():
        shutil.rmtree(EXACT)
    EXACT.mkdir()
    manifest = {}

    def same(name, note, args=()):
        manifest[name] = {"expect": "same", "note": note, "args": list(args)}

    def refuse(name, why, note, args=()):
        manifest[name] = {"expect": "refuse", "why": why, "note": note, "args": list(args)}

    # -- 11. byte order ---------------------------------------------------
    w = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7
    sd = OrderedDict(
        f32=w, f32_t=w.t(), f32_row=w[2], f32_expand=torch.tensor([1.5, -2.25]).expand(3, 2),
        f64=torch.linspace(-3, 3, 7, dtype=torch.float64),
        f16=torch.tensor([1.5, -2.0, 65504.0], dtype=torch.float16),
        bf16=torch.tensor([[1.0, -3.5], [7.0, 0.1]], dtype=torch.bfloat16).t(),
        i64=torch.tensor([-(2 ** 40), 3, 2 ** 62], dtype=torch.int64),
        i32=torch.arange(-3, 3, dtype=torch.int32).reshape(2, 3)[:, ::2],
        i16=torch.tensor([-300, 258], dtype=torch.int16),
        i8=torch.tensor([-1, 2], dtype=torch.int8),
        u8=torch.tensor([1, 255], dtype=torch.uint8),
        bool=torch.tensor([True, False, True]),
        c64=torch.tensor([1 + 2j, -3.5 + 0.25j], dtype=torch.complex64),
        c128=torch.tensor([1 - 2j], dtype=torch.complex128),
    )
    sd.pop("c128")  # no safetensors dtype for complex128
    le = EXACT / "bo_little.pt"
    torch.save(sd, le)
    same("bo_little.pt", "torch.save on this (little-endian) machine: byteorder record `little`")
    big_endian_copy(le, EXACT / "bo_big.pt")
    same("bo_big.pt", "record `byteorder` = big, every storage swapped in its type's units (views, complex)")
    big_endian_copy(le, EXACT / "bo_big_upper_record.pt", ("BYTEORDER", b"big"))
    same("bo_big_upper_record.pt", "record spelled `BYTEORDER`: torch looks records up ignoring case")
    big_endian_copy(le, EXACT / "bo_big_mixed_record.pt", ("ByteOrder", b"big"))
    same("bo_big_mixed_record.pt", "record spelled `ByteOrder`")
    root, members = zip_members(le)
    write_zip(EXACT / "bo_absent.pt", [(f"{root}/{r}", d) for r, d in members if r != "byteorder"])
    same("bo_absent.pt", "no byteorder record: torch's default load endianness, little")
    for name, value in [("bo_big_newline.pt", b"big\n"), ("bo_big_upper_value.pt", b"BIG"),
                        ("bo_big_space.pt", b" big"), ("bo_unknown.pt", b"middle"), ("bo_empty.pt", b"")]:
        big_endian_copy(le, EXACT / name, ("byteorder", value))
        refuse(name, "neither `little` nor `big`", f"byteorder record {value!r}: torch raises 'Unknown endianness type'")
    # Two records that match `byteorder` ignoring case: which one torch reads
    # depends on its search order.
    root, members = zip_members(EXACT / "bo_big.pt")
    write_zip(EXACT / "bo_twice.pt", [(f"{root}/{r}", d) for r, d in members]
              + [(f"{root}/BYTEORDER", b"little")])
    refuse("bo_twice.pt", "differ only in case", "`byteorder` = big and `BYTEORDER` = little")
    # One big-endian storage viewed as float32 and as int16 (only a crafted
    # pickle does this): torch swaps it once, for whichever loads it first.
    pair = EXACT / "bo_pair.pt"
    torch.save(OrderedDict(f=torch.tensor([1.5, -2.0]), h=torch.tensor([1, 2, 3, 4], dtype=torch.int16)), pair)
    big_endian_copy(pair, EXACT / "bo_big_two_widths.pt")
    pair.unlink()
    root, members = zip_members(EXACT / "bo_big_two_widths.pt")
    pkl = dict(members)["data.pkl"]
    assert pkl.count(b"X\x01\x00\x00\x001") == 1
    members = [(r, pkl.replace(b"X\x01\x00\x00\x001", b"X\x01\x00\x00\x000") if r == "data.pkl" else d)
               for r, d in members if r != "data/1"]
    write_zip(EXACT / "bo_big_two_widths.pt", [(f"{root}/{r}", d) for r, d in members])
    refuse("bo_big_two_widths.pt", "viewed by `f` with 4-byte elements",
           "storage 0 swapped once by torch, viewed as float32 and int16")
    # Legacy: torch reads storages little-endian whatever sys_info says.
    legacy = EXACT / "bo_legacy_sysinfo_big.pt"
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    raw = legacy.read_bytes()
    i = raw.index(b"little_endian")
    j = raw.index(b"\x88", i)  # NEWTRUE right after the key (and its memo put)
    assert j - i < 20
    legacy.write_bytes(raw[:j] + b"\x89" + raw[j + 1:])
    same("bo_legacy_sysinfo_big.pt", "legacy file whose sys_info says little_endian=False: torch ignores it")

    # -- 12. state-dict keys ------------------------------------------------
    t = lambda *v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    dup = _pickle_module()
    torch.save(DupDict([(1, t(1)), (True, t(2)), (1.0, t(3)), ("x", t(4)), (2.0, t(5)), (2, t(6)),
                        (False, t(7)), (-0.0, t(8)), (0, t(9))]),
               EXACT / "keys_equal_merge.pt", pickle_module=dup)
    same("keys_equal_merge.pt", "SETITEMS assigns 1, True, 1.0 (one key: named by the first, last value wins), 2.0 and 2, False, -0.0 and 0")
    torch.save({None: t(1), b"ab'": t(2), (1, "a", None, (2.5,)): t(3), 2.5: t(4), -7: t(5), True: t(6),
                "s": t(7), 1e16: t(8), 1e-05: t(9), 2 ** 62: t(10), float("-inf"): t(11)},
               EXACT / "keys_various.pt")
    same("keys_various.pt", "None, bytes, tuple, float, negative int, bool, str keys: named str(key)")
    torch.save({"layers": {0: {"w": t(1, 2)}, 1: {"w": t(3, 4)}}, "head": [t(5), {"b": t(6)}]},
               EXACT / "keys_nested_int.pt")
    same("keys_nested_int.pt", "int keys and lists inside dicts: layers.0.w, head.1.b")
    torch.save(DupDict([("a", t(1)), ("a", t(2)), ("b", t(3)), ("a", t(4))]), EXACT / "keys_dup_str.pt",
               pickle_module=dup)
    same("keys_dup_str.pt", "a string key assigned three times: first position, last value")
    torch.save({1: t(1), "1": t(2)}, EXACT / "keys_int_vs_str.pt")
    refuse("keys_int_vs_str.pt", "both become the name `1`", "1 and '1' are two keys with one name")
    torch.save({None: t(1), "None": t(2)}, EXACT / "keys_none_vs_str.pt")
    refuse("keys_none_vs_str.pt", "both become the name `None`", "None and 'None'")
    torch.save({True: t(1), "True": t(2)}, EXACT / "keys_bool_vs_str.pt")
    refuse("keys_bool_vs_str.pt", "both become the name `True`", "True and 'True'")
    torch.save({(1, 2): t(1), "(1, 2)": t(2)}, EXACT / "keys_tuple_vs_str.pt")
    refuse("keys_tuple_vs_str.pt", "both become the name `(1, 2)`", "(1, 2) and '(1, 2)'")
    torch.save({"a.b": t(1), "a": {"b": t(2)}}, EXACT / "keys_dotted_path.pt")
    refuse("keys_dotted_path.pt", "['a.b']", "'a.b' and 'a' -> 'b' both make the name a.b")
    torch.save({"0": t(1), "x": [t(2)], "x.0": t(3)}, EXACT / "keys_list_index.pt")
    refuse("keys_list_index.pt", "['x.0']", "list index x.0 and key 'x.0'")
    torch.save({float("nan"): t(1)}, EXACT / "keys_nan.pt")
    refuse("keys_nan.pt", "NaN key", "NaN keys compare by identity")
    torch.save({2 ** 70: t(1)}, EXACT / "keys_bigint.pt")
    refuse("keys_bigint.pt", "wider than 64 bits", "an integer key past 64 bits")

    # -- 13. views and the output size bound ---------------------------------
    base = torch.arange(12, dtype=torch.float32)
    torch.save(OrderedDict(
        overlap=base.as_strided((4, 3), (2, 1)),  # rows share elements
        overlap_t=base.as_strided((3, 4), (1, 2), 1),
        expand=torch.tensor([1.0, 2.0]).expand(1000, 2),  # 8 kB from 8 bytes
        expand_mid=torch.arange(6, dtype=torch.int16).reshape(2, 1, 3).expand(2, 50, 3),
        scalar_expand=torch.tensor(3.5).expand(7, 7),
        zero_stride_all=base.as_strided((5, 5), (0, 0), 11),
        base=base,
    ), EXACT / "views_overlap.pt")
    same("views_overlap.pt", "overlapping and stride-0 views, materialised as torch returns them")
    same("views_overlap.pt@limit", "the same within an explicit --max-output-size", ["--max-output-size", "20000"])
    refuse("views_overlap.pt@small", "over the limit of 1000", "an explicit --max-output-size below the output",
           ["--max-output-size", "1000"])
    torch.save({"huge": torch.zeros(1).expand(1 << 20, 1 << 20)}, EXACT / "views_huge_expand.pt")
    refuse("views_huge_expand.pt", "over the limit", "4 TiB of output from 4 bytes: over the default limit")
    # A tensor whose storage is missing, after one that is written: the
    # error comes mid-write and the temporary file must go.
    root, members = zip_members(EXACT / "bo_little.pt")
    write_zip(EXACT / "missing_storage.pt", [(f"{root}/{r}", d) for r, d in members if r != "data/5"])
    refuse("missing_storage.pt", "not in the file", "a storage record removed: fails after earlier tensors are written")

    # -- NumPy: compared with numpy.load ------------------------------------
    np.save(EXACT / "np_be_f8.npy", np.linspace(-1, 1, 6, dtype=">f8").reshape(2, 3))
    same("np_be_f8.npy", "big-endian float64 .npy")
    np.save(EXACT / "np_be_c8_fortran.npy", np.asfortranarray(np.array([[1 + 2j, 3 - 4j], [5j, -1]], dtype=">c8")))
    same("np_be_c8_fortran.npy", "big-endian complex64, Fortran order")
    np.savez(EXACT / "np_mixed.npz", le=np.arange(5, dtype="<i4"), be=np.arange(5, dtype=">i4"),
             u2=np.array([1, 65535], dtype=">u2"))
    same("np_mixed.npz", "npz with little- and big-endian members")

    write_red_team(same, refuse)
    write_red_team_sizes(same, refuse)
    write_red_team_args(same, refuse)
    write_red_team_index(same, refuse)
    write_red_team_zip_views(same, refuse)

    (EXACT / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


# ------------------------------------------------- red team: crafted pickles
# Pickles written here call torch's own rebuild functions with arguments no
# torch.save produces; torch.load(weights_only=True) accepts each of the
# "same" ones, and each "refuse" one would load as something other than its
# rebuild arguments say (or torch refuses it).

class _PStorage:
    """Pickled as the persistent id ('storage', type, key, 'cpu', numel)."""

    def __init__(self, stype, key, numel):
        self.pid = ("storage", stype, key, "cpu", numel)


class _Call:
    """Pickled as REDUCE of `func(*args)`, then BUILD `state` if given."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


class _CraftPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, _PStorage) else None


def _craft_pickle(obj):
    buf = io.BytesIO()
    _CraftPickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def _craft_zip(path, obj, storages, root="archive"):
    """A torch zip with a hand-made data.pkl and the given data/ records."""
    write_zip(path, [(f"{root}/data.pkl", _craft_pickle(obj)), (f"{root}/byteorder", b"little")]
              + [(f"{root}/data/{k}", d) for k, d in storages.items()] + [(f"{root}/version", b"3\n")])


def _v2(key, numel, off, size, stride, stype=None, rg=False, meta=None, state=None):
    args = (_PStorage(stype or torch.FloatStorage, key, numel), off, tuple(size), tuple(stride), rg, OrderedDict())
    if meta is not None:
        args += (meta,)
    return _Call(torch._utils._rebuild_tensor_v2, args, state)


def write_red_team(same, refuse):
    f32 = lambda *v: np.array(v, dtype="<f4").tobytes()  # noqa: E731
    s0, s1 = f32(1, 2, 3, 4), f32(9, 8, 7, 6)
    two = {"0": s0, "1": s1}
    # -- state applied after the rebuild: torch changes the tensor ----------
    _craft_zip(EXACT / "rt_build_set.pt",
               {"x": _v2("0", 4, 0, (4,), (1,), state=(_PStorage(torch.FloatStorage, "1", 4), 0, (2,), (1,)))}, two)
    refuse("rt_build_set.pt", "gets a BUILD state", "BUILD on a rebuilt tensor: weights_only runs set_(*state), another storage")
    _craft_zip(EXACT / "rt_param_state_data.pt", {"x": _Call(torch._utils._rebuild_parameter_with_state, (
        _v2("0", 4, 0, (4,), (1,)), False, OrderedDict(), {"data": _v2("1", 4, 0, (2,), (1,))}))}, two)
    refuse("rt_param_state_data.pt", "sets attributes on the tensor",
           "_rebuild_parameter_with_state whose state sets .data to another tensor")
    _craft_zip(EXACT / "rt_from_type_state_imag.pt", {"x": _Call(torch._tensor._rebuild_from_type_v2, (
        torch._utils._rebuild_tensor_v2, torch.Tensor,
        (_PStorage(torch.ComplexFloatStorage, "0", 2), 0, (2,), (1,), False, OrderedDict()),
        {"imag": _v2("1", 4, 0, (2,), (1,))}))}, two)
    refuse("rt_from_type_state_imag.pt", "sets attributes on the tensor",
           "_rebuild_from_type_v2 whose state assigns .imag (setattr writes into the tensor)")
    _craft_zip(EXACT / "rt_from_type_state_data_slots.pt", {"x": _Call(torch._tensor._rebuild_from_type_v2, (
        torch._utils._rebuild_tensor_v2, torch.nn.Parameter,
        (_PStorage(torch.FloatStorage, "0", 4), 0, (4,), (1,), False, OrderedDict()),
        (None, {"data": _v2("1", 4, 0, (2,), (1,))})))}, two)
    refuse("rt_from_type_state_data_slots.pt", "sets attributes on the tensor",
           "_rebuild_from_type_v2 with (None, slots) state assigning .data")
    _craft_zip(EXACT / "rt_from_type_empty_state.pt", {"x": _Call(torch._tensor._rebuild_from_type_v2, (
        torch._utils._rebuild_tensor_v2, torch.nn.Parameter,
        (_PStorage(torch.FloatStorage, "0", 4), 1, (3,), (1,), False, OrderedDict()), ({}, None))),
        "p": _Call(torch._utils._rebuild_parameter_with_state, (_v2("1", 4, 0, (2, 2), (1, 2)), True, OrderedDict(), {}))},
        two)
    same("rt_from_type_empty_state.pt", "_rebuild_from_type_v2 and _rebuild_parameter_with_state with empty states")
    # -- metadata: conjugate / negative bit -----------------------------------
    _craft_zip(EXACT / "rt_meta_neg.pt", {"x": _v2("0", 4, 0, (4,), (1,), meta={"neg": True})}, {"0": s0})
    refuse("rt_meta_neg.pt", "conjugate or negative bit", "metadata {'neg': True}: torch returns the negated values")
    torch.save({"c": torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64).conj()}, EXACT / "rt_meta_conj.pt")
    refuse("rt_meta_conj.pt", "conjugate or negative bit", "torch.save of x.conj(): conj bit in metadata")
    _craft_zip(EXACT / "rt_meta_false.pt", {"x": _v2("0", 4, 0, (4,), (1,), meta={"neg": False, "conj": False})},
               {"0": s0})
    refuse("rt_meta_false.pt", "conjugate or negative bit",
           "metadata {'neg': False, 'conj': False} on float32: torch asserts on the conj key of a real tensor")
    # -- requires_grad on a dtype that cannot have it: torch raises ----------
    _craft_zip(EXACT / "rt_rg_int.pt", {"x": _v2("0", 4, 0, (4,), (1,), stype=torch.IntStorage, rg=True)}, {"0": s0})
    refuse("rt_rg_int.pt", "requires_grad=True on a I32", "requires_grad=True on an int32 tensor")
    _craft_zip(EXACT / "rt_rg_param_bool.pt", {"x": _Call(torch._utils._rebuild_parameter, (
        _v2("0", 4, 0, (4,), (1,), stype=torch.BoolStorage), True, OrderedDict()))}, {"0": bytes([0, 1, 1, 0])})
    refuse("rt_rg_param_bool.pt", "requires_grad=True on a BOOL", "Parameter(bool tensor, requires_grad=True)")

    # -- zip member names ----------------------------------------------------
    def npy_bytes(a):
        b = io.BytesIO()
        np.save(b, a)
        return b.getvalue()

    def npz(name, members):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns on duplicate names
            with zipfile.ZipFile(EXACT / name, "w") as z:
                for n, d in members:
                    put(z, n, d)

    a3, b2 = npy_bytes(np.arange(3, dtype="<i8")), npy_bytes(np.ones(2, dtype="<f8"))
    npz("rt_npz_bare_twin.npz", [("a.npy", a3), ("a", b2)])
    same("rt_npz_bare_twin.npz", "members a.npy and a: numpy's key `a` reads member `a`")
    npz("rt_npz_bare_twin_first.npz", [("a", b2), ("a.npy", a3), ("c.npy", a3)])
    same("rt_npz_bare_twin_first.npz", "member a before a.npy: still member `a`")
    npz("rt_npz_no_suffix.npz", [("a.npy", a3), ("b", b2)])
    same("rt_npz_no_suffix.npz", "member b holds a .npy without the suffix: numpy returns it as key b")
    npz("rt_npz_dup_member.npz", [("a.npy", a3), ("a.npy", b2)])
    refuse("rt_npz_dup_member.npz", "two members share a name", "two members named a.npy")
    _craft_zip(EXACT / "rt_zip_dup_storage.pt", {"x": _v2("0", 4, 0, (4,), (1,))},
               {"0": s0}, root="archive")
    root, members = zip_members(EXACT / "rt_zip_dup_storage.pt")
    write_zip(EXACT / "rt_zip_dup_storage.pt", [(f"{root}/{r}", d) for r, d in members] + [(f"{root}/data/0", s1)])
    refuse("rt_zip_dup_storage.pt", "two members share a name", "data/0 twice: torch reads the first, a map keeps the last")
    write_zip(EXACT / "rt_zip_dup_pickle.pt", [(f"{root}/{r}", d) for r, d in members]
              + [(f"{root}/data.pkl", _craft_pickle({"y": _v2("0", 4, 2, (2,), (1,))}))])
    refuse("rt_zip_dup_pickle.pt", "two members share a name", "data.pkl twice")

    # -- tensors where convert did not look: must not be dropped silently ----
    ok = _v2("0", 4, 0, (4,), (1,))
    _craft_zip(EXACT / "rt_hidden_parameter_call.pt",
               {"ok": ok, "x": _Call(torch.nn.Parameter, (_v2("0", 4, 0, (4,), (1,)), False))}, {"0": s0})
    refuse("rt_hidden_parameter_call.pt", "a tensor inside a call", "Parameter(tensor) applied by REDUCE: torch returns it")
    _craft_zip(EXACT / "rt_hidden_counter.pt", {"ok": ok, "c": Counter_of({"w": _v2("0", 4, 0, (4,), (1,))})}, {"0": s0})
    refuse("rt_hidden_counter.pt", "a tensor inside a call", "collections.Counter holding a tensor (a dict to torch)")
    deep = _v2("0", 4, 0, (4,), (1,))
    for _ in range(70):
        deep = [deep]
    _craft_zip(EXACT / "rt_hidden_deep_list.pt", {"ok": ok, "d": deep}, {"0": s0})
    refuse("rt_hidden_deep_list.pt", "a tensor inside a list", "a tensor 70 lists deep")
    deep = _v2("0", 4, 0, (4,), (1,))
    for _ in range(110):
        deep = {"k": deep}
    _craft_zip(EXACT / "rt_hidden_deep_dict.pt", {"ok": ok, "d": deep}, {"0": s0})
    refuse("rt_hidden_deep_dict.pt", "more than 100 levels deep", "a tensor 110 dicts deep")


class _LStorage(_PStorage):
    """Pickled as the legacy persistent id ('storage', type, key, 'cpu', numel, view)."""

    def __init__(self, stype, key, numel, view=None):
        self.pid = ("storage", stype, key, "cpu", numel, view)


def _craft_legacy(path, obj, storages, keys=None):
    """A legacy (pre-1.6) torch file: magic, protocol, sys_info, the object
    pickle, the storage key list (`keys`, default the storages' keys) and
    each storage as an 8-byte little-endian element count and its bytes."""
    dump = lambda v: pickle.dumps(v, protocol=2)  # noqa: E731
    sys_info = {"protocol_version": 1001, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    out = [dump(0x1950A86A20F9469CFC6C), dump(1001), dump(sys_info), _craft_pickle(obj),
           dump(list(keys if keys is not None else [k for k, _, _ in storages]))]
    for _, count, data in storages:
        out.append(struct.pack("<q", count) + data)
    path.write_bytes(b"".join(out))


def _deflate_zip(path):
    """`path` rewritten with every member deflated."""
    root, members = zip_members(path)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for r, d in members:
            put(z, f"{root}/{r}", d, zipfile.ZIP_DEFLATED)
    path.write_bytes(out.getvalue())


def write_red_team_sizes(same, refuse):
    """Storage sizes: torch checks every storage reference's numel x element
    size against its `data/<key>` record (zip) or the element count written
    before its bytes (legacy), whatever tensor uses it, and refuses the file
    when they differ or the record is missing."""
    f32 = lambda *v: np.array(v, dtype="<f4").tobytes()  # noqa: E731
    s0 = f32(1, 2, 3, 4)
    ok = _v2("0", 4, 0, (4,), (1,))
    _craft_zip(EXACT / "rt_size_larger.pt", {"x": _v2("0", 5, 0, (4,), (1,))}, {"0": s0})
    refuse("rt_size_larger.pt", "record size", "numel 5 (20 bytes) over a 16-byte record: torch refuses")
    _craft_zip(EXACT / "rt_size_smaller.pt", {"x": _v2("0", 3, 0, (2,), (1,))}, {"0": s0})
    refuse("rt_size_smaller.pt", "record size", "numel 3 (12 bytes) over a 16-byte record, tensor within it")
    _craft_zip(EXACT / "rt_size_unselected.pt",
               {"state_dict": {"x": ok}, "optimizer": {"m": _v2("1", 9, 0, (1,), (1,))}}, {"0": s0, "1": s0})
    refuse("rt_size_unselected.pt", "record size", "the bad reference is outside the selected state_dict")
    _craft_zip(EXACT / "rt_size_second_ref.pt", {"x": ok, "y": _v2("0", 99, 0, (2,), (1,))}, {"0": s0})
    refuse("rt_size_second_ref.pt", "record size",
           "second reference to data/0 says 99 elements (torch only checks the first of one dtype)")
    _craft_zip(EXACT / "rt_size_untyped.pt", {"x": _Call(torch._utils._rebuild_tensor_v3, (
        _PStorage(torch.UntypedStorage, "0", 15), 0, (3,), (1,), False, OrderedDict(), torch.float32))}, {"0": s0})
    refuse("rt_size_untyped.pt", "record size", "UntypedStorage of 15 bytes over a 16-byte record")
    _craft_zip(EXACT / "rt_size_typedstorage.pt", {"x": _Call(torch._utils._rebuild_tensor_v3, (
        _PStorage(torch.storage.TypedStorage, "0", 16), 0, (4,), (1,), False, OrderedDict(), torch.float32))},
        {"0": s0})
    refuse("rt_size_typedstorage.pt", "TypedStorage",
           "storage type torch.storage.TypedStorage: torch has no element size for it and fails")
    _craft_zip(EXACT / "rt_size_missing_empty.pt", {"x": ok, "e": _v2("1", 0, 0, (0,), (1,))}, {"0": s0})
    refuse("rt_size_missing_empty.pt", "not in the file", "empty tensor whose data/1 record is missing")
    _craft_zip(EXACT / "rt_size_missing_zero_shape.pt", {"x": ok, "e": _v2("1", 4, 0, (0, 4), (4, 1))}, {"0": s0})
    refuse("rt_size_missing_zero_shape.pt", "not in the file", "zero-element view of a missing 16-byte record")
    _craft_zip(EXACT / "rt_size_deflated.pt", {"x": _v2("0", 3, 0, (3,), (1,))}, {"0": s0})
    _deflate_zip(EXACT / "rt_size_deflated.pt")
    refuse("rt_size_deflated.pt", "record size", "deflated record: its uncompressed size is what counts")
    _craft_zip(EXACT / "rt_size_two_dtypes.pt",
               {"x": ok, "y": _v2("0", 2, 0, (2,), (1,), stype=torch.DoubleStorage)}, {"0": s0})
    same("rt_size_two_dtypes.pt", "data/0 as 4 floats and as 2 doubles: both 16 bytes, torch reinterprets")
    _craft_zip(EXACT / "rt_size_empty_ok.pt", {"x": ok, "e": _v2("1", 0, 0, (0,), (1,))}, {"0": s0, "1": b""})
    same("rt_size_empty_ok.pt", "an empty storage with its empty record")
    _craft_zip(EXACT / "rt_size_key_case.pt", {"x": _v2("AbC", 4, 0, (4,), (1,))}, {"abc": s0})
    same("rt_size_key_case.pt", "key AbC finds record data/abc (torch ignores case)")

    # Legacy: the element count before each storage's bytes must be the
    # reference's numel (torch: "storage has wrong byte size").
    L = lambda key, numel, size, stype=torch.FloatStorage, view=None: _Call(  # noqa: E731
        torch._utils._rebuild_tensor_v2,
        (_LStorage(stype, key, numel, view), 0, tuple(size), tuple(1 for _ in size), False, OrderedDict()))
    _craft_legacy(EXACT / "rt_legacy_ok.pt", {"x": L("0", 4, (4,)), "y": L("1", 2, (2,))},
                  [("0", 4, s0), ("1", 2, f32(5, 6))])
    same("rt_legacy_ok.pt", "crafted legacy file, sizes consistent")
    _craft_legacy(EXACT / "rt_legacy_count_smaller.pt", {"x": L("0", 4, (2,))}, [("0", 3, f32(1, 2, 3))])
    refuse("rt_legacy_count_smaller.pt", "wrong byte size", "reference numel 4, file count 3")
    _craft_legacy(EXACT / "rt_legacy_count_larger.pt", {"x": L("0", 2, (2,))}, [("0", 4, s0)])
    refuse("rt_legacy_count_larger.pt", "wrong byte size", "reference numel 2, file count 4")
    _craft_legacy(EXACT / "rt_legacy_unselected.pt", {"state_dict": {"x": L("0", 4, (4,))}, "o": L("1", 3, (1,))},
                  [("0", 4, s0), ("1", 4, s0)])
    refuse("rt_legacy_unselected.pt", "wrong byte size", "the bad reference is outside the selected state_dict")
    _craft_legacy(EXACT / "rt_legacy_mixed_types.pt",
                  {"x": L("0", 4, (4,)), "y": L("0", 2, (2,), stype=torch.DoubleStorage)}, [("0", 4, s0)])
    refuse("rt_legacy_mixed_types.pt", "element sizes",
           "one storage as FloatStorage and DoubleStorage: torch reads the count in the first one's units")
    _craft_legacy(EXACT / "rt_legacy_view.pt", {"x": L("0", 4, (2,), view=("99", 1, 2))}, [("0", 4, s0)])
    refuse("rt_legacy_view.pt", "storage view", "legacy view_metadata (a storage view): refused")
    _craft_legacy(EXACT / "rt_legacy_unlisted.pt", {"x": L("0", 4, (4,)), "e": L("1", 0, (0,))}, [("0", 4, s0)])
    refuse("rt_legacy_unlisted.pt", "not in the storage key list", "storage 1 referenced but not written")
    _craft_legacy(EXACT / "rt_legacy_untyped.pt", {"x": _Call(torch._utils._rebuild_tensor_v3, (
        _LStorage(torch.UntypedStorage, "0", 16), 0, (4,), (1,), False, OrderedDict(), torch.float32))},
        [("0", 16, s0)])
    refuse("rt_legacy_untyped.pt", "UntypedStorage", "legacy UntypedStorage: torch reads its dtype attribute and fails")


def write_red_team_args(same, refuse):
    """Rebuild-call arguments torch's functions reject (wrong arity: a
    TypeError; bools where set_ wants ints) or accept (0-d, zero elements
    with huge dimensions, size as a list), trailing pickles in data.pkl, and
    dtypes or tensor kinds safetensors cannot hold."""
    f32 = lambda *v: np.array(v, dtype="<f4").tobytes()  # noqa: E731
    s0 = {"0": f32(1, 2, 3, 4)}
    U = torch._utils
    fs = lambda n=4: _PStorage(torch.FloatStorage, "0", n)  # noqa: E731
    us = lambda: _PStorage(torch.UntypedStorage, "0", 16)  # noqa: E731
    z = lambda name, obj: _craft_zip(EXACT / name, obj, s0)  # noqa: E731
    z("rt_args_v1_extra.pt", {"x": _Call(U._rebuild_tensor, (fs(), 0, (4,), (1,), False))})
    refuse("rt_args_v1_extra.pt", "takes 4 arguments", "_rebuild_tensor with 5 arguments: TypeError in torch")
    z("rt_args_v2_extra.pt", {"x": _Call(U._rebuild_tensor_v2, (fs(), 0, (4,), (1,), False, OrderedDict(), None, 5))})
    refuse("rt_args_v2_extra.pt", "takes 6 to 7 arguments", "_rebuild_tensor_v2 with 8 arguments")
    z("rt_args_v3_extra.pt", {"x": _Call(U._rebuild_tensor_v3, (
        us(), 0, (4,), (1,), False, OrderedDict(), torch.float32, None, 1))})
    refuse("rt_args_v3_extra.pt", "takes 7 to 8 arguments", "_rebuild_tensor_v3 with 9 arguments")
    z("rt_args_v1_ok.pt", {"x": _Call(U._rebuild_tensor, (fs(), 1, (3,), (1,)))})
    same("rt_args_v1_ok.pt", "_rebuild_tensor (v1) with an offset")
    z("rt_args_size_bool.pt", {"x": _v2("0", 4, 0, (True,), (1,))})
    refuse("rt_args_size_bool.pt", "not an int", "size (True,): set_ raises TypeError")
    z("rt_args_stride_bool.pt", {"x": _v2("0", 4, 0, (2,), (True,))})
    refuse("rt_args_stride_bool.pt", "not an int", "stride (True,)")
    z("rt_args_offset_bool.pt", {"x": _v2("0", 4, True, (2,), (1,))})
    refuse("rt_args_offset_bool.pt", "not an int", "storage offset True")
    z("rt_args_size_list.pt", {"x": _v2("0", 4, 0, [2], [1])})
    same("rt_args_size_list.pt", "size and stride as lists")
    z("rt_args_zero_d.pt", {"x": _v2("0", 4, 2, (), ())})
    same("rt_args_zero_d.pt", "0-d tensor at offset 2")
    z("rt_args_huge_zero.pt", {"x": _v2("0", 4, 0, (0, 2 ** 40), (1, 1)), "y": _v2("0", 4, 99, (0, 5), (5, 1))})
    same("rt_args_huge_zero.pt", "zero elements: a 2**40 dimension, an offset past the storage")
    z("rt_args_huge_zero_overflow.pt", {"x": _v2("0", 4, 0, (2 ** 40, 2 ** 40, 0), (1, 1, 1))})
    refuse("rt_args_huge_zero_overflow.pt", "overflows", "2**40 x 2**40 x 0: torch's numel overflows too")
    z("rt_args_view_past.pt", {"x": _v2("0", 4, 1, (4,), (1,))})
    refuse("rt_args_view_past.pt", "needs 20 bytes", "offset 1 + 4 elements of a 4-element storage")
    z("rt_dtype_c128.pt", {"x": _Call(U._rebuild_tensor_v3, (
        us(), 0, (1,), (1,), False, OrderedDict(), torch.complex128))})
    refuse("rt_dtype_c128.pt", "torch.complex128", "complex128: no safetensors dtype, refused by name")
    z("rt_dtype_c32.pt", {"x": _Call(U._rebuild_tensor_v3, (
        us(), 0, (1,), (1,), False, OrderedDict(), torch.complex32))})
    refuse("rt_dtype_c32.pt", "torch.complex32", "complex32 (ComplexHalf)")
    z("rt_dtype_storage_c128.pt", {"x": _v2("0", 1, 0, (1,), (1,), stype=torch.ComplexDoubleStorage)})
    refuse("rt_dtype_storage_c128.pt", "ComplexDoubleStorage", "ComplexDoubleStorage (v2)")
    z("rt_kind_qtensor.pt", {"x": _Call(U._rebuild_qtensor, (
        _PStorage(torch.QInt8Storage, "0", 16), 0, (4,), (1,), (torch.per_tensor_affine, 1.0, 0), False, OrderedDict()))})
    refuse("rt_kind_qtensor.pt", "_rebuild_qtensor", "quantized tensor")
    z("rt_kind_sparse.pt", {"x": _Call(U._rebuild_sparse_tensor, (
        torch.sparse_coo, (_v2("0", 4, 0, (1, 2), (2, 1)), _v2("0", 4, 0, (2,), (1,)), (3,))))})
    refuse("rt_kind_sparse.pt", "_rebuild_sparse_tensor", "sparse COO tensor")
    one = _craft_pickle({"x": _v2("0", 4, 0, (4,), (1,))})
    two = _craft_pickle({"y": _v2("0", 4, 0, (2,), (1,))})
    for name, pkl, note in [("rt_pkl_stacked.pt", one + two, "data.pkl holds two pickles: torch reads the first"),
                            ("rt_pkl_trailing.pt", one + b"\xff\xfe junk", "bytes after STOP: ignored by torch")]:
        write_zip(EXACT / name, [("archive/data.pkl", pkl), ("archive/byteorder", b"little"),
                                 ("archive/data/0", s0["0"]), ("archive/version", b"3\n")])
        same(name, note)


def Counter_of(d):
    import collections
    return collections.Counter(d)


# ---------------------------------------------------------------- malicious
# Opcode helpers: these build bytes; nothing is ever unpickled.

def su(s):  # SHORT_BINUNICODE
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def s0(s):  # protocol-0 STRING
    return b"S'" + s.encode() + b"'\n"


CMD = "touch PWNED"
PY = "open('PWNED', 'w').write('x')"

MALICIOUS = {
    # GLOBAL + REDUCE
    "reduce_os_system": b"\x80\x02cos\nsystem\n" + s0(CMD) + b"\x85R.",
    "reduce_posix_system": b"\x80\x02cposix\nsystem\n" + s0(CMD) + b"\x85R.",
    # INST (protocol 0)
    "inst_subprocess": b"((" + s0("touch") + s0("PWNED") + b"l" + b"isubprocess\ncall\n.",
    # OBJ (protocol 1)
    "obj_builtins_exec": b"(cbuiltins\nexec\n" + s0(PY) + b"o.",
    # NEWOBJ
    "newobj_subprocess_popen": b"\x80\x02csubprocess\nPopen\n(" + s0("touch") + s0("PWNED") + b"l\x85\x81.",
    # STACK_GLOBAL with memo indirection and DUP/POP noise
    "stack_global_eval": b"\x80\x04" + su("builtins") + b"\x94" + su("junk") + b"0" + su("eval") + b"\x94"
    + b"h\x00h\x01\x93" + su(PY) + b"2" + b"0" + b"\x85R.",
    # __import__ + getattr chain
    "import_getattr": b"\x80\x02cbuiltins\ngetattr\ncbuiltins\n__import__\n" + s0("os") + b"\x85R" + s0("system")
    + b"\x86R" + s0(CMD) + b"\x85R.",
}


def torch_zip_with_pickle(pkl, root="archive"):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        put(z, f"{root}/data.pkl", pkl)
        put(z, f"{root}/byteorder", b"little")
        put(z, f"{root}/version", b"3\n")
    return out.getvalue()


def write_malicious():
    mal = OUT / "malicious"
    mal.mkdir(exist_ok=True)
    manifest = {}
    for name, pkl in MALICIOUS.items():
        (mal / f"{name}.pt").write_bytes(torch_zip_with_pickle(pkl))
        manifest[name] = global_of(pkl)
    # A legacy-format file whose object pickle is malicious.
    magic = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b"."
    proto = b"\x80\x02M\xe9\x03."
    sysinfo = b"\x80\x02}q\x00(X\x0d\x00\x00\x00little_endianq\x01\x88u."
    (mal / "legacy_os_system.pt").write_bytes(magic + proto + sysinfo + MALICIOUS["reduce_os_system"])
    manifest["legacy_os_system"] = "os.system"
    # A malicious pickle hidden inside a benign-looking state dict entry.
    benign_prefix = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01"
    (mal / "nested_value.pt").write_bytes(torch_zip_with_pickle(
        benign_prefix + b"cos\nsystem\n" + s0(CMD) + b"\x85Rs."))
    manifest["nested_value"] = "os.system"
    (mal / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def global_of(pkl):
    """The first dangerous global, read statically with pickletools."""
    import pickletools
    strings = []
    for op, arg, _ in pickletools.genops(pkl):
        if op.name in ("GLOBAL", "INST"):
            m, n = arg.split(" ")
            if m != "builtins" or n != "getattr":
                return f"{m}.{n}"
            return "builtins.getattr"
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "STRING"):
            strings.append(arg)
        if op.name == "STACK_GLOBAL":
            return f"{strings[0]}.{strings[-1]}"
    raise ValueError("no global")


# ------------------------------------------- red team: HF index vs. shards
def write_red_team_index(same, refuse):
    """Sharded checkpoints (torch.save shards + pytorch_model.bin.index.json).
    transformers loads every tensor of every shard the index names and treats
    the weight_map's keys as the checkpoint's keys; convert must refuse where
    the index and the shards disagree instead of dropping or adding tensors."""
    def t(*v):
        return torch.tensor(v, dtype=torch.float32)

    def sharded(name, shards, wm):
        d = EXACT / name
        d.mkdir()
        for f, sd in shards.items():
            torch.save(sd, d / f)
        (d / "pytorch_model.bin.index.json").write_text(
            json.dumps({"metadata": {"total_size": 0}, "weight_map": wm}, indent=1))
        return d

    s1, s2 = "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"
    sharded("idx_ok", {s1: {"a": t(1), "b": t(2)}, s2: {"c": t(3)}}, {"a": s1, "b": s1, "c": s2})
    same("idx_ok", "index and shards agree: every tensor of every shard")
    sharded("idx_ok_file", {s1: {"a": t(1)}, s2: {"c": t(3)}}, {"a": s1, "c": s2})
    same("idx_ok_file/pytorch_model.bin.index.json", "the index file itself as the source")
    sharded("idx_missing", {s1: {"a": t(1), "b": t(2)}, s2: {"c": t(3)}},
            {"a": s1, "b": s1, "c": s2, "d": s2})
    refuse("idx_missing", "no shard provides it", "weight_map lists `d` in shard 2, which lacks it: was dropped")
    refuse("idx_missing/pytorch_model.bin.index.json", "no shard provides it", "the same, index file as source")
    sharded("idx_missing_other", {s1: {"a": t(1)}, s2: {"c": t(3)}}, {"a": s1, "c": s2, "lm_head.weight": s1})
    refuse("idx_missing_other", "no shard provides it", "a tied-looking key listed in shard 1 that no shard holds")
    sharded("idx_unlisted", {s1: {"a": t(1), "extra": t(9)}, s2: {"c": t(3)}}, {"a": s1, "c": s2})
    refuse("idx_unlisted", "the index does not list it", "shard 1 holds `extra`, absent from weight_map")
    sharded("idx_wrong_shard", {s1: {"a": t(1), "b": t(2)}, s2: {"c": t(3)}}, {"a": s2, "b": s1, "c": s2})
    refuse("idx_wrong_shard", "no shard provides it", "`a` listed under shard 2 but held by shard 1")
    sharded("idx_alias", {s1: {"a": t(1)}, s2: {"c": t(3)}}, {"a": s1, "c": s2})
    # an alias (two names, one storage) in one shard, both listed: converts
    d = EXACT / "idx_alias"
    w = t(5, 6)
    torch.save({"a": w, "a2": w}, d / s1)
    (d / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": {"a": s1, "a2": s1, "c": s2}}, indent=1))
    same("idx_alias", "two names of one storage, both listed: the alias counts as provided")


# ------------------------------- red team: central directory vs. local views
def write_red_team_zip_views(same, refuse):
    """Zips whose central directory, local headers and end records tell
    different stories. torch's reader (miniz) looks names up in the central
    directory named by the *last* end-of-central-directory signature, with
    offsets taken as absolute (no shift for prepended bytes); numpy's zipfile
    refuses a local header whose name differs from the central one."""
    import io
    import zlib

    def local(name, data, lname=None):
        ln = (lname or name).encode()
        return struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, zlib.crc32(data), len(data), len(data),
                           len(ln), 0) + ln + data

    def central(name, data, off):
        n = name.encode()
        return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, zlib.crc32(data), len(data),
                           len(data), len(n), 0, 0, 0, 0, 0, off) + n

    def eocd(n, size, off, comment=b""):
        return struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, size, off, len(comment)) + comment

    def build(members, lnames=None):
        body, cd = bytearray(), bytearray()
        for name, data in members:
            off = len(body)
            body += local(name, data, (lnames or {}).get(name))
            cd += central(name, data, off)
        return bytes(body) + bytes(cd) + eocd(len(members), len(cd), len(body))

    def torch_members(obj):
        b = io.BytesIO()
        torch.save(obj, b)
        z = zipfile.ZipFile(io.BytesIO(b.getvalue()))
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]

    a = torch_members({"w": torch.tensor([1.0, 2.0])})
    b = torch_members({"w": torch.tensor([7.0, 8.0])})
    (EXACT / "zv_plain.pt").write_bytes(build(a))
    same("zv_plain.pt", "the hand-built zip writer itself: torch loads it, convert must too")
    # A second end record inside the archive comment, naming a second central
    # directory: miniz takes the last signature (tensor b), other readers the first.
    body, cd, hcd = bytearray(), bytearray(), bytearray()
    for n, d in a:
        off = len(body)
        body += local(n, d)
        cd += central(n, d, off)
    for n, d in b:
        off = len(body)
        body += local(n, d)
        hcd += central(n, d, off)
    cd_off = len(body)
    fake = bytes(hcd) + eocd(len(b), len(hcd), cd_off + len(cd) + 22)
    (EXACT / "zv_eocd_in_comment.pt").write_bytes(bytes(body) + bytes(cd) + eocd(len(a), len(cd), cd_off, fake))
    same("zv_eocd_in_comment.pt", "an EOCD record in the comment of another: torch reads the last one (w = 7, 8)")
    # The same with the last record broken (its central directory offset past
    # the file): miniz refuses, a reader falling back to the earlier record reads a.
    bad = bytearray(bytes(body) + bytes(cd) + eocd(len(a), len(cd), cd_off, fake))
    struct.pack_into("<I", bad, len(bad) - 6, 0x7FFFFFF0)
    (EXACT / "zv_eocd_broken_last.pt").write_bytes(bytes(bad))
    refuse("zv_eocd_broken_last.pt", "end of central directory", "the last EOCD is broken: torch refuses the file")
    # Prepended bytes after a first local header: offsets are relative to the
    # inner zip, which miniz refuses and the zip crate silently shifted.
    (EXACT / "zv_prepended.pt").write_bytes(local("archive/junk", b"x" * 10) + build(b))
    refuse("zv_prepended.pt", "end of central directory", "a zip with prepended bytes: torch refuses it")
    # Local header names differing from the central directory's.
    (EXACT / "zv_local_name.pt").write_bytes(build(a, {a[0][0]: a[0][0][:-3] + "zzz"}))
    refuse("zv_local_name.pt", "local header", "data.pkl's local header says data.zzz")
    bz = io.BytesIO()
    np.savez(bz, a=np.arange(3))
    zn = zipfile.ZipFile(io.BytesIO(bz.getvalue()))
    (EXACT / "zv_local_name.npz").write_bytes(
        build([(i.filename, zn.read(i.filename)) for i in zn.infolist()], {"a.npy": "b.npy"}))
    refuse("zv_local_name.npz", "local header", "numpy.load raises 'File name in directory and header differ'")


if __name__ == "__main__":
    main()
