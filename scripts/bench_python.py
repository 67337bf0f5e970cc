#!/usr/bin/env python3
"""Benchmarks the tensorseal Python package against the reference safetensors.

Creates a ~2 GiB checkpoint (a few hundred tensors), warms the page cache,
then runs every operation for the reference and for tensorseal alternately,
each measurement in a fresh Python process, and prints medians and ratios.

Operations:
  load_np / load_pt   numpy.load_file / torch.load_file. Three metrics:
                      "call"     the load_file call alone;
                      "touched"  + reading one byte of every 4 KiB page of
                                 every tensor (all data resident);
                      "private"  every tensor materialised in private process
                                 memory, touched. Only the reference's torch
                                 loader needs more for this: it returns views
                                 of a lazily read memory map of the file, so
                                 its tensors are cloned (the goal metric);
                      "cpu s"    user+system CPU seconds of the process for
                                 "private" (robust when the machine is
                                 shared: wall times scale with the share of
                                 CPU a process gets).
  floor               the cheapest private copy this machine allows, for
                      scale: the tensor bytes read with 16 MiB positioned
                      reads on as many threads as CPUs (at most 8) into
                      one anonymous huge-page buffer, from ctypes, with no
                      parsing and no tensors. "tensorseal / floor" near 1
                      means the loader adds nothing to the copy itself.
  save_pt_busy        torch save_file of 100 tensors (100 MiB) while another
                      Python thread spins (not in the default --ops): how
                      much the save loses to GIL hand-offs.
  save_np / save_pt   save_file of a dict of the same size: wall and CPU
                      seconds; "peak MiB+" is the peak RSS during the save
                      minus the RSS before it (VmHWM, reset first).

Memory priming (--prime, default 4 GiB): each child touches and frees that
much memory right before its timed region. On VMs with free-page reporting
(virtio-balloon, e.g. Firecracker) the host reclaims free 2 MiB blocks about
2 s after they are freed, and the next first touch of each page goes to the
hypervisor; without priming, whichever process ran after a pause paid that,
so results depended on run order more than on the code. --prime 0 measures
the unprimed state.

Usage: python scripts/bench_python.py [--gib 2] [--reps 3] [--prime 4] [--dir /tmp/tensorseal-bench]
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
import json, os, resource, sys, time
lib, op, path, out, gib, ntensors, prime = sys.argv[1:8]
gib = float(gib); ntensors = int(ntensors); prime = float(prime)
import numpy as np, torch
if lib == "ref":
    import safetensors.numpy as snp, safetensors.torch as spt
else:
    import tensorseal.numpy as snp, tensorseal.torch as spt

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0

def reset_peak():
    # Resets VmHWM (the peak RSS) to the current RSS (Linux >= 4.0).
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

def prime_memory():
    # Touch and free `prime` GiB right before the timed region, so that the
    # memory the operation is about to get is backed by the host. On VMs
    # with free-page reporting (virtio-balloon), free 2 MiB blocks are
    # handed back to the host after ~2 s and the next first touch of each
    # page costs a trip to the hypervisor: whichever process ran first after
    # a pause paid for it, which made runs depend on their order.
    if prime > 0:
        a = np.ones(int(prime * (1 << 30)), dtype=np.uint8)
        del a

def floor_copy(path):
    # Bare parallel pread of the data region into one huge-page buffer.
    # ctypes releases the GIL around each foreign call, so the threads read
    # concurrently.
    import ctypes, mmap, struct, threading
    libc = ctypes.CDLL(None, use_errno=True)
    libc.pread.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long]
    libc.pread.restype = ctypes.c_ssize_t
    fd = os.open(path, os.O_RDONLY)
    start = 8 + struct.unpack("<Q", os.pread(fd, 8, 0))[0]
    n = os.fstat(fd).st_size - start
    buf = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf.madvise(mmap.MADV_HUGEPAGE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    chunk = 16 << 20
    chunks = iter(range(0, n, chunk))
    lock = threading.Lock()
    def work():
        while True:
            with lock:
                off = next(chunks, None)
            if off is None:
                return
            done, want = 0, min(chunk, n - off)
            while done < want:
                r = libc.pread(fd, base + off + done, want - done, start + off + done)
                if r <= 0:
                    raise OSError(ctypes.get_errno(), "pread")
                done += r
    threads = [threading.Thread(target=work) for _ in range(min(os.cpu_count() or 1, 8))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.close(fd)
    return buf

res = {}
if op == "save_pt_busy":
    # save_file of 100 tensors (100 MiB) while another Python thread spins:
    # every GIL release inside the save then costs a switch interval.
    import threading
    d = {f"t{i}": torch.randn(256, 1024) for i in range(100)}
    stop = threading.Event()
    def spin():
        x = 0
        while not stop.is_set():
            x += 1
    th = threading.Thread(target=spin)
    th.start()
    time.sleep(0.02)
    t0 = time.perf_counter()
    spt.save_file(d, out)
    t1 = time.perf_counter()
    stop.set()
    th.join()
    res = {"time": t1 - t0}
    os.unlink(out)
elif op == "floor":
    prime_memory()
    c0 = cpu()
    t0 = time.perf_counter()
    buf = floor_copy(path)
    t1 = time.perf_counter()
    res = {"private": t1 - t0, "cpu": cpu() - c0}
elif op.startswith("load"):
    prime_memory()
    c0 = cpu()
    t0 = time.perf_counter()
    if op == "load_np":
        d = snp.load_file(path)
        t1 = time.perf_counter()
        s = 0
        for a in d.values():
            b = a.reshape(-1).view(np.uint8)
            s += int(b[::4096].sum())
        t2 = t3 = time.perf_counter()
    else:
        d = spt.load_file(path)
        t1 = time.perf_counter()
        s = 0
        for a in d.values():
            b = a.reshape(-1).view(torch.uint8)
            s += int(b[::4096].sum())
        t2 = time.perf_counter()
        if lib == "ref":
            # The reference returns views of a lazily read memory map; a
            # private in-memory copy takes a clone.
            d = {k: v.clone() for k, v in d.items()}
        t3 = time.perf_counter()
    res = {"call": t1 - t0, "touched": t2 - t0, "private": t3 - t0, "cpu": cpu() - c0, "n": len(d)}
else:
    per = int(gib * (1 << 30)) // ntensors // 4
    prime_memory()
    if op == "save_np":
        d = {f"layer.{i}.weight": np.full(per, i, dtype=np.float32) for i in range(ntensors)}
    else:
        d = {f"layer.{i}.weight": torch.full((per,), i, dtype=torch.float32) for i in range(ntensors)}
    reset_peak()
    before = status_kib("VmHWM")
    c0 = cpu()
    t0 = time.perf_counter()
    (snp if op == "save_np" else spt).save_file(d, out)
    t1 = time.perf_counter()
    res = {"time": t1 - t0, "cpu": cpu() - c0, "extra_mib": (status_kib("VmHWM") - before) / 1024}
    os.unlink(out)
print(json.dumps(res))
"""


def run(lib, op, path, out, gib, ntensors, prime):
    r = subprocess.run(
        [sys.executable, "-c", CHILD, lib, op, path, out, str(gib), str(ntensors), str(prime)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(r.stdout.strip().splitlines()[-1])


def make_checkpoint(path, gib, ntensors):
    import numpy as np
    import safetensors.numpy as snp

    rng = np.random.default_rng(0)
    total = int(gib * (1 << 30))
    # Mixed dtypes and sizes, a few hundred tensors.
    d = {}
    per = total // ntensors
    for i in range(ntensors):
        kind = i % 4
        if kind == 0:
            d[f"model.layers.{i}.mlp.weight"] = rng.standard_normal(per // 4, dtype=np.float32)
        elif kind == 1:
            d[f"model.layers.{i}.attn.weight"] = rng.integers(0, 1 << 15, per // 2, dtype=np.int16)
        elif kind == 2:
            d[f"model.layers.{i}.norm.weight"] = rng.standard_normal(per // 8).astype(np.float64)
        else:
            d[f"model.layers.{i}.bias"] = rng.integers(0, 255, per, dtype=np.uint8)
    snp.save_file(d, path)


def warm(path):
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--tensors", type=int, default=300)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", default="/tmp/tensorseal-bench")
    ap.add_argument("--ops", default="load_np,load_pt,floor,save_np,save_pt")
    ap.add_argument(
        "--prime",
        type=float,
        default=4.0,
        help="GiB of memory each child touches and frees just before its timed region "
        "(0: none); see prime_memory in the child",
    )
    args = ap.parse_args()

    os.makedirs(args.dir, exist_ok=True)
    path = os.path.join(args.dir, f"ckpt-{args.gib:g}g-{args.tensors}.safetensors")
    if not os.path.exists(path):
        print(f"creating {path} ...", file=sys.stderr)
        make_checkpoint(path, args.gib, args.tensors)
    size = os.path.getsize(path)
    import safetensors
    import tensorseal

    print(f"checkpoint: {path} ({size / (1 << 30):.2f} GiB, {args.tensors} tensors)")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs), "
        f"python {platform.python_version()}, safetensors {safetensors.__version__}, "
        f"tensorseal {tensorseal.__version__}, memory primed: {args.prime:g} GiB"
    )
    ops = args.ops.split(",")
    def libs(op, rep):
        if op == "floor":
            return ("floor",)
        return ("ref", "ours") if rep % 2 == 0 else ("ours", "ref")

    results = {(op, lib): [] for op in ops for lib in libs(op, 0)}
    for rep in range(args.reps):
        for op in ops:
            for lib in libs(op, rep):
                if op.startswith("load") or op == "floor":
                    warm(path)
                out = os.path.join(args.dir, f"out-{lib}.safetensors")
                r = run(lib, op, path, out, args.gib, args.tensors, args.prime)
                results[(op, lib)].append(r)
                print(f"  rep {rep} {op:8s} {lib:4s} " + " ".join(f"{k}={v:.3f}" for k, v in r.items() if k != "n"), file=sys.stderr)

    print(f"\nmedians of {args.reps} runs (seconds; ratio = reference / tensorseal, >1 means tensorseal is faster)")
    print(f"{'operation':10s} {'metric':10s} {'reference':>10s} {'tensorseal':>10s} {'ratio':>7s}")
    for op in ops:
        if op == "floor":
            continue
        metrics = (
            ["private", "touched", "call", "cpu"]
            if op.startswith("load")
            else ["time"]
            if op == "save_pt_busy"
            else ["time", "cpu", "extra_mib"]
        )
        for m in metrics:
            ref = statistics.median(r[m] for r in results[(op, "ref")])
            ours = statistics.median(r[m] for r in results[(op, "ours")])
            label = {"private": "private", "touched": "touched", "time": "time", "call": "call only", "cpu": "cpu s", "extra_mib": "peak MiB+"}[m]
            ratio = f"{ref / ours:7.2f}" if m != "extra_mib" and ours > 0 else "       "
            print(f"{op:10s} {label:12s} {ref:10.3f} {ours:10.3f} {ratio}")
    if "floor" in ops:
        floor = statistics.median(r["private"] for r in results[("floor", "floor")])
        floor_cpu = statistics.median(r["cpu"] for r in results[("floor", "floor")])
        print(f"\nfloor (bare parallel pread into huge pages): {floor:.3f} s, {floor_cpu:.3f} cpu s")
        for op in ops:
            if op.startswith("load"):
                ours = statistics.median(r["private"] for r in results[(op, "ours")])
                print(f"{op:10s} tensorseal / floor {ours / floor:7.2f}")


if __name__ == "__main__":
    main()
