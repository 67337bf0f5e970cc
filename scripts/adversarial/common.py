"""Shared pieces of the adversarial fixture generators (scripts/adversarial/gen_*.py).

Each generator writes samples into tests/fixtures/adversarial/<group>/ and a manifest
(`manifest.json` in that folder) that tests/python/scan/test_adversarial.py reads:

  {"samples": [{"file": "x.pkl", "loader": "pickle", "class": "1", "note": "..."}],
   "clean":   [{"file": "y.bin", "note": "..."}]}

For every sample the test proves two things in fresh subprocesses:
  1. the payload really runs under `loader` (it appends a line to the file named by the
     TS_MARKER environment variable, and does nothing else), and
  2. `tensorseal scan FILE` exits 1 (the default policy fails).
"clean" files are benign look-alikes (near misses) that must scan clean (exit 0).

Loaders (see LOADERS in the test): pickle, torch (weights_only=False), torch_legacy_tar
(also torch.load), numpy (np.load(allow_pickle=True), every npz member read), joblib,
pandas (read_pickle, compression inferred from the name), torch_jit (torch.jit.load).

NOTHING here unpickles anything: samples are assembled from raw opcode bytes.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import struct

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "adversarial"

# The harmless payload: append one line to $TS_MARKER.
MARKER_CODE = "import os\nopen(os.environ['TS_MARKER'], 'a').write('ran\\n')\n"


def su(s: str) -> bytes:
    """SHORT_BINUNICODE."""
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def bu(s: str) -> bytes:
    """BINUNICODE."""
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def exec_call_p0(code: str = MARKER_CODE) -> bytes:
    """Protocol-0 opcodes (no PROTO, no STOP) that leave builtins.exec(code) on the stack."""
    return b"cbuiltins\nexec\n(V" + code.encode("raw_unicode_escape").replace(b"\n", b"\\u000a") + b"\ntR"


def exec_call_p2(code: str = MARKER_CODE) -> bytes:
    """Protocol-2+ opcodes (no PROTO, no STOP) that leave builtins.exec(code) on the stack."""
    return b"cbuiltins\nexec\n" + bu(code) + b"\x85R"


def exec_call_p4(code: str = MARKER_CODE) -> bytes:
    """Protocol-4 STACK_GLOBAL form (no PROTO, no STOP) of builtins.exec(code)."""
    return su("builtins") + su("exec") + b"\x93" + bu(code) + b"\x85R"


def payload_pickle(proto: int = 4) -> bytes:
    """A complete pickle whose load runs the marker payload and returns None."""
    if proto == 0:
        return exec_call_p0() + b"."
    body = exec_call_p4() if proto >= 4 else exec_call_p2()
    return b"\x80" + bytes([proto]) + body + b"."


class Group:
    """Collects samples of one group and writes its folder and manifest."""

    def __init__(self, name: str):
        self.name = name
        self.dir = FIXTURES / name
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self.samples: list[dict] = []
        self.clean: list[dict] = []

    def path(self, file: str) -> pathlib.Path:
        p = self.dir / file
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def sample(self, file: str, data: bytes | None, loader: str, cls: str, note: str) -> pathlib.Path:
        """Registers a malicious sample (writes `data` unless None: then the caller wrote it)."""
        p = self.path(file)
        if data is not None:
            p.write_bytes(data)
        self.samples.append({"file": file, "loader": loader, "class": cls, "note": note})
        return p

    def benign(self, file: str, data: bytes | None, note: str) -> pathlib.Path:
        """Registers a benign near miss that must scan clean."""
        p = self.path(file)
        if data is not None:
            p.write_bytes(data)
        self.clean.append({"file": file, "note": note})
        return p

    def write(self) -> None:
        doc = {"samples": self.samples, "clean": self.clean}
        (self.dir / "manifest.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        print(f"{self.name}: {len(self.samples)} samples, {len(self.clean)} clean")
