#!/usr/bin/env python3
"""Per-call cost of get_tensor and get_slice, without the open: tensorseal
against the reference `safetensors`, in one process.

The ratio table (scripts/bench_python_ratios.py) times each cell from
`safe_open` on, in a fresh process, as the issue asks; on a file of many
small tensors its get_tensor/get_slice cells then include the header read,
where tensorseal is 4x faster, and can hide a per-call loop that is slower.
This script times only the loops: with one handle of each library open on
the same (cached) file, it runs, alternately (reference first in even
rounds, tensorseal first in odd ones),

  get_tensor  for k in keys: t = f.get_tensor(k); touch(t)
  get_slice   for k in keys: s = f.get_slice(k); t = s[: rows // 2]; touch(t)

(touch: one byte read from every 4 KiB page; the previous result is freed
when the next replaces it, as in users' loops) and prints per framework the
median of each library's loop times and their ratio (reference / ours:
above 1 means tensorseal is faster).

Usage: python scripts/bench_python_calls.py [--rounds 9] [--fws np,pt]
           [--file /tmp/tensorseal-ratios/100k.safetensors]
The default file is the ratio benchmark's (b), 100,000 tensors of 512 B,
made with the reference if missing. Needs safetensors, tensorseal, numpy,
and torch for "pt".
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def touch_fn(fw):
    if fw == "np":
        import numpy as np

        return lambda a: int(a.reshape(-1).view(np.uint8)[::4096].sum()) if a.size else 0
    import torch

    return lambda t: int(t.reshape(-1).view(torch.uint8)[::4096].sum()) if t.numel() else 0


def loops(lib, path, fw, touch):
    """(get_tensor seconds, get_slice seconds) for one pass over the keys."""
    with lib.safe_open(path, fw) as f:
        keys = f.keys()
        t0 = time.perf_counter()
        for k in keys:
            t = f.get_tensor(k)
            touch(t)
        t1 = time.perf_counter()
        for k in keys:
            s = f.get_slice(k)
            t = s[: s.get_shape()[0] // 2]
            touch(t)
        t2 = time.perf_counter()
    del t
    return t1 - t0, t2 - t1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--fws", default="np,pt")
    ap.add_argument("--file", default="/tmp/tensorseal-ratios/100k.safetensors")
    args = ap.parse_args()

    import safetensors
    import tensorseal

    if not os.path.exists(args.file):
        from bench_python_ratios import FILES, make_file

        os.makedirs(os.path.dirname(args.file) or ".", exist_ok=True)
        make_file(args.file, *FILES["100k"])
    with open(args.file, "rb") as fh:  # cached, as in the warm cells
        while fh.read(64 << 20):
            pass
    libs = {"ref": safetensors, "ours": tensorseal}
    print(
        f"# {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, safetensors "
        f"{getattr(safetensors, '__version__', '?')}, tensorseal {tensorseal.__version__}; "
        f"{args.rounds} alternating rounds, file {args.file}"
    )
    print(f"{'fw':3} {'op':11} {'ref s':>8} {'ours s':>8} {'ref/ours':>9}")
    for fw in [x for x in args.fws.split(",") if x]:
        touch = touch_fn(fw)
        times = {(lib, op): [] for lib in libs for op in ("get_tensor", "get_slice")}
        for r in range(args.rounds):
            for lib in ("ref", "ours") if r % 2 == 0 else ("ours", "ref"):
                gt, gs = loops(libs[lib], args.file, fw, touch)
                times[(lib, "get_tensor")].append(gt)
                times[(lib, "get_slice")].append(gs)
        for op in ("get_tensor", "get_slice"):
            ref = statistics.median(times[("ref", op)])
            ours = statistics.median(times[("ours", op)])
            print(f"{fw:3} {op:11} {ref:8.4f} {ours:8.4f} {ref / ours:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
