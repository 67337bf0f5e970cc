"""Adversarial samples for archives and compressed wrappers (issue 11, items 2, 5 and 6).

Run with the project venv: python scripts/adversarial/gen_archive.py
Writes tests/fixtures/adversarial/archive/ and its manifest.json.

Classes:
  2   torch zip records looked up case-insensitively (DATA.PKL, Data.Pkl, any root folder)
  5c  npz members compressed with every method zipfile reads (bzip2, lzma, deflate)
  6   pickles inside gzip, bz2, xz, lzma-alone, zlib, zstd and lz4 wrappers (joblib and
      pandas open them transparently), nested wrappers (tar.gz, tar.bz2, tar.xz, zip),
      truncated and oversized streams
Benign near misses: the same wrappers around pickles of plain data, a bzip2/lzma npz of
numbers, a torch checkpoint whose records are spelled in upper case.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import struct
import sys
import tarfile
import zipfile
import zlib

import lz4.frame
import numpy as np
import zstandard

sys.path.insert(0, __import__("os").path.dirname(__file__))
from common import Group, payload_pickle  # noqa: E402

g = Group("archive")

PAYLOAD = payload_pickle(4)
PAYLOAD2 = payload_pickle(2)
BENIGN = pickle.dumps({"weights": [1.5, 2.5], "names": ["a", "b"], "step": 7}, protocol=4)


def torch_base() -> dict[str, bytes]:
    """The records of a real torch.save checkpoint (tensor storages included)."""
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.arange(4, dtype=torch.float32)}, buf)
    z = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    return {n: z.read(n) for n in z.namelist()}


def rezip(records: list[tuple[str, bytes]], method: int = zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as w:
        for name, data in records:
            w.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data, compress_type=method)
    return out.getvalue()


def torch_variant(rename, pkl: bytes, root: str | None = None, method=zipfile.ZIP_STORED) -> bytes:
    recs = []
    for n, d in torch_base().items():
        rest = n.split("/", 1)[1]
        new_root = root if root is not None else n.split("/", 1)[0]
        if rest == "data.pkl":
            d = pkl
        recs.append((f"{new_root}/{rename(rest)}", d))
    return rezip(recs, method)


# --- class 2: torch zip records in any case -------------------------------------------
g.sample("torch_DATA_PKL.pt", torch_variant(lambda r: r.replace("data.pkl", "DATA.PKL"), PAYLOAD),
         "torch", "2", "data.pkl spelled DATA.PKL: torch's reader finds it case-insensitively")
g.sample("torch_Data_Pkl.pt", torch_variant(lambda r: r.replace("data.pkl", "Data.Pkl"), PAYLOAD2),
         "torch", "2", "data.pkl spelled Data.Pkl, protocol 2 payload")
g.sample("torch_all_upper_root.pt", torch_variant(str.upper, PAYLOAD, root="Weights"),
         "torch", "2", "every record upper-cased under a root folder of another name")
g.sample("torch_DATA_PKL_deflate.pt",
         torch_variant(lambda r: r.replace("data.pkl", "dAtA.pKl"), PAYLOAD, method=zipfile.ZIP_DEFLATED),
         "torch", "2", "dAtA.pKl, every record deflated")
g.benign("torch_upper_benign.pt", torch_variant(str.upper, torch_base()["archive/data.pkl"]),
         "a real checkpoint with every record name upper-cased (still loads, nothing runs)")


# --- class 5c: npz members with every zipfile method -----------------------------------
def npy_object(pkl: bytes) -> bytes:
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header = header + " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + pkl


def npy_plain(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.lib.format.write_array(b, a)
    return b.getvalue()


for method, tag in [(zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "lzma"), (zipfile.ZIP_DEFLATED, "deflate")]:
    g.sample(f"npz_object_{tag}.npz",
             rezip([("weights.npy", npy_plain(np.arange(8.0))), ("meta.npy", npy_object(PAYLOAD))], method),
             "numpy", "5", f"object array member compressed with {tag}: numpy.load unpickles it")
    g.benign(f"npz_numbers_{tag}.npz",
             rezip([("a.npy", npy_plain(np.arange(100.0))), ("b.npy", npy_plain(np.ones((3, 4), np.int32)))], method),
             f"numeric npz with {tag} members")
g.sample("npz_object_lzma_upper.npz",
         rezip([("A.NPY", npy_object(PAYLOAD2))], zipfile.ZIP_LZMA),
         "numpy", "5", "lzma member with an upper-case name, protocol 2 payload")


# --- class 6: compressed wrappers ------------------------------------------------------
def lz4c(b: bytes) -> bytes:
    return lz4.frame.compress(b)


def zstdc(b: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(b)


WRAPPERS = [
    ("gz", lambda b: gzip.compress(b, mtime=0)),
    ("bz2", bz2.compress),
    ("xz", lzma.compress),
    ("lzma", lambda b: lzma.compress(b, format=lzma.FORMAT_ALONE)),
    ("z", zlib.compress),
    ("lz4", lz4c),
]
for ext, comp in WRAPPERS:
    g.sample(f"joblib_payload.pkl.{ext}", comp(PAYLOAD), "joblib", "6",
             f"{ext} wrapper: joblib.load detects it by content and unpickles the content")
    g.benign(f"benign_plain.pkl.{ext}", comp(BENIGN), f"{ext} around a pickle of plain data")
for ext, comp in [("gz", lambda b: gzip.compress(b, mtime=0)), ("bz2", bz2.compress), ("xz", lzma.compress),
                  ("zst", zstdc)]:
    # Protocol 4 (no readline: zstandard's reader has none).
    g.sample(f"pandas_payload.pkl.{ext}", comp(PAYLOAD), "pandas", "6",
             f".{ext}: pandas.read_pickle infers the compression from the name")
g.benign("benign_plain.pkl.zst", zstdc(BENIGN), "zstd around a pickle of plain data")
# pandas opens .xz with lzma's auto-detection: lzma-alone under an .xz name.
g.sample("pandas_alone_as_xz.pkl.xz", lzma.compress(PAYLOAD, format=lzma.FORMAT_ALONE), "pandas", "6",
         "lzma-alone content named .xz (liblzma auto-detects it)")
# Several streams: the payload starts in one and ends in the next.
half = len(PAYLOAD) // 2
g.sample("joblib_split_streams.pkl.bz2", bz2.compress(PAYLOAD[:half]) + bz2.compress(PAYLOAD[half:]),
         "joblib", "6", "payload split over two bz2 streams")
skip = struct.pack("<II", 0x184D2A55, 16) + bytes(16)
g.sample("pandas_skippable.pkl.zst", skip + zstdc(PAYLOAD), "pandas", "6",
         "a skippable zstd frame, then the payload")


def tar_of(name: str, data: bytes, mode: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as t:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        t.addfile(info, io.BytesIO(data))
    return out.getvalue()


g.sample("pandas_nested.tar.gz", tar_of("model.pkl", PAYLOAD, "w:gz"), "pandas", "6", "tar inside gzip")
g.sample("pandas_nested.tar.bz2", tar_of("model.pkl", PAYLOAD, "w:bz2"), "pandas", "6", "tar inside bz2")
g.sample("pandas_nested.tar.xz", tar_of("model.pkl", PAYLOAD2, "w:xz"), "pandas", "6", "tar inside xz")
g.sample("pandas_bzip2_member.zip", rezip([("model.pkl", PAYLOAD)], zipfile.ZIP_BZIP2), "pandas", "6",
         "zip with one bzip2 member (pandas reads it with zipfile)")
g.sample("pandas_lzma_member.zip", rezip([("model", PAYLOAD2)], zipfile.ZIP_LZMA), "pandas", "6",
         "zip with one lzma member")
# Truncated: a complete first stream holds the payload, the next stream breaks off. The
# loader runs the payload before it reads the broken stream.
tail = bytes(range(256)) * 64
for ext, comp in [("gz", lambda b: gzip.compress(b, mtime=0)), ("bz2", bz2.compress), ("xz", lzma.compress)]:
    second = comp(tail)
    g.sample(f"pandas_truncated.pkl.{ext}", comp(PAYLOAD) + second[: len(second) // 2], "pandas", "6",
             f"{ext}: the payload's stream, then a stream cut short")
# Oversized: the payload, then more zeros than the scanner decompresses for one file.
g.sample("pandas_bomb.pkl.zst", zstdc(PAYLOAD + bytes(600 << 20)), "pandas", "6",
         "payload followed by 600 MiB of zeros (past --max-member-bytes)")
g.write()
