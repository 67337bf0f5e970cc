#!/usr/bin/env python3
"""Loading a checkpoint straight into GPU memory: tensorseal vs the reference.

In one run, on one checkpoint (8 GiB by default: bf16 tensors of mixed sizes,
like a language model's), from the page cache ("page cache") and from cold
storage ("cold"), measures:

  pinned H2D            bandwidth of a torch copy of a pinned host buffer
                        (1 GiB, non_blocking, timed with a synchronize) into
                        device memory: the ceiling for any loader;
  reference load_file   safetensors.torch.load_file(path, device=DEV);
  tensorseal load_file  tensorseal.torch.load_file(path, device=DEV) (the
                        staged pipeline: reader threads, pinned ring, copy
                        stream; default knobs);
  tensorseal group      the same with TENSORSEAL_DEVICE_ALLOC=group (one
                        allocation per dtype), to choose the default;
  tensorseal no-direct  cold only: TENSORSEAL_DIRECT=off (buffered reads).

Each measurement runs in a fresh Python process (imports, CUDA context
creation and one warm-up allocation are not timed; every load ends with
torch.cuda.synchronize()), the libraries alternate (reference first in
even pairs, tensorseal first in odd ones), and the script prints medians,
GB/s, the ratio reference/tensorseal (above 1: tensorseal faster) and
tensorseal's percentage of the pinned bandwidth. Goals (issue 15): >= 80 %
of pinned bandwidth from the page cache, >= 3x the reference.

Cold: before each cold child the page cache is dropped with
`echo 3 > /proc/sys/vm/drop_caches` (root); where that is refused, the
file's pages are evicted with posix_fadvise(DONTNEED), and the script says so.

Recording: paste the printed table into BENCHMARKS.md ("Loading to GPU")
with the environment lines the script prints first (GPU model, driver,
torch and CUDA/ROCm versions, CPU, storage of --dir).

  python scripts/bench_gpu.py [--size-gib 8] [--pairs 3] [--dir /tmp/tensorseal-gpu] [--device cuda:0] [--keep]
  python scripts/bench_gpu.py --dry-run      # tiny file, device cpu (host target); CI runs this

--dry-run exercises every measurement path on a CPU machine: an 8 MiB file,
device "cpu", one pair; "pinned H2D" is then a host copy, the reference's
load_file is its cpu load, and tensorseal's rows go through the staged
pipeline's host target. Its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys

CHILD = r"""
import json, os, sys, time
what, path, dev = sys.argv[1:4]
import torch
device = torch.device(dev)
cuda = device.type == "cuda"
if cuda:
    torch.cuda.init()
    torch.empty(1, device=device)
def sync():
    if cuda:
        torch.cuda.synchronize(device)
if what == "pinned":
    n = int(sys.argv[4])
    src = torch.empty(n, dtype=torch.uint8, pin_memory=cuda)
    src.fill_(1)
    dst = torch.empty(n, dtype=torch.uint8, device=device)
    dst.copy_(src, non_blocking=True); sync()
    best = None
    for _ in range(5):
        t0 = time.perf_counter(); dst.copy_(src, non_blocking=True); sync()
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    print(json.dumps({"s": best, "bytes": n}))
    sys.exit(0)
if what == "ref":
    import safetensors.torch as L
    load = lambda: L.load_file(path, device=dev)
else:
    import tensorseal.torch as T
    if cuda:
        load = lambda: T.load_file(path, device=dev)
    else:  # dry run: the staged pipeline's host target
        from tensorseal import _gpu
        load = lambda: _gpu.load_file(path, "cpu")
t0 = time.perf_counter()
out = load()
sync()
dt = time.perf_counter() - t0
n = sum(t.numel() * t.element_size() for t in out.values())
extra = {}
if what != "ref":
    from tensorseal import _gpu
    extra = dict(_gpu.last_stats)
print(json.dumps({"s": dt, "bytes": n, "stats": extra}))
"""

_drop_note = None


def drop_cache(path: str, machine_wide: bool = True) -> None:
    """Empties the page cache (or, failing that or when not
    ``machine_wide``, evicts this file's pages)."""
    global _drop_note
    os.sync()
    if not machine_wide:
        _drop_note = "cold: the file's pages evicted with posix_fadvise(DONTNEED) (dry run)"
    try:
        if not machine_wide:
            raise PermissionError("not attempted")
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        _drop_note = _drop_note or "cold: page cache dropped with /proc/sys/vm/drop_caches"
        return
    except OSError as e:
        if machine_wide:
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


def make_checkpoint(path: str, total: int) -> None:
    """A bf16 checkpoint of about ``total`` bytes, written in bounded chunks:
    per "layer" four large matrices and two small vectors (mixed sizes, odd
    offsets), random bytes (written by hand: the format is a JSON header
    and the raw data)."""
    import numpy as np

    rows = max(total // (64 * 2 * 4096), 1)  # matrices of ~total/64 bytes: ~16 layers
    sizes, nbytes, k = [], 0, 0
    while nbytes < total:
        layer = [(f"layers.{k}.w{j}", (rows, 4096)) for j in range(4)]
        layer += [(f"layers.{k}.norm", (4096,)), (f"layers.{k}.bias", (1000 + k,))]
        sizes += layer
        nbytes += sum(2 * int(np.prod(sh)) for _, sh in layer)
        k += 1
    header, at = {}, 0
    for name, shape in sizes:
        n = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [at, at + n]}
        at += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    rng = np.random.default_rng(0)
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(len(text).to_bytes(8, "little"))
        fh.write(text)
        left = at
        while left:
            n = min(left, 64 << 20)
            # bf16 bit patterns of small normal values (no NaN payloads).
            fh.write((rng.integers(0x3000, 0x4000, n // 2, dtype=np.uint16)).tobytes())
            left -= n
    os.replace(tmp, path)


def run_child(what: str, path: str, dev: str, cold: bool, env: dict, arg: str = "") -> dict:
    if what != "pinned":
        if cold:
            # A dry run (CI, shared machines) never empties the machine's cache.
            drop_cache(path, machine_wide=dev != "cpu")
        else:
            warm_cache(path)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, what, path, dev, arg],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, **env},
    )
    if proc.returncode != 0:
        raise SystemExit(f"{what} {path} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def environment(dev: str, folder: str) -> list:
    import torch

    lines = [f"python {platform.python_version()}, torch {torch.__version__}"]
    if torch.device(dev).type == "cuda":
        lines.append(f"GPU: {torch.cuda.get_device_name(torch.device(dev))}")
        lines.append(f"CUDA {torch.version.cuda}, HIP {getattr(torch.version, 'hip', None)}")
        smi = shutil.which("nvidia-smi") or shutil.which("rocm-smi")
        if smi and smi.endswith("nvidia-smi"):
            q = subprocess.run([smi, "--query-gpu=name,driver_version,pcie.link.gen.current,pcie.link.width.current",
                                "--format=csv,noheader"], capture_output=True, text=True)
            lines.append(f"nvidia-smi: {q.stdout.strip()}")
        elif smi:
            q = subprocess.run([smi, "--showdriverversion"], capture_output=True, text=True)
            lines.append(f"rocm-smi: {' '.join(q.stdout.split())}")
    else:
        lines.append("device: cpu (dry run: the host target; numbers are meaningless)")
    lines.append(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    df = subprocess.run(["df", "-T", folder], capture_output=True, text=True).stdout.strip().splitlines()
    if len(df) > 1:
        lines.append(f"storage of {folder}: {' '.join(df[1].split()[:2])}")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gib", type=float, default=8.0)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--dir", default="/tmp/tensorseal-gpu")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--keep", action="store_true", help="keep the checkpoint for another run")
    ap.add_argument("--dry-run", action="store_true", help="tiny file, device cpu, one pair (CI)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if args.dry_run:
        args.size_gib, args.pairs, args.device = 8 / 1024, 1, "cpu"

    os.makedirs(args.dir, exist_ok=True)
    path = os.path.join(args.dir, f"bench-{args.size_gib:g}g.safetensors")
    total = int(args.size_gib * (1 << 30))
    if not (os.path.exists(path) and args.keep):
        make_checkpoint(path, total)
    size = os.path.getsize(path)
    try:
        for line in environment(args.device, args.dir):
            print(line)
        print(f"checkpoint: {path}, {size / 2**30:.2f} GiB")
        pinned_bytes = min(1 << 30, size)
        pin = [run_child("pinned", path, args.device, False, {}, str(pinned_bytes)) for _ in range(args.pairs)]
        pinned_gbs = statistics.median(r["bytes"] / r["s"] for r in pin) / 1e9
        print(f"pinned H2D: {pinned_gbs:.2f} GB/s (median of {args.pairs}, best of 5 copies of {pinned_bytes >> 20} MiB each)")

        results = []
        for cache in ("page cache", "cold"):
            cold = cache == "cold"
            variants = [("tensorseal load_file", {}), ("tensorseal group", {"TENSORSEAL_DEVICE_ALLOC": "group"})]
            if cold:
                variants.append(("tensorseal no-direct", {"TENSORSEAL_DIRECT": "off"}))
            times = {"reference load_file": []}
            stats = {}
            for name, _ in variants:
                times[name] = []
            for p in range(args.pairs):
                order = [("reference load_file", "ref", {})] + [(n, "ours", e) for n, e in variants]
                if p % 2:
                    order = order[1:] + order[:1]
                for name, what, env in order:
                    r = run_child(what, path, args.device, cold, env)
                    times[name].append(r["s"])
                    if r.get("stats"):
                        stats[name] = r["stats"]
            ref_med = statistics.median(times["reference load_file"])
            print(f"\n== {cache} ==")
            print(f"{'':24} {'median s':>9} {'GB/s':>7} {'ratio':>7} {'% of pinned':>12}")
            for name, ts in times.items():
                med = statistics.median(ts)
                gbs = size / med / 1e9
                ratio = ref_med / med
                print(f"{name:24} {med:9.3f} {gbs:7.2f} {ratio:7.2f} {100 * gbs / pinned_gbs:11.1f}%")
                results.append({"cache": cache, "what": name, "median_s": med, "gbs": gbs, "ratio": ratio,
                                "pct_pinned": 100 * gbs / pinned_gbs, "times": ts, "stats": stats.get(name)})
            for name, st in stats.items():
                print(f"  {name}: {st.get('direct_reads', 0)} direct / {st.get('buffered_reads', 0)} buffered reads, "
                      f"{st.get('slots')} slots of {st.get('slot_bytes', 0) >> 20} MiB, {st.get('threads')} threads")
        print("\n(ratio = reference median / this median: above 1 means faster than the reference)")
        if _drop_note:
            print(_drop_note)
        else:
            print("cold: no cold measurement needed dropping")
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"pinned_gbs": pinned_gbs, "size": size, "results": results}, fh, indent=1)
    finally:
        if not args.keep:
            os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
