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


if __name__ == "__main__":
    main()
