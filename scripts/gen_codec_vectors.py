"""Test vectors for crates/tensorseal-codec: each codec's output as Python writes it.

Run with the project venv: python scripts/gen_codec_vectors.py
"""
import bz2
import gzip
import io
import json
import lzma
import struct
import zipfile
import zlib
from pathlib import Path

import lz4.frame
import zstandard

OUT = Path(__file__).resolve().parent.parent / "crates/tensorseal-codec/tests/data"
OUT.mkdir(parents=True, exist_ok=True)

A = bytes(range(256)) * 40 + b"first half|"
B = b"second half" * 700


def w(name, data):
    (OUT / name).write_bytes(data)


w("plain_a.bin", A)
w("plain_b.bin", B)
w("gzip2.gz", gzip.compress(A, mtime=0) + gzip.compress(B, mtime=0))
w("zlib2.z", zlib.compress(A) + zlib.compress(B))
w("bzip2.bz2", bz2.compress(A) + bz2.compress(B))
w("xz2.xz", lzma.compress(A) + lzma.compress(B))
w("lzma2.lzma", lzma.compress(A, format=lzma.FORMAT_ALONE) + lzma.compress(B, format=lzma.FORMAT_ALONE))
cz = zstandard.ZstdCompressor()
skippable = struct.pack("<II", 0x184D2A53, 5) + b"hello"
w("zstd2.zst", skippable + cz.compress(A) + cz.compress(B))
w("lz4_2.lz4", lz4.frame.compress(A) + lz4.frame.compress(B))
# A bomb: 16 MiB of zeros in a few kilobytes.
w("bomb.bz2", bz2.compress(bytes(16 << 20)))
# Truncated and trailing-garbage streams.
g = gzip.compress(A, mtime=0)
w("truncated.gz", g[: len(g) // 2])
w("trailing.xz", lzma.compress(A) + b"garbage!")

# zip members as zipfile writes them, with their declared sizes.
meta = {}
buf = io.BytesIO()
methods = {"stored": zipfile.ZIP_STORED, "deflate": zipfile.ZIP_DEFLATED,
           "bzip2": zipfile.ZIP_BZIP2, "lzma": zipfile.ZIP_LZMA}
with zipfile.ZipFile(buf, "w") as z:
    for name, m in methods.items():
        z.writestr(zipfile.ZipInfo(name), A + B, compress_type=m)
z = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
raw = buf.getvalue()
for info in z.infolist():
    off = info.header_offset
    n, e = struct.unpack("<HH", raw[off + 26: off + 30])
    start = off + 30 + n + e
    w(f"member_{info.filename}.bin", raw[start: start + info.compress_size])
    meta[info.filename] = {"method": info.compress_type, "size": info.file_size}
(OUT / "members.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
