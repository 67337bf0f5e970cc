"""Adversarial samples for pickle identification (issue 11, items 1, 3, 4, 9).

Run with the venv python: `python scripts/adversarial/gen_pickle.py`. Writes
tests/fixtures/adversarial/pickle/ and its manifest. Every malicious sample is proved by
tests/python/scan/test_adversarial.py: its payload runs under the named loader and
`tensorseal scan` exits 1. Near misses must scan clean.

Classes:
  1  pickles that escape a start-byte list or a fixed window: no PROTO, any first opcode,
     FRAME first, a long first opcode, every protocol, an error right after the call, and
     other magics whose bytes are also a pickle prefix.
  3  TorchScript whose __setstate__ touches the file system while torch.jit.load runs it.
  4  legacy torch: the tar layout with a payload in each member, and pickles after raw
     storage bytes.
Nothing here unpickles anything: samples are raw opcode bytes, and the TorchScript samples
are made by torch.jit.script (compiling, not loading).
"""

from __future__ import annotations

import io
import struct
import sys
import tarfile

from common import Group, bu, exec_call_p0, exec_call_p2, exec_call_p4, payload_pickle, su

G = Group("pickle")

LEGACY_MAGIC = b"\x8a\x0a" + bytes([0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19])


def frame(body: bytes) -> bytes:
    return b"\x95" + struct.pack("<Q", len(body)) + body


# ------------------------------------------------------------------- class 1: identification
def identification() -> None:
    G.sample("p0_no_proto.bin", exec_call_p0() + b".", "pickle", "1", "protocol 0, no PROTO, 'c' first")
    G.sample("frame_first.bin", frame(exec_call_p4() + b"."), "pickle", "1", "FRAME is the first opcode, no PROTO")
    G.sample("newtrue_first.bin", b"\x880" + exec_call_p4() + b".", "pickle", "1", "NEWTRUE, POP, then the call")
    G.sample("short_binunicode_first.bin", exec_call_p4() + b".", "numpy", "1", "SHORT_BINUNICODE first (STACK_GLOBAL form)")
    G.sample("newfalse_memoize_first.bin", b"\x89\x940" + exec_call_p2() + b".", "torch", "1", "NEWFALSE, MEMOIZE, POP first")
    G.sample("binput_after_none.bin", b"Nq\x000" + exec_call_p2() + b".", "joblib", "1", "NONE, BINPUT, POP first")
    G.sample("empty_set_first.bin", b"\x8f0" + exec_call_p4() + b".", "pandas", "1", "EMPTY_SET first")
    G.sample("long_unicode_first.bin", bu("A" * 100_000) + b"0" + exec_call_p2() + b".", "numpy", "1",
             "a 100 KB BINUNICODE first: the call is past any 64 KiB window")
    G.sample("long_frame_first.bin", frame(bu("B" * 80_000) + b"0" + exec_call_p4() + b"."), "pickle", "1",
             "FRAME of 80 KB first, call at its end")
    G.sample("long_line_first.bin", b"V" + b"x" * 70_000 + b"\n0" + exec_call_p0() + b".", "torch", "1",
             "a 70 KB protocol-0 UNICODE line first")
    for proto in range(6):
        G.sample(f"proto{proto}.pkl", payload_pickle(proto) if proto else exec_call_p0() + b".", "pickle", "1",
                 f"protocol {proto}")
    G.sample("proto1_binput.pkl", b"cbuiltins\nexec\nq\x00(" + bu(__import__("common").MARKER_CODE) + b"tR.", "pickle", "1",
             "protocol 1 INST-free REDUCE with BINPUT, MARK first")
    G.sample("error_after_reduce.bin", exec_call_p2() + b"\xff\xff", "pickle", "1",
             "the call runs, then an unknown opcode: no STOP at all")
    G.sample("truncated_after_reduce.bin", b"\x80\x02" + exec_call_p2() + b"X\xff\xff\x00\x00ab", "torch", "1",
             "PROTO 2, the call, then a string that runs past the end")
    G.sample("stack_underflow_after.bin", exec_call_p0() + b"0000.", "numpy", "1",
             "the call runs, then POPs underflow the stack")
    G.sample("config.json", exec_call_p0() + b".", "pickle", "1", "a protocol-0 pickle named config.json")
    G.sample("README.md", exec_call_p0() + b"\n# not markdown\n", "pickle", "1",
             "a README whose first line is a GLOBAL that gets called")
    # GGUF magic: 'G' is BINFLOAT, which swallows "GUF" and 5 more bytes.
    G.sample("gguf_polyglot.gguf", b"GGUF\x03\x00\x00\x00\x00" + exec_call_p4() + b".", "numpy", "1",
             "GGUF magic whose bytes are BINFLOAT, then the call")
    G.sample("gguf_polyglot_torch.gguf", b"GGUF\x03\x00\x00\x00\x00" + exec_call_p2() + b"\xff", "torch", "1",
             "GGUF magic polyglot that breaks after the call (torch's legacy path)")
    # A tar whose first member name is a protocol-0 payload: pickle.load reads the header.
    name = exec_call_p0() + b"."
    assert len(name) <= 100, len(name)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT, encoding="latin-1") as t:
        info = tarfile.TarInfo(name.decode("latin-1"))
        info.size = 2
        t.addfile(info, io.BytesIO(b"hi"))
    G.sample("tar_name_payload.tar", out.getvalue(), "pickle", "1", "a tar archive whose first member name is a pickle")
    # Near misses.
    G.benign("readme_c.md", b"code of conduct\nplease read it\nthen more text.\n", "text whose first line lexes as GLOBAL")
    G.benign("import_only.bin", b"cos\nsystem\n\xff", "a GLOBAL that is never called: pickle.load imports and fails")
    G.benign("proto6.bin", b"\x80\x06" + exec_call_p4() + b".", "PROTO 6: CPython refuses it before the call")
    G.benign("none_pickle.bin", b"N.", "a pickle of None: runs nothing")
    G.benign("tokens.txt", b"]\nhello\nworld\n", "text starting with an opcode byte")
    G.benign("config_ok.json", b'{"architectures": ["Llama"], "hidden_size": 8}\n', "JSON")
    # safetensors whose header length is b"N." + zeros: also a pickle of None.
    header = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    n = 0x2E4E
    G.benign("n_dot_header.safetensors", struct.pack("<Q", n) + header.ljust(n, b" ") + b"\x00\x00\x80\x3f",
             "a safetensors file whose header length bytes read as the pickle 'N.'")


# ------------------------------------------------------------------- class 4: legacy torch
def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


def p2(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


def storage_header(key: str) -> bytes:
    """(key, 'cpu', torch.FloatStorage) as a protocol-2 pickle."""
    return p2(bu(key) + bu("cpu") + b"ctorch\nFloatStorage\n\x87")


def raw_floats(n: int) -> bytes:
    return struct.pack("<q", n) + struct.pack(f"<{n}f", *range(n))


def tensor_header(key: int, storage: str) -> bytes:
    return p2(b"K" + bytes([key]) + bu(storage) + b"ctorch\nFloatTensor\n\x87")


def tensor_dims() -> bytes:
    return struct.pack("<i", 1) + b"\x00" * 4 + struct.pack("<qqq", 3, 1, 0)


def legacy_tar(storages: bytes, tensors: bytes, pickle: bytes) -> bytes:
    sysinfo = p2(b"}" + bu("little_endian") + b"\x88s")
    return tar_bytes([("sys_info", sysinfo), ("pickle", pickle), ("tensors", tensors), ("storages", storages)])


def legacy() -> None:
    good_storages = p2(b"K\x02") + storage_header("0") + raw_floats(3) + storage_header("1") + raw_floats(2) + p2(b"]")
    good_tensors = p2(b"K\x01") + tensor_header(7, "0") + tensor_dims()
    good_pickle = p2(b"}" + bu("w") + b"K\x07s")
    G.benign("legacy_tar_ok.tar", legacy_tar(good_storages, good_tensors, good_pickle),
             "a well-formed legacy tar checkpoint: pickles between raw storage bytes, all benign")
    pay = payload_pickle(2)
    G.sample("legacy_tar_count.tar",
             legacy_tar(pay + storage_header("0") + raw_floats(3) + p2(b"]"), good_tensors, good_pickle),
             "torch", "4", "storages member: the storage count pickle is the payload")
    G.sample("legacy_tar_after_storage.tar",
             legacy_tar(p2(b"K\x02") + storage_header("0") + raw_floats(3) + pay, good_tensors, good_pickle),
             "torch", "4", "storages member: the second storage header, after raw storage bytes, is the payload")
    G.sample("legacy_tar_views.tar",
             legacy_tar(p2(b"K\x01") + storage_header("0") + raw_floats(3) + payload_pickle(0), good_tensors,
                        good_pickle),
             "torch", "4", "storages member: the storage-views pickle after the raw bytes (protocol 0)")
    G.sample("legacy_tar_tensors.tar",
             legacy_tar(good_storages, p2(b"K\x02") + tensor_header(7, "0") + tensor_dims() + pay, good_pickle),
             "torch", "4", "tensors member: the second tensor header, after raw dimension bytes, is the payload")
    G.sample("legacy_tar_pickle.tar", legacy_tar(good_storages, good_tensors, frame(exec_call_p4() + b".")),
             "torch", "4", "pickle member: FRAME-first payload without PROTO")
    G.sample("legacy_tar_tensor_count.tar", legacy_tar(good_storages, exec_call_p0() + b".", good_pickle),
             "torch", "4", "tensors member: the count is a protocol-0 payload")
    # Magic-number layout: the payload is the magic-number pickle itself, written without PROTO.
    G.sample("legacy_magic_frame.pt", frame(exec_call_p4() + b".") + p2(b"M\xe9\x03"), "torch", "4",
             "legacy magic layout whose first pickle is a FRAME-first payload")


# ------------------------------------------------------------------- class 3: TorchScript
def torchscript() -> None:
    import torch  # compiling only; nothing is loaded

    class FromFile(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.zeros(2)

        def forward(self, x):
            return x + self.w

        @torch.jit.export
        def __getstate__(self):
            return (self.w, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, bool]):
            self.w = state[0]
            self.training = state[1]
            t = torch.from_file("marker", shared=True, size=4, dtype=torch.uint8)
            self.w = self.w + t.sum().float() * 0

    class Save(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.zeros(2)

        def forward(self, x):
            return x + self.w

        @torch.jit.export
        def __getstate__(self):
            return (self.w, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, bool]):
            self.w = state[0]
            self.training = state[1]
            torch.save(self.w, "marker")

    class Inner(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.ones(1)

        def forward(self, x):
            return x * self.w

        @torch.jit.export
        def __getstate__(self):
            return (self.w, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, bool]):
            self.w = state[0]
            self.training = state[1]
            path = "mar" + "ker"
            m = torch.from_file(path, True, 8)
            self.w = self.w + m.sum() * 0

    class Outer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Inner()

        def forward(self, x):
            return self.inner(x)

    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def save(self, x: torch.Tensor) -> torch.Tensor:
            return x

        def forward(self, x):
            return self.save(self.lin(x))

    def jit(mod, name):
        torch.jit.save(torch.jit.script(mod), str(G.path(name)))

    jit(FromFile(), "ts_from_file.pt")
    G.sample("ts_from_file.pt", None, "torch_jit", "3", "__setstate__ calls torch.from_file(shared=True): creates the file")
    jit(Save(), "ts_save.pt")
    G.sample("ts_save.pt", None, "torch_jit", "3", "__setstate__ calls torch.save: writes the file")
    jit(Outer(), "ts_nested_from_file.pt")
    G.sample("ts_nested_from_file.pt", None, "torch", "3",
             "a submodule's __setstate__ maps a computed path; torch.load hands TorchScript to torch.jit.load")
    jit(Plain(), "ts_plain.pt")
    G.benign("ts_plain.pt", None, "TorchScript with a user method named save: no file access")


def legacy_real() -> None:
    import torch  # saving only

    base = torch.arange(12, dtype=torch.float32)
    obj = {
        "f32": base,
        "view": base[3:7],
        "i64": torch.arange(5, dtype=torch.int64),
        "bf16": torch.ones(3, dtype=torch.bfloat16),
        "bool": torch.tensor([True, False]),
        "c64": torch.zeros(2, dtype=torch.complex64),
        "u8": torch.arange(4, dtype=torch.uint8),
        "f16": torch.ones(2, dtype=torch.float16),
    }
    p = G.path("legacy_real_dtypes.pt")
    torch.save(obj, str(p), _use_new_zipfile_serialization=False)
    G.benign("legacy_real_dtypes.pt", None, "a real legacy torch.save of many dtypes and a view: the storage walk ends exactly at the end")


def main() -> None:
    identification()
    legacy()
    if "--no-torch" not in sys.argv:
        torchscript()
        legacy_real()
    G.write()


if __name__ == "__main__":
    main()
