#!/usr/bin/env python3
"""Is tensorseal ever slower than the reference `safetensors`? Ratio table.

For every cell of
    {numpy, torch} x {warm, cold} x {load_file, get_tensor, get_slice}
on two files, (a) 1 GiB in 64 tensors ("1g") and (b) 100,000 small tensors
("100k"), plus header-only opening of the 100k file (`safe_open` + `keys()`),
runs the reference and tensorseal alternately (reference first in even
pairs, tensorseal first in odd ones), each measurement in a fresh Python
process, and prints per cell the median time of each library and the
median over pairs of (reference time / tensorseal time): above 1 means
tensorseal is faster.

What each child times (imports and file creation are not timed):
  load_file   d = load_file(path); one byte read from every 4 KiB page of
              every tensor (so lazily mapped tensors are paid for too);
  get_tensor  with safe_open(path, fw): t = get_tensor(k) for every k, every
              page of each touched (each result freed when the next
              replaces it, as in users' loops);
  get_slice   with safe_open(path, fw): t = get_slice(k)[: rows // 2] for
              every k, every page of each touched (likewise);
  header      with safe_open(path, fw): keys().
Default arguments only (the reference's default backend, "mmap").

Cold cache: before each cold child the page cache is dropped with
`echo 3 > /proc/sys/vm/drop_caches` (root); where that is refused, the
file's own cached pages are evicted with posix_fadvise(DONTNEED), and the
script says so.

Memory priming (--prime GiB, default 1): each child touches and frees that
much memory before its timed region (see scripts/bench_python.py: on VMs
with free-page reporting the first touch of recently freed memory is slow,
which otherwise depends on run order).

Usage: python scripts/bench_python_ratios.py [--pairs 5] [--dir /tmp/tensorseal-ratios]
           [--files 1g,100k] [--fws np,pt] [--caches warm,cold] [--ops load_file,get_tensor,get_slice]
       (--ops '' with --files 100k: the header-only rows alone)
Needs safetensors, tensorseal, numpy and torch in the running interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
lib, fw, op, path, prime = sys.argv[1:6]
import numpy as np
if fw == "pt":
    import torch
if lib == "ref":
    import safetensors as L
    import safetensors.numpy as Lnp
    if fw == "pt":
        import safetensors.torch as Lpt
else:
    import tensorseal as L
    import tensorseal.numpy as Lnp
    if fw == "pt":
        import tensorseal.torch as Lpt
prime = int(float(prime) * (1 << 30))
if prime:
    b = bytearray(prime)
    b[::4096] = b"\1" * len(range(0, prime, 4096))
    del b

if fw == "np":
    def touch(a):
        return int(a.reshape(-1).view(np.uint8)[::4096].sum()) if a.size else 0
else:
    def touch(t):
        return int(t.reshape(-1).view(torch.uint8)[::4096].sum()) if t.numel() else 0

t0 = time.perf_counter()
acc = 0
if op == "load_file":
    d = (Lnp if fw == "np" else Lpt).load_file(path)
    for v in d.values():
        acc += touch(v)
    n = len(d)
elif op == "header":
    with L.safe_open(path, fw) as f:
        n = len(f.keys())
else:
    with L.safe_open(path, fw) as f:
        keys = f.keys()
        n = len(keys)
        # As users write it: the previous result is freed only when the
        # next one replaces it.
        if op == "get_tensor":
            for k in keys:
                t = f.get_tensor(k)
                acc += touch(t)
        else:
            for k in keys:
                s = f.get_slice(k)
                t = s[: s.get_shape()[0] // 2]
                acc += touch(t)
dt = time.perf_counter() - t0
print(json.dumps({"s": dt, "n": n, "acc": acc}))
"""

FILES = {
    # name: (tensors, shape); float32
    "1g": (64, (4096, 1024)),  # 16 MiB each, 1 GiB in all
    "100k": (100_000, (8, 16)),  # 512 B each, ~49 MiB in all
}


def make_file(path: str, count: int, shape) -> None:
    if os.path.exists(path):
        return
    import numpy as np
    import safetensors.numpy

    rng = np.random.default_rng(0)
    if count <= 64:
        d = {f"layer.{i}.weight": rng.standard_normal(shape, dtype=np.float32) for i in range(count)}
    else:
        base = rng.standard_normal(shape, dtype=np.float32)
        d = {f"t.{i}": base + i for i in range(count)}
    tmp = path + ".tmp"
    safetensors.numpy.save_file(d, tmp)
    os.replace(tmp, path)


_drop_note = None


def drop_cache(path: str) -> None:
    """Empties the page cache (or, failing that, evicts this file's pages)."""
    global _drop_note
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        _drop_note = _drop_note or "cold: page cache dropped with /proc/sys/vm/drop_caches"
        return
    except OSError as e:
        _drop_note = f"cold: drop_caches refused ({e}); the file's pages evicted with posix_fadvise(DONTNEED)"
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def warm_cache(path: str) -> None:
    with open(path, "rb") as fh:
        while fh.read(64 << 20):
            pass


def run_child(lib: str, fw: str, op: str, path: str, cold: bool, prime: float) -> float:
    if cold:
        drop_cache(path)
    else:
        warm_cache(path)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, lib, fw, op, path, str(prime)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{lib} {fw} {op} {path} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["s"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--dir", default="/tmp/tensorseal-ratios")
    ap.add_argument("--prime", type=float, default=1.0)
    ap.add_argument("--files", default="1g,100k")
    ap.add_argument("--fws", default="np,pt")
    ap.add_argument("--caches", default="warm,cold")
    ap.add_argument("--ops", default="load_file,get_tensor,get_slice")
    ap.add_argument("--no-header", action="store_true", help="skip the header-only row")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    import numpy
    import safetensors
    import tensorseal
    import torch

    os.makedirs(args.dir, exist_ok=True)
    paths = {}
    for name in args.files.split(","):
        count, shape = FILES[name]
        paths[name] = os.path.join(args.dir, f"{name}.safetensors")
        make_file(paths[name], count, shape)

    cells = []
    for fname in args.files.split(","):
        for fw in args.fws.split(","):
            for cache in args.caches.split(","):
                for op in filter(None, args.ops.split(",")):
                    cells.append((fname, fw, cache, op))
    if "100k" in paths and not args.no_header:
        for fw in args.fws.split(","):
            cells.append(("100k", fw, "warm", "header"))

    print(
        f"# {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"Python {platform.python_version()}, numpy {numpy.__version__}, torch {torch.__version__}, "
        f"safetensors {safetensors.__version__}, tensorseal {tensorseal.__version__}; "
        f"{args.pairs} alternating pairs per cell, prime {args.prime} GiB",
        flush=True,
    )
    print(f"{'file':5} {'fw':3} {'cache':5} {'op':10} {'ref s':>8} {'ours s':>8} {'ref/ours':>9}", flush=True)
    results = []
    started = time.time()
    for fname, fw, cache, op in cells:
        ref, ours, ratios = [], [], []
        for i in range(args.pairs):
            order = ("ref", "ours") if i % 2 == 0 else ("ours", "ref")
            t = {}
            for lib in order:
                t[lib] = run_child(lib, fw, op, paths[fname], cache == "cold", args.prime)
            ref.append(t["ref"])
            ours.append(t["ours"])
            ratios.append(t["ref"] / t["ours"])
        row = {
            "file": fname,
            "fw": fw,
            "cache": cache,
            "op": op,
            "ref_s": statistics.median(ref),
            "ours_s": statistics.median(ours),
            "ratio": statistics.median(ratios),
            "ref_all": ref,
            "ours_all": ours,
        }
        results.append(row)
        print(
            f"{fname:5} {fw:3} {cache:5} {op:10} {row['ref_s']:8.4f} {row['ours_s']:8.4f} {row['ratio']:8.2f}x",
            flush=True,
        )
    if _drop_note:
        print("#", _drop_note)
    print(f"# {time.time() - started:.0f} s in all")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"cells": results, "cold": _drop_note}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
