#!/usr/bin/env python3
"""Builds the scanner corpus in tests/fixtures/scan/: malicious and benign samples.

Malicious samples are assembled from raw pickle opcode bytes and hand-written zip/tar
records. NOTHING here is ever unpickled: the only pickle-module use is `pickletools.genops`
(a parser) to find pickle boundaries in a benign legacy torch file made by torch itself.

Each sample's expected findings go to tests/fixtures/scan/expected.json:
  {"<file>": {"format": "...", "clean": bool, "expect": [[rule, global-or-null], ...]}}
Rust (crates/tensorseal-scan/tests/corpus.rs) and pytest (tests/python/scan/) assert them.

Run with the venv python: /work/venv/bin/python scripts/gen_scan_fixtures.py
"""

import collections
import gzip
import io
import json
import pathlib
import pickletools
import shutil
import struct
import tarfile
import zlib

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "scan"
MAL = OUT / "malicious"
BEN = OUT / "benign"
EXPECTED = {}

DANGER = "pickle-dangerous-global"
UNKNOWN = "pickle-unknown-global"


# ---------------------------------------------------------------- pickle opcode helpers
def su(s: str) -> bytes:
    """SHORT_BINUNICODE."""
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def bu(s: str) -> bytes:
    """BINUNICODE."""
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def sbytes(b: bytes) -> bytes:
    """SHORT_BINBYTES or BINBYTES."""
    if len(b) < 256:
        return b"C" + bytes([len(b)]) + b
    return b"B" + struct.pack("<I", len(b)) + b


P4 = b"\x80\x04"
P2 = b"\x80\x02"
OS_SYSTEM_P0 = b"cos\nsystem\n(S'echo pwned'\ntR."
LEGACY_MAGIC_PICKLE = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."


def mal(name, data, expect, fmt, clean=False):
    (MAL / name).parent.mkdir(parents=True, exist_ok=True)
    (MAL / name).write_bytes(data)
    EXPECTED[f"malicious/{name}"] = {"format": fmt, "clean": clean, "expect": expect}


def ben(name, fmt):
    EXPECTED[f"benign/{name}"] = {"format": fmt, "clean": True, "expect": []}


# ---------------------------------------------------------------- zip writer
def zip_build(entries, prefix=b"", suffix=b""):
    """Hand-written zip: every field controllable. Entry keys: name, data, method (0/8),
    flags, local_flags, local_name, crc (central), local_crc, descriptor (dict with crc),
    central (bool), extra_central_name."""
    out = bytearray(prefix)
    central = bytearray()
    count = 0
    for e in entries:
        data = e["data"]
        method = e.get("method", 0)
        comp = data
        if method == 8:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            comp = c.compress(data) + c.flush()
        crc = zlib.crc32(data) & 0xFFFFFFFF
        ccrc = e.get("crc", crc)
        flags = e.get("flags", 0)
        lflags = e.get("local_flags", flags)
        name = e["name"].encode() if isinstance(e["name"], str) else e["name"]
        lname = e.get("local_name", name)
        lname = lname.encode() if isinstance(lname, str) else lname
        offset = len(out) - len(prefix)
        if lflags & 8:
            lcrc, lcs, lus = 0, 0, 0
        else:
            lcrc, lcs, lus = e.get("local_crc", ccrc), len(comp), len(data)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, lflags, method, 0, 0x21,
                           lcrc, lcs, lus, len(lname), 0)
        out += lname + comp
        if lflags & 8:
            d = e.get("descriptor", {})
            out += struct.pack("<IIII", 0x08074B50, d.get("crc", ccrc), d.get("csize", len(comp)),
                               d.get("usize", len(data)))
        if e.get("central", True):
            central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, flags, method, 0,
                                   0x21, ccrc, len(comp), len(data), len(name), 0, 0, 0, 0, 0,
                                   offset)
            central += name
            count += 1
    cd_off = len(out) - len(prefix)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(central), cd_off, 0)
    return bytes(out) + suffix


def tar_build(members):
    """members: list of (name, bytes) or (name, None, linktarget, type)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for m in members:
            info = tarfile.TarInfo(m[0])
            info.mtime = 0
            if m[1] is None:
                info.type = m[3]
                info.linkname = m[2]
                t.addfile(info)
            else:
                info.size = len(m[1])
                t.addfile(info, io.BytesIO(m[1]))
    return buf.getvalue()


def npy_bytes(descr: str, shape, data: bytes) -> bytes:
    header = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (descr, tuple(shape))
    h = header.encode()
    pad = 64 - (10 + len(h) + 1) % 64
    h = h + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + data


def safetensors_bytes(header: dict, data: bytes) -> bytes:
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


# ---------------------------------------------------------------- malicious pickles
def malicious():
    # Memo indirection and DUP/POP noise feeding STACK_GLOBAL.
    mal("memo_dup_stack_global.pkl",
        P4 + su("os") + b"\x94" + su("system") + b"\x94" + b"00" + b"h\x00" + b"2" + b"0"
        + b"h\x01" + b"\x93" + su("echo pwned") + b"\x85R.",
        [[DANGER, "os.system"]], "pickle")
    # STRING operands (quoted text) feeding STACK_GLOBAL.
    mal("string_operands.pkl",
        P4 + b"S'builtins'\n" + b'S"eval"\n' + b"\x93" + b"S'1+1'\n" + b"\x85R.",
        [[DANGER, "builtins.eval"]], "pickle")
    # SHORT_BINSTRING / BINSTRING operands.
    mal("binstring_operands.pkl",
        P2 + b"U\x05posix" + b"T\x06\x00\x00\x00system" + b"\x93" + b"U\x02id" + b"\x85R.",
        [[DANGER, "posix.system"]], "pickle")
    # pip.main(["install", ...]) in protocol 0.
    mal("pip_main.pkl", b"cpip\nmain\n((S'install'\nS'evilpkg'\nltR.",
        [[DANGER, "pip.main"]], "pickle")
    # builtins.__import__('os') then getattr(..., 'system')('id').
    mal("builtins_import.pkl",
        P2 + b"cbuiltins\ngetattr\n" + b"cbuiltins\n__import__\n" + bu("os") + b"\x85R"
        + bu("system") + b"\x86R" + bu("id") + b"\x85R.",
        [[DANGER, "builtins.__import__"], [DANGER, "builtins.getattr"]], "pickle")
    # importlib.import_module + getattr chain via STACK_GLOBAL.
    mal("importlib_getattr.pkl",
        P4 + su("builtins") + su("getattr") + b"\x93" + su("importlib") + su("import_module")
        + b"\x93" + su("subprocess") + b"\x85R" + su("check_output") + b"\x86R"
        + su("id") + b"\x85R.",
        [[DANGER, "importlib.import_module"], [DANGER, "builtins.getattr"]], "pickle")
    # marshal.loads of a code object, wrapped into a function and called.
    mal("marshal_loads.pkl",
        P2 + b"ctypes\nFunctionType\n" + b"cmarshal\nloads\n" + sbytes(b"\xe3" + b"\x00" * 15)
        + b"\x85R}\x86R)R.",
        [[DANGER, "marshal.loads"], [DANGER, "types.FunctionType"]], "pickle")
    # _pickle.loads of a nested pickle carrying os.system.
    mal("nested_pickle_loads.pkl",
        b"\x80\x03c_pickle\nloads\n" + sbytes(OS_SYSTEM_P0) + b"\x85R.",
        [[DANGER, "_pickle.loads"], [DANGER, "os.system"], ["pickle-nested", None]], "pickle")
    # INST / OBJ / NEWOBJ / NEWOBJ_EX / REDUCE variants.
    mal("inst.pkl", b"(S'id'\nios\nsystem\n.", [[DANGER, "os.system"]], "pickle")
    mal("obj.pkl", b"(cos\nsystem\nS'id'\no.", [[DANGER, "os.system"]], "pickle")
    mal("newobj.pkl", P2 + b"csubprocess\nPopen\n" + bu("id") + b"\x85\x81.",
        [[DANGER, "subprocess.Popen"]], "pickle")
    mal("newobj_ex.pkl",
        P4 + su("subprocess") + su("Popen") + b"\x93" + su("id") + b"\x85}\x92.",
        [[DANGER, "subprocess.Popen"]], "pickle")
    mal("reduce_posix.pkl", P2 + b"cposix\nsystem\n" + bu("id") + b"\x85R.",
        [[DANGER, "posix.system"]], "pickle")
    mal("eval_protocol0.pkl", b"c__builtin__\neval\n(S'print(1)'\ntR.",
        [[DANGER, "__builtin__.eval"]], "pickle")
    # Stacked pickles: a harmless first pickle, the payload in the second.
    mal("stacked_second.pkl",
        P4 + b"}\x94." + P4 + su("os") + su("system") + b"\x93" + su("id") + b"\x85R.",
        [[DANGER, "os.system"]], "pickle")
    # joblib-style: a wrapper object, raw array bytes inline, then more opcodes.
    mal("joblib_style.pkl",
        P4 + su("joblib.numpy_pickle") + su("NumpyArrayWrapper") + b"\x93)\x81}b"
        + b"\x00\x00\x80\x3f\x00\x00\x00\x40\x00\x00\x40\x40\x00\x00\x80\x40"
        + b"cos\nsystem\n" + su("id") + b"\x85R.",
        [[DANGER, "joblib.numpy_pickle.NumpyArrayWrapper"], [DANGER, "os.system"],
         ["pickle-invalid", None]], "pickle")
    # dill-style: code objects and functions rebuilt by dill's helpers.
    mal("dill_style.pkl",
        P4 + su("dill._dill") + b"\x94" + su("_create_code") + b"\x94\x93" + b")R"
        + b"h\x00" + su("_create_function") + b"\x93" + b")R.",
        [[DANGER, "dill._dill._create_code"], [DANGER, "dill._dill._create_function"]], "pickle")
    # A global nobody reviewed: unknown (accepted with --allow mypkg.models.Net).
    mal("unknown_global.pkl", P2 + b"cmypkg.models\nNet\n)\x81}b.",
        [[UNKNOWN, "mypkg.models.Net"]], "pickle")
    # A pickle renamed .safetensors.
    mal("renamed_pickle.safetensors", OS_SYSTEM_P0,
        [[DANGER, "os.system"], ["format-name-mismatch", None]], "pickle")
    # Pickle with a zip appended (a polyglot: torch takes the pickle, zipfile the zip).
    inner = zip_build([{"name": "payload.pkl", "data": OS_SYSTEM_P0}])
    mal("polyglot_pickle_zip.pkl", P2 + b"}q\x00." + inner,
        [["format-polyglot", None], [DANGER, "os.system"]], "pickle")


# ---------------------------------------------------------------- archives
def archives():
    evil = OS_SYSTEM_P0
    mal("zip_unusual_names.zip", zip_build([
        {"name": "../../evil.pkl", "data": evil},
        {"name": "/abs/model.pkl", "data": evil},
        {"name": "dir\\win.pkl", "data": evil},
        {"name": "ctl\x07.pkl", "data": evil},
        {"name": "weights.bin", "data": evil},
    ]), [["archive-unusual-member-name", None], ["pickle-misnamed", None],
         [DANGER, "os.system"]], "zip")
    mal("zip_encryption_bit.zip", zip_build([{"name": "model.pkl", "data": evil, "flags": 1}]),
        [["zip-flag-bits", None], [DANGER, "os.system"]], "zip")
    mal("zip_local_encryption_bit.zip",
        zip_build([{"name": "model.pkl", "data": evil, "flags": 0, "local_flags": 1}]),
        [["zip-flag-bits", None], [DANGER, "os.system"]], "zip")
    mal("zip_name_mismatch.zip",
        zip_build([{"name": "README.txt", "local_name": "data.pkl", "data": evil}]),
        [["zip-name-mismatch", None], [DANGER, "os.system"]], "zip")
    mal("zip_bad_crc.zip",
        zip_build([{"name": "model.pkl", "data": evil, "crc": 0x12345678, "local_crc": 0x12345678}]),
        [["zip-bad-crc", None], [DANGER, "os.system"]], "zip")
    mal("zip_data_descriptor.zip",
        zip_build([{"name": "model.pkl", "data": evil, "method": 8, "flags": 8,
                    "descriptor": {"crc": 0xDEADBEEF}}]),
        [["zip-flag-bits", None], [DANGER, "os.system"]], "zip")
    mal("zip_duplicate_names.zip", zip_build([
        {"name": "data.pkl", "data": P2 + b"}q\x00."},
        {"name": "data.pkl", "data": evil},
    ]), [["archive-duplicate-name", None], [DANGER, "os.system"]], "zip")
    mal("zip_hidden_local.zip", zip_build([
        {"name": "hidden.pkl", "data": evil, "central": False},
        {"name": "README.txt", "data": b"nothing to see\n"},
    ]), [["zip-hidden-member", None], [DANGER, "os.system"]], "zip")
    # zip > tar.gz > zip > pickle.
    z1 = zip_build([{"name": "deep/model.pkl", "data": evil, "method": 8}])
    tgz = gzip.compress(tar_build([("inner.zip", z1)]), mtime=0)
    mal("nested_archives.zip", zip_build([{"name": "bundle.tar.gz", "data": tgz}]),
        [[DANGER, "os.system"]], "zip")
    # Nested deeper than the default --max-depth 3.
    z = zip_build([{"name": "model.pkl", "data": evil}])
    for i in range(5):
        z = zip_build([{"name": f"level{i}.zip", "data": z}])
    mal("too_deep.zip", z, [["archive-limit-exceeded", None]], "zip")
    mal("tar_traversal.tar", tar_build([
        ("../evil.pkl", evil),
        ("link", None, "/etc/passwd", tarfile.SYMTYPE),
    ]), [["archive-unusual-member-name", None], ["archive-link-member", None],
         [DANGER, "os.system"]], "tar")
    mal("pickle.pkl.gz", gzip.compress(evil, mtime=0), [[DANGER, "os.system"]], "gzip")
    mal("sevenzip.7z", b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\x00" * 24,
        [["archive-unscannable", None]], "seven_zip", clean=True)
    # TorchScript: code inside; reported, but not a policy failure by itself.
    buf = io.BytesIO()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), buf)
    mal("torchscript_linear.pt", buf.getvalue(), [["torchscript-code", None]], "torchscript",
        clean=True)
    # torch zip whose data.pkl is a payload; root folder not "archive".
    mal("torch_zip_payload.pt", zip_build([
        {"name": "mymodel/data.pkl", "data": evil},
        {"name": "mymodel/version", "data": b"3\n"},
        {"name": "mymodel/data/0", "data": b"\x00" * 16},
    ]), [[DANGER, "os.system"]], "torch_zip")
    # npz with an object array whose pickle is a payload.
    payload_npy = npy_bytes("|O", (1,), b"\x80\x03" + OS_SYSTEM_P0)
    mal("object_array.npy", payload_npy,
        [["numpy-object-array", None], [DANGER, "os.system"]], "npy")
    mal("object_array.npz", zip_build([{"name": "arr_0.npy", "data": payload_npy, "method": 8}]),
        [["numpy-object-array", None], [DANGER, "os.system"]], "npz")


# ---------------------------------------------------------------- legacy torch tricks
def legacy_tricks():
    buf = io.BytesIO()
    torch.save({"w": torch.arange(4, dtype=torch.float32)}, buf, _use_new_zipfile_serialization=False)
    real = buf.getvalue()
    # Pickle boundaries by parsing (never loading).
    bounds = []
    pos = 0
    for _ in range(5):
        end = pos
        for op, arg, p in pickletools.genops(io.BytesIO(real[pos:])):
            end = pos + p + 1
        bounds.append((pos, end))
        pos = end
    assert real[: bounds[0][1]] == LEGACY_MAGIC_PICKLE, real[:20]
    # Payload inside the magic-number pickle itself (torch unpickles it before checking).
    magic_payload = P2 + b"cos\nsystem\n" + bu("id") + b"\x85R0" + LEGACY_MAGIC_PICKLE[2:]
    mal("legacy_magic_payload.pt", magic_payload + real[bounds[0][1]:],
        [[DANGER, "os.system"]], "torch_legacy")
    # Payload in the sys_info pickle (the third).
    s3, e3 = bounds[2]
    mal("legacy_sysinfo_payload.pt",
        real[:s3] + P2 + b"cposix\nsystem\n" + bu("id") + b"\x85R." + real[e3:],
        [[DANGER, "posix.system"]], "torch_legacy")
    # Magic number written as protocol-0 text, payload in the object pickle.
    s4, e4 = bounds[3]
    mal("legacy_magic_text.pt",
        b"L119547037146038801333356L\n." + real[bounds[0][1]:s4] + OS_SYSTEM_P0 + real[e4:],
        [[DANGER, "os.system"]], "torch_legacy")


# ---------------------------------------------------------------- other formats
def others():
    mal("keras_lambda.h5",
        b"\x89HDF\r\n\x1a\n" + b"\x00" * 120
        + b'{"class_name": "Sequential", "config": {"layers": [{"class_name": "Lambda", '
        + b'"config": {"function": ["4wEAAAAAAAAAAAAAAAEAAAAAAAAA", null, null]}}]}}',
        [["keras-lambda-layer", None]], "hdf5")

    def gstr(s):
        b = s.encode()
        return struct.pack("<Q", len(b)) + b

    gguf = b"GGUF" + struct.pack("<IQQ", 3, 0, 2)
    gguf += gstr("general.architecture") + struct.pack("<I", 8) + gstr("llama")
    gguf += gstr("tokenizer.chat_template") + struct.pack("<I", 8) + gstr(
        "{{ ''.__class__.__mro__[1].__subclasses__()[40]('id') }}")
    mal("chat_template.gguf", gguf, [["gguf-suspicious-chat-template", None]], "gguf")
    # ONNX ModelProto: ir_version 8, producer "t", graph with one initializer whose external
    # data location walks out of the model folder.
    def pb_len(field, payload):
        return bytes([field << 3 | 2, len(payload)]) + payload

    entry = pb_len(1, b"location") + pb_len(2, b"../../../../etc/passwd")
    tensor = pb_len(8, b"w") + bytes([14 << 3, 1]) + pb_len(13, entry)  # name, data_location, external_data
    graph = pb_len(5, tensor)  # GraphProto.initializer
    mal("external_data.onnx", b"\x08\x08" + pb_len(2, b"t") + pb_len(7, graph),
        [["onnx-external-data-path", None]], "onnx")
    # TensorFlow SavedModel: a NodeDef using ReadFile (identified by content and by name).
    node = pb_len(1, b"read") + pb_len(2, b"ReadFile")
    meta_graph = pb_len(1, b"") + pb_len(2, pb_len(1, node))
    mal("saved_model/saved_model.pb", b"\x08\x01" + pb_len(2, meta_graph),
        [["tf-dangerous-op", None]], "tf_saved_model", clean=True)
    # Keras v3 .keras zip whose config.json has a Lambda layer.
    mal("lambda_model.keras", zip_build([
        {"name": "metadata.json", "data": b'{"keras_version": "3.5.0"}'},
        {"name": "config.json", "data": b'{"module": "keras", "class_name": "Sequential", "config": '
                                          b'{"layers": [{"module": "keras.layers", "class_name": "Lambda", '
                                          b'"config": {"function": {"class_name": "__lambda__"}}}]}}'},
        {"name": "model.weights.h5", "data": b"\x89HDF\r\n\x1a\n" + b"\x00" * 64},
    ]), [["keras-lambda-layer", None]], "keras_zip")
    mal("suspicious_metadata.safetensors", safetensors_bytes(
        {"__metadata__": {"note": "__import__('os').system('id')", "src": "http://evil.example/x",
                          "ansi": "\x1b[2Jcleared"},
         "../../etc/passwd": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
        b"\x00" * 4),
        [["safetensors-suspicious-metadata", None], ["safetensors-suspicious-tensor-name", None]],
        "safetensors", clean=True)
    mal("invalid_offsets.safetensors", safetensors_bytes(
        {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\x00" * 4),
        [["safetensors-invalid", None]], "safetensors")


# ---------------------------------------------------------------- benign
def benign():
    dtypes = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.complex64,
              torch.complex128, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8,
              torch.bool, torch.uint16, torch.uint32, torch.uint64, torch.float8_e4m3fn,
              torch.float8_e5m2]
    sd = collections.OrderedDict()
    for dt in dtypes:
        sd[f"t_{str(dt).split('.')[-1]}"] = torch.arange(4).to(dt)
    sd["param"] = torch.nn.Parameter(torch.ones(2, 2))
    sd["view"] = torch.arange(12, dtype=torch.float32).reshape(3, 4)[:, 1]
    sd["scalar"] = torch.tensor(3.5)
    torch.save(sd, BEN / "state_dict_all_dtypes.pt")
    ben("state_dict_all_dtypes.pt", "torch_zip")
    legacy = collections.OrderedDict()
    for k, v in sd.items():
        try:
            torch.save({k: v}, io.BytesIO(), _use_new_zipfile_serialization=False)
            legacy[k] = v
        except Exception:  # dtypes the legacy writer does not support
            pass
    torch.save(legacy, BEN / "state_dict_legacy.pt", _use_new_zipfile_serialization=False)
    ben("state_dict_legacy.pt", "torch_legacy")
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    ckpt = {"epoch": 3, "state_dict": model.state_dict(), "optimizer": opt.state_dict(),
            "best": 0.25, "name": "linear"}
    torch.save(ckpt, BEN / "nested_checkpoint.pt")
    ben("nested_checkpoint.pt", "torch_zip")
    torch.save(ckpt, BEN / "nested_checkpoint_legacy.pt", _use_new_zipfile_serialization=False)
    ben("nested_checkpoint_legacy.pt", "torch_legacy")
    arrays = {}
    for dt in ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
               "float16", "float32", "float64", "complex64", "complex128"]:
        a = np.arange(6).reshape(2, 3).astype(dt)
        np.save(BEN / f"array_{dt}.npy", a)
        ben(f"array_{dt}.npy", "npy")
        arrays[dt] = a
    arrays["structured"] = np.zeros(3, dtype=[("x", "<f4"), ("y", "<i8")])
    np.savez(BEN / "arrays.npz", **arrays)
    ben("arrays.npz", "npz")
    np.savez_compressed(BEN / "arrays_compressed.npz", **arrays)
    ben("arrays_compressed.npz", "npz")
    (BEN / "model.safetensors").write_bytes(safetensors_bytes(
        {"__metadata__": {"format": "pt"},
         "a.weight": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 8))
    ben("model.safetensors", "safetensors")
    (BEN / "config.json").write_text('{"architectures": ["Linear"], "hidden_size": 3}\n')
    ben("config.json", "unknown")
    # A plain protocol-2 pickle of data only (what json-like pickles look like).
    (BEN / "plain_data.pkl").write_bytes(P2 + b"}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03(K\x01K\x02eu.")
    ben("plain_data.pkl", "pickle")


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    MAL.mkdir(parents=True)
    BEN.mkdir(parents=True)
    malicious()
    archives()
    legacy_tricks()
    others()
    benign()
    (OUT / "expected.json").write_text(json.dumps(EXPECTED, indent=1, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {len(EXPECTED)} samples to {OUT.relative_to(ROOT)} ({total} bytes)")


if __name__ == "__main__":
    main()
