#!/usr/bin/env python3
"""Benchmark: signing a 2 GiB model directory, tensorseal vs model-signing.

    cargo build --release
    $TENSORSEAL_VENV/bin/python scripts/bench_sign.py [--runs 3] [--size-mib 2048]

Creates a model directory in a temporary folder (3 large files holding ~88% of
the bytes, 240 files of 1 MiB, 1024 files of 8 KiB, a config and a README),
warms the page cache, then alternately runs, each in a fresh process,
`model_signing sign key` and `tensorseal sign` (same P-256 key, same
directory, signature outside it), and prints the median wall time of each and
their ratio. Both signatures are checked with the other tool afterwards. The
directory is deleted at the end.
"""

import argparse
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = pathlib.Path(__file__).resolve().parents[1]
MIB = 1 << 20


def make_model(d: pathlib.Path, size_mib: int) -> int:
    """Writes the model; returns its size in bytes."""
    d.mkdir()
    block = os.urandom(64 * MIB)
    small_mib = 240
    tiny = 1024
    large_total = (size_mib - small_mib - tiny * 8 // 1024) * MIB
    per_large = large_total // 3
    total = 0
    for i in range(3):
        with open(d / f"model-{i + 1:05d}-of-00003.safetensors", "wb") as f:
            left = per_large
            n = 0
            while left > 0:
                chunk = block[: min(left, len(block))]
                f.write(n.to_bytes(8, "little") + chunk[8:])
                left -= len(chunk)
                n += 1
        total += per_large
    (d / "small").mkdir()
    for i in range(small_mib):
        data = i.to_bytes(8, "little") + block[8:MIB]
        (d / "small" / f"part-{i:04d}.bin").write_bytes(data)
        total += len(data)
    (d / "tiny").mkdir()
    for i in range(tiny):
        data = i.to_bytes(8, "little") + block[MIB : MIB + 8192 - 8]
        (d / "tiny" / f"{i:04d}.json").write_bytes(data)
        total += len(data)
    for name, data in {"config.json": b'{"layers": 32}\n', "README.md": b"# bench\n"}.items():
        (d / name).write_bytes(data)
        total += len(data)
    return total


def timed(cmd) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--tensorseal", default=str(ROOT / "target" / "release" / "tensorseal"))
    ap.add_argument("--dir", default=None, help="parent of the temporary folder")
    args = ap.parse_args()
    ts = pathlib.Path(args.tensorseal)
    if not ts.is_file():
        sys.exit(f"{ts} missing: run `cargo build --release` first")
    ms = pathlib.Path(sys.executable).parent / "model_signing"

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tensorseal-bench-sign-", dir=args.dir))
    try:
        key = ec.generate_private_key(ec.SECP256R1())
        priv, pub = tmp / "key.pem", tmp / "pub.pem"
        priv.write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()))
        pub.write_bytes(key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo))
        model = tmp / "model"
        t = time.perf_counter()
        total = make_model(model, args.size_mib)
        files = sum(1 for p in model.rglob("*") if p.is_file())
        print(f"model: {files} files, {total / MIB:.0f} MiB (written in {time.perf_counter() - t:.1f}s)")

        ref_sig, our_sig = tmp / "ref.sig", tmp / "ours.sig"
        ref_cmd = [str(ms), "sign", "key", str(model), "--private_key", str(priv), "--signature", str(ref_sig)]
        our_cmd = [str(ts), "sign", str(model), "--private-key", str(priv), "--signature", str(our_sig)]
        # Warm-up (page cache, imports), untimed.
        timed(our_cmd)
        timed(ref_cmd)
        ref, ours = [], []
        for i in range(args.runs):
            ref.append(timed(ref_cmd))
            ours.append(timed(our_cmd))
            print(f"run {i + 1}: model_signing {ref[-1]:.2f}s  tensorseal {ours[-1]:.2f}s")

        # Cross-check the signatures with the other tool.
        v1 = subprocess.run([str(ms), "verify", "key", str(model), "--signature", str(our_sig), "--public_key", str(pub)], capture_output=True)
        v2 = subprocess.run([str(ts), "verify", str(model), "--public-key", str(pub), "--signature", str(ref_sig)], capture_output=True)
        if v1.returncode or v2.returncode:
            sys.exit("cross-verification failed")

        mr, mo = statistics.median(ref), statistics.median(ours)
        gib = total / (1 << 30)
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs")
        print(f"model_signing sign key: median {mr:.2f}s ({gib / mr:.2f} GiB/s)")
        print(f"tensorseal sign:        median {mo:.2f}s ({gib / mo:.2f} GiB/s)")
        print(f"ratio (model_signing / tensorseal): {mr / mo:.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
