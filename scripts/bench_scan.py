#!/usr/bin/env python3
"""Scanner benchmark: tensorseal scan vs picklescan, in the same run, fresh processes.

Workloads (built under bench-data/scan/, git-ignored):
  1. a directory of 1,000 small pickles (benign state-dict-like pickles, 0.5-8 KiB);
  2. a multi-GB torch zip checkpoint (torch.save of a state dict); both tools read only
     the pickle part (data.pkl), tensorseal never reads the tensor bytes.

Each tool runs alternately as a fresh process, N times per workload (after one warm-up
run each, so both see a warm page cache); medians and the picklescan/tensorseal ratio are
printed. Usage:

  cargo build --release --bin tensorseal
  /work/venv/bin/python scripts/bench_scan.py [--runs 5] [--gib 2]
"""

import argparse
import os
import pathlib
import pickle
import shutil
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / "bench-data" / "scan"


def make_small_pickles(d: pathlib.Path, n: int = 1000):
    if d.exists() and len(list(d.iterdir())) == n:
        return
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for i in range(n):
        obj = {
            "epoch": i,
            "name": f"layer{i}",
            "weights": [float(j) / (i + 1) for j in range(64 + (i % 16) * 60)],
            "shape": (i % 7 + 1, 3),
            "flags": {"trained": bool(i % 2), "tags": ["a", "b", str(i)]},
        }
        # Writing pickles is harmless; nothing here loads one.
        (d / f"p{i:04d}.pkl").write_bytes(pickle.dumps(obj, protocol=2 + i % 4))


def make_big_checkpoint(path: pathlib.Path, gib: float):
    want = int(gib * (1 << 30))
    if path.exists() and path.stat().st_size >= want:
        return
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {}
    per = 64 << 20  # 64 MiB tensors
    n = max(1, want // per)
    for i in range(n):
        sd[f"layers.{i}.weight"] = torch.zeros(per // 4, dtype=torch.float32)
        sd[f"layers.{i}.bias"] = torch.ones(128)
    torch.save(sd, path)


def run(cmd):
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t, r.returncode


def bench(name, ours, theirs, runs):
    run(ours), run(theirs)  # warm-up (page cache, binaries)
    a, b = [], []
    codes = set()
    for _ in range(runs):
        t, c = run(ours)
        a.append(t)
        codes.add(("tensorseal", c))
        t, c = run(theirs)
        b.append(t)
        codes.add(("picklescan", c))
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"{name}")
    print(f"  tensorseal scan : median {ma * 1000:9.1f} ms  (runs: {', '.join(f'{x * 1000:.0f}' for x in a)})")
    print(f"  picklescan      : median {mb * 1000:9.1f} ms  (runs: {', '.join(f'{x * 1000:.0f}' for x in b)})")
    print(f"  ratio picklescan/tensorseal: {mb / ma:.1f}x   exit codes: {sorted(codes)}")
    return ma, mb


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "tensorseal"))
    args = ap.parse_args()
    ts = args.bin
    if not pathlib.Path(ts).exists():
        sys.exit(f"{ts} missing: cargo build --release --bin tensorseal")
    ps = shutil.which("picklescan") or str(pathlib.Path(sys.executable).parent / "picklescan")
    small = DATA / "small_pickles"
    big = DATA / "big_checkpoint.pt"
    make_small_pickles(small)
    make_big_checkpoint(big, args.gib)
    print(f"machine: {os.cpu_count()} CPUs (shared), python {sys.version.split()[0]}")
    print(f"workload 1: {len(list(small.iterdir()))} pickles, {sum(p.stat().st_size for p in small.iterdir()) / 1024:.0f} KiB total")
    print(f"workload 2: torch zip checkpoint {big.stat().st_size / (1 << 30):.2f} GiB")
    bench("1,000 small pickles (directory)", [ts, "scan", str(small)], [ps, "--path", str(small)], args.runs)
    bench("multi-GB torch zip checkpoint", [ts, "scan", str(big)], [ps, "--path", str(big)], args.runs)


if __name__ == "__main__":
    main()
