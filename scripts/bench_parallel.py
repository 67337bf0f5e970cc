#!/usr/bin/env python3
"""Tensor-parallel loading, world size 4 on one machine: tensorseal's
`load_sharded` against (a) every rank calling the reference `load_file`
on each shard and slicing its part, and (b) rank 0 calling `load_file` and
broadcasting each tensor (torch.distributed, gloo), every rank slicing.
`tensorseal_gap` is `load_sharded(..., read_gap=1 MiB)`: strided (dim-1)
blocks read as whole spans (more bytes, far fewer I/O operations).

The checkpoint (generated once, about 4.2 GiB of bf16 in 4 shards plus an
index, Llama-7B-like shapes: hidden 4096, intermediate 11008, 10 layers,
vocab 32000) lives in --dir and is deleted with --cleanup. The plan is
Megatron's: q/k/v/gate/up/embed/lm_head split on dim 0, o/down on dim 1,
norms replicated.

Phase 1, time: for each repetition the methods run in rotating order,
each as 4 fresh rank processes (file:// rendezvous). The checkpoint's
cached pages are evicted first (posix_fadvise DONTNEED: dropping the whole
page cache needs privileges this machine lacks), so every run starts
cold. Rank 0 reports the time from a barrier before loading to a barrier
after every rank holds its tensors (imports and process start not timed),
and every rank its /proc/self/io `read_bytes` (storage reads it caused,
page faults included) and `rchar` (bytes returned by read syscalls).

Phase 2, bytes: the ranks share one page cache here, so phase 1's
read_bytes sum is deduplicated by the cache. What a rank on its own machine
would read is measured by running each rank alone, cold, and summing its
read_bytes over the 4 ranks (for (b): rank 0's load_file of everything,
receivers read nothing from storage but receive their tensors over the
network).

Phase 2 also times each rank alone, cold: a stand-in for 4 machines, each
with its own page cache and storage. "Time until all ranks loaded" there
is the slowest rank's time (for (b) only rank 0's load is timed; the
broadcast over a network is not, so its figure is a lower bound).

Usage: python scripts/bench_parallel.py [--reps 3] [--dir /tmp/h14/bench] [--cleanup]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

WORLD = 4
PLAN = {
    "rules": [
        {"regex": r"\.(q_proj|k_proj|v_proj|gate_proj|up_proj)\.weight$", "rule": {"shard": 0}},
        {"regex": r"\.(o_proj|down_proj)\.weight$", "rule": {"shard": 1}},
        {"pattern": "*embed_tokens.weight", "rule": {"shard": 0}},
        {"pattern": "lm_head.weight", "rule": {"shard": 0}},
    ],
    "default": "replicate",
}
METHODS = ("tensorseal", "ref_each_rank", "ref_rank0_bcast", "tensorseal_gap")


def io_counters():
    with open("/proc/self/io") as f:
        d = dict(line.split(": ") for line in f.read().splitlines())
    return int(d["read_bytes"]), int(d["rchar"])


def shard_files(ckpt):
    with open(os.path.join(ckpt, "model.safetensors.index.json")) as f:
        return sorted(set(json.load(f)["weight_map"].values()))


def evict(ckpt):
    for name in os.listdir(ckpt):
        fd = os.open(os.path.join(ckpt, name), os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def generate(ckpt):
    import torch

    from tensorseal.torch import save_file

    if os.path.exists(os.path.join(ckpt, "model.safetensors.index.json")):
        return
    os.makedirs(ckpt, exist_ok=True)
    h, inter, vocab, layers = 4096, 11008, 32000, 10
    per_shard = [["model.embed_tokens.weight"]]
    shapes = {"model.embed_tokens.weight": (vocab, h)}
    for i in range(layers):
        names = []
        for p, s in (("self_attn.q_proj", (h, h)), ("self_attn.k_proj", (h, h)), ("self_attn.v_proj", (h, h)),
                     ("self_attn.o_proj", (h, h)), ("mlp.gate_proj", (inter, h)), ("mlp.up_proj", (inter, h)),
                     ("mlp.down_proj", (h, inter))):
            n = f"model.layers.{i}.{p}.weight"
            shapes[n] = s
            names.append(n)
        for n in ("input_layernorm", "post_attention_layernorm"):
            shapes[f"model.layers.{i}.{n}.weight"] = (h,)
            names.append(f"model.layers.{i}.{n}.weight")
        per_shard.append(names)
    shapes["model.norm.weight"] = (h,)
    shapes["lm_head.weight"] = (vocab, h)
    per_shard[-1] += ["model.norm.weight", "lm_head.weight"]
    # 11 groups -> 4 files.
    groups = [per_shard[0] + per_shard[1] + per_shard[2], per_shard[3] + per_shard[4] + per_shard[5],
              per_shard[6] + per_shard[7] + per_shard[8], per_shard[9] + per_shard[10]]
    weight_map, total = {}, 0
    g = torch.Generator().manual_seed(0)
    for k, names in enumerate(groups):
        fname = f"model-{k + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = {}
        for n in names:
            t = torch.empty(shapes[n], dtype=torch.bfloat16)
            t.view(torch.int16).random_(-2**15, 2**15 - 1, generator=g)
            tensors[n] = t
            weight_map[n] = fname
            total += t.numel() * 2
        save_file(tensors, os.path.join(ckpt, fname), metadata={"format": "pt"})
        del tensors
    with open(os.path.join(ckpt, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)


def worker(method, rank, world, init, ckpt, out, solo):
    import torch
    import torch.distributed as dist
    from safetensors import safe_open
    from safetensors.torch import load_file

    import tensorseal.torch as tt

    if not solo:
        dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
        dist.barrier()
    t0 = time.perf_counter()
    rb0, rc0 = io_counters()
    mine = {}
    if method == "tensorseal":
        mine = tt.load_sharded(ckpt, PLAN, rank, world)
    elif method == "tensorseal_gap":  # read through gaps of dim-1 blocks
        mine = tt.load_sharded(ckpt, PLAN, rank, world, read_gap=1 << 20)
    elif method == "ref_each_rank":
        for f in shard_files(ckpt):
            full = load_file(os.path.join(ckpt, f))
            for n, t in full.items():
                sl = tt.rank_slice(PLAN, n, list(t.shape), rank, world)
                if sl is not None:
                    mine[n] = t[sl].clone()
            del full
    else:  # ref_rank0_bcast
        for f in shard_files(ckpt):
            path = os.path.join(ckpt, f)
            full = load_file(path) if rank == 0 else None
            with safe_open(path, "pt") as h:
                meta = [(n, h.get_slice(n).get_shape(), h.get_slice(n).get_dtype()) for n in h.keys()]
            for n, shape, _dt in meta:
                if solo and rank != 0:
                    break
                t = full[n] if rank == 0 else torch.empty(shape, dtype=torch.bfloat16)
                if solo:
                    t.reshape(-1)[::2048].float().sum()  # every page, as the broadcast reads it
                else:
                    dist.broadcast(t, src=0)
                sl = tt.rank_slice(PLAN, n, list(shape), rank, world)
                if sl is not None:
                    mine[n] = t[sl].clone()
            del full
    rb1, rc1 = io_counters()
    if not solo:
        dist.barrier()
    t1 = time.perf_counter()
    held = sum(t.numel() * t.element_size() for t in mine.values())
    with open(os.path.join(out, f"{method}-{rank}.json"), "w") as f:
        json.dump({"time": t1 - t0, "read_bytes": rb1 - rb0, "rchar": rc1 - rc0, "held": held}, f)
    if not solo:
        dist.destroy_process_group()


def launch(method, ckpt, ranks, solo):
    evict(ckpt)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(ckpt)) as tmp:
        init = os.path.join(tmp, "init")
        env = dict(os.environ, OMP_NUM_THREADS="1")
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", method, str(r), str(WORLD), init, ckpt, tmp,
                                   "1" if solo else "0"], env=env) for r in ranks]
        for p in procs:
            if p.wait() != 0:
                raise SystemExit(f"{method}: a rank failed")
        return [json.load(open(os.path.join(tmp, f"{method}-{r}.json"))) for r in ranks]


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        m, r, w, init, ckpt, out, solo = sys.argv[2:9]
        worker(m, int(r), int(w), init, ckpt, out, solo == "1")
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", default="/tmp/h14/bench")
    ap.add_argument("--cleanup", action="store_true")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--no-solo", action="store_true", help="skip phase 2")
    args = ap.parse_args()
    ckpt = os.path.join(args.dir, "ckpt")
    generate(ckpt)
    size = sum(os.path.getsize(os.path.join(ckpt, f)) for f in os.listdir(ckpt))
    print(f"checkpoint: {size / 2**30:.2f} GiB in {len(shard_files(ckpt))} shards; world size {WORLD}")
    methods = tuple(args.methods.split(","))
    times = {m: [] for m in methods}
    phase1 = {m: [] for m in methods}
    for rep in range(args.reps):
        k = rep % len(methods)
        order = methods[k:] + methods[:k]
        for m in order:
            res = launch(m, ckpt, range(WORLD), solo=False)
            times[m].append(res[0]["time"])
            phase1[m].append(res)
            print(f"rep {rep} {m:16s} {res[0]['time']:7.2f} s  read_bytes sum {sum(r['read_bytes'] for r in res) / 2**30:6.2f} GiB"
                  f"  rchar sum {sum(r['rchar'] for r in res) / 2**30:6.2f} GiB", flush=True)
    solo = {}
    solo_time = {}
    for m in () if args.no_solo else methods:
        res = [launch(m, ckpt, [r], solo=True)[0] for r in range(WORLD)]
        solo[m] = sum(r["read_bytes"] for r in res)
        solo_time[m] = max(r["time"] for r in res)
        print(f"alone {m:16s} read_bytes summed over ranks {solo[m] / 2**30:6.2f} GiB "
              f"(held {sum(r['held'] for r in res) / 2**30:.2f} GiB); slowest rank "
              f"{solo_time[m]:.2f} s (ranks {' '.join('%.2f' % r['time'] for r in res)})", flush=True)
    med = {m: statistics.median(v) for m, v in times.items()}
    print("\nmedian time until all ranks loaded (s):")
    for m in methods:
        print(f"  {m:16s} {med[m]:7.2f}   ratio vs tensorseal {med[m] / med['tensorseal']:5.2f}x")
    if solo_time:
        print("each rank alone and cold (as on its own machine), slowest rank (s):")
        for m in solo_time:
            print(f"  {m:16s} {solo_time[m]:7.2f}   ratio vs tensorseal "
                  f"{solo_time[m] / solo_time['tensorseal']:5.2f}x")
    print("bytes read from storage, each rank alone and cold, summed (GiB):")
    for m in solo:
        print(f"  {m:16s} {solo[m] / 2**30:7.2f}   ratio vs tensorseal {solo[m] / max(solo['tensorseal'], 1):5.2f}x")
    if args.cleanup:
        import shutil

        shutil.rmtree(args.dir)


if __name__ == "__main__":
    main()
