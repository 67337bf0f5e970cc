#!/usr/bin/env python3
"""Benchmark: converting a torch zip checkpoint to safetensors.

tensorseal writes atomically (temporary file, rename) and, like save_file,
leaves writeback to the OS; `--sync` fsyncs. The reference is timed both as
is and followed by an fsync of its output, to compare `--sync` with the same
durability. Reference times are for the whole process (what a user running a
conversion script waits for: Python start, torch import, conversion) and,
in brackets, for torch.load + save_file alone.

Memory priming (--prime GiB, default 4): before every case a throwaway
process touches and frees that much memory, so the case gets memory the host
has backed (on VMs with free-page reporting, memory freed a few seconds
earlier is returned to the host and costs a hypervisor trip per page on its
next first touch; see scripts/bench_python.py).

Reference: what Hugging Face's converter does, `torch.load(weights_only=True)`
then `safetensors.torch.save_file`, in a fresh Python process. Ours:
`tensorseal convert` (release build) with each verification mode: the
default `--verify checksum` (per-tensor XXH3-128 while copying, output re-read),
`--verify full` (input and output re-read and compared byte for byte) and
`--verify none`. Runs alternate in one session; prints medians, ratios and
the peak resident memory of each child (from os.wait4's rusage).

    /work/venv/bin/python scripts/bench_convert.py [--size-gib 1.2] [--rounds 3]
"""

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / "bench-data"

REF = """
import os, sys, time, torch
from safetensors.torch import save_file
t0 = time.perf_counter()
sd = torch.load(sys.argv[1], weights_only=True)
save_file({k: v.contiguous() for k, v in sd.items()}, sys.argv[2], metadata={"format": "pt"})
if len(sys.argv) > 3:
    # Same durability as `tensorseal convert --sync`: data on disk before returning.
    fd = os.open(sys.argv[2], os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
# The conversion alone, without starting Python and importing torch.
print(f"inner={time.perf_counter() - t0}", file=sys.stderr)
"""

PRIME = """
import sys
a = bytearray(int(float(sys.argv[1]) * (1 << 30)))
a[::4096] = b"\\x01" * len(range(0, len(a), 4096))
"""

CHECK = """
import sys, torch
from safetensors import safe_open
with safe_open(sys.argv[1], "pt") as a, safe_open(sys.argv[2], "pt") as b:
    assert set(a.keys()) == set(b.keys())
    for k in a.keys():
        x, y = a.get_tensor(k), b.get_tensor(k)
        assert x.dtype == y.dtype and x.shape == y.shape, k
        assert torch.equal(x.view(torch.uint8), y.view(torch.uint8)), k
print("outputs hold identical tensors", file=sys.stderr)
"""

MAKE = """
import sys
sys.path.insert(0, sys.argv[3])
from bench_convert import make_checkpoint
make_checkpoint(sys.argv[1], float(sys.argv[2]))
"""


def make_checkpoint(path: pathlib.Path, size_gib: float):
    import torch

    torch.manual_seed(0)
    n_bytes = int(size_gib * (1 << 30))
    sd = {}
    i = 0
    total = 0
    # A transformer-like mix: big f32 matrices, bf16 and f16 ones, small biases.
    while total < n_bytes:
        sd[f"layers.{i}.attn.weight"] = torch.randn(1024, 2048)
        sd[f"layers.{i}.mlp.weight"] = torch.randn(2048, 1024).to(torch.bfloat16)
        sd[f"layers.{i}.mlp.bias"] = torch.randn(2048).half()
        sd[f"layers.{i}.norm.weight"] = torch.ones(1024)
        total += 1024 * 2048 * 4 + 2048 * 1024 * 2 + 2048 * 2 + 1024 * 4
        i += 1
    torch.save(sd, path)


def run(cmd):
    """Runs cmd; returns (seconds, peak RSS in MiB, stderr)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd} failed: {err}")
    return dt, usage.ru_maxrss / 1024, err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-gib", type=float, default=1.2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "tensorseal"))
    ap.add_argument("--prime", type=float, default=4.0, help="GiB touched and freed before each case (0: none)")
    args = ap.parse_args()

    DATA.mkdir(exist_ok=True)
    ckpt = DATA / f"bench_{args.size_gib}g.pt"
    if not ckpt.exists():
        # In a child: this process must stay small, because a child's peak
        # RSS (ru_maxrss) starts at the size of the process that forked it.
        print(f"creating {ckpt} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-c", MAKE, str(ckpt), str(args.size_gib), str(ROOT / "scripts")], check=True)
    size = ckpt.stat().st_size
    out_ref = DATA / "ref.safetensors"
    out_ours = DATA / "ours.safetensors"
    cases = {
        "torch.load + save_file": [sys.executable, "-c", REF, str(ckpt), str(out_ref)],
        "torch.load + save_file + fsync": [sys.executable, "-c", REF, str(ckpt), str(out_ref), "fsync"],
        "tensorseal convert": [args.bin, "convert", str(ckpt), str(out_ours)],
        "tensorseal convert --verify full": [args.bin, "convert", str(ckpt), str(out_ours), "--verify", "full"],
        "tensorseal convert --verify none": [args.bin, "convert", str(ckpt), str(out_ours), "--verify", "none"],
        "tensorseal convert --sync": [args.bin, "convert", str(ckpt), str(out_ours), "--sync"],
    }
    # Warm the page cache once so every case reads from memory.
    run(["cat", str(ckpt)])
    times = {k: [] for k in cases}
    inner = {k: [] for k in cases}
    rss = {k: [] for k in cases}
    for r in range(args.rounds):
        for name, cmd in cases.items():
            # Every case starts from the same disk state, outside the timed
            # region: no output to replace (freeing its blocks would be
            # charged to whoever replaces it) and no dirty pages left over
            # from the previous case's write.
            (out_ref if str(out_ref) in cmd else out_ours).unlink(missing_ok=True)
            os.sync()
            if args.prime > 0:
                subprocess.run([sys.executable, "-c", PRIME, str(args.prime)], check=True)
            dt, peak, err = run(cmd)
            times[name].append(dt)
            rss[name].append(peak)
            for line in err.splitlines():
                if line.startswith("inner="):
                    inner[name].append(float(line[6:]))
            print(f"round {r}: {name}: {dt:.2f}s, peak RSS {peak:.0f} MiB", file=sys.stderr)
    # Same tensors and bytes as the reference.
    subprocess.run([sys.executable, "-c", CHECK, str(out_ref), str(out_ours)], check=True)
    print(f"checkpoint: {size / (1 << 30):.2f} GiB, {args.rounds} rounds, medians, memory primed: {args.prime:g} GiB")
    print(f"{'case':34} {'median s':>15} {'GiB/s':>7} {'peak RSS MiB':>13}")
    for name in cases:
        m = statistics.median(times[name])
        extra = f" [{statistics.median(inner[name]):5.2f}]" if inner[name] else " " * 8
        print(f"{name:34} {m:7.2f}{extra} {size / (1 << 30) / m:7.2f} {max(rss[name]):13.0f}")
    print("\nratios (reference / tensorseal; >1: tensorseal faster), whole process [conversion alone]:")
    pairs = [
        ("tensorseal convert", "torch.load + save_file"),
        ("tensorseal convert --verify none", "torch.load + save_file"),
        ("tensorseal convert --verify full", "torch.load + save_file"),
        ("tensorseal convert --sync", "torch.load + save_file + fsync"),
    ]
    for ours, ref in pairs:
        o = statistics.median(times[ours])
        whole = statistics.median(times[ref]) / o
        alone = statistics.median(inner[ref]) / o
        print(f"{ours:34} vs {ref:31} {whole:5.1f}x [{alone:4.1f}x]")


if __name__ == "__main__":
    main()
