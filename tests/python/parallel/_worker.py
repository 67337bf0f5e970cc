"""One rank of the parallel tests (started by test_parallel.py as a
subprocess). Checks everything it can itself and writes a JSON report to
OUT/rank{r}.json; the test asserts on the reports."""

import json
import os
import sys
import traceback
from datetime import timedelta

import torch
import torch.distributed as dist
from safetensors.torch import load_file as ref_load_file

import tensorseal.torch as tt
from tensorseal.torch import load_sharded, save_sharded


def rchar() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise RuntimeError("no rchar")


def full_tensors(ckpt: str):
    index = os.path.join(ckpt, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values()))
    out = {}
    for f in files:
        out.update(ref_load_file(os.path.join(ckpt, f)))
    return out


def expected(name, t, plan_rules, rank, world):
    """The slice numpy/torch would take: tensor_split block `rank`."""
    import fnmatch
    import re

    for rule in plan_rules:
        hit = fnmatch.fnmatchcase(name, rule["pattern"]) if "pattern" in rule else re.search(rule["regex"], name)
        if hit:
            r = rule["rule"]
            if isinstance(r, dict):
                return torch.tensor_split(t, world, dim=r["shard"])[rank]
            return None if r == "skip" else t
    return t


def main():
    rank, world, init_file, ckpt, plan_path, out = sys.argv[1:7]
    rank, world = int(rank), int(world)
    report = {"rank": rank, "errors": []}
    plan = json.load(open(plan_path))
    full = full_tensors(ckpt)

    # 1. Bytes read, before any process group exists (so no socket reads
    # count): a warm-up load, then a measured one.
    load_sharded(ckpt, plan_path, rank, world)
    before = rchar()
    mine = load_sharded(ckpt, plan_path, rank, world)
    after = rchar()
    stats = dict(tt.last_load_stats)
    share = sum(t.numel() * t.element_size() for t in mine.values())
    report.update(share=share, stats=stats, rchar=after - before)

    for name, t in full.items():
        want = expected(name, t, plan["rules"], rank, world)
        if want is None:
            continue
        got = mine.get(name)
        if got is None or got.shape != want.shape or not torch.equal(got, want):
            report["errors"].append(f"load: {name} differs")

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))

    # 2. rank/world from torch.distributed, plan as a dict.
    again = load_sharded(ckpt, plan)
    if sorted(again) != sorted(mine) or any(not torch.equal(again[k], mine[k]) for k in mine):
        report["errors"].append("load with rank/world from torch.distributed differs")

    # 3. Collective mode: every byte read once across ranks.
    coll = load_sharded(ckpt, plan, collective=True)
    report["collective_bytes"] = tt.last_load_stats["data_bytes"]
    if sorted(coll) != sorted(mine) or any(not torch.equal(coll[k], mine[k]) for k in mine):
        report["errors"].append("collective load differs")

    # 4. Pipeline stages (world 2 and 4): stage s keeps its block of layers.
    if world in (2, 4):
        pp = dict(plan, pipeline={"stages": 2, "non_layer": "first"})
        staged = load_sharded(ckpt, pp)
        stage = rank // (world // 2)
        layers = sorted({int(k.split(".")[2]) for k in staged if k.startswith("model.layers.")})
        report["stage_layers"] = layers
        report["stage_non_layer"] = sorted(k for k in staged if ".layers." not in k)
        report["stage"] = stage

    # 5. Saving without gathering, from this rank's parts only.
    save_sharded(mine, os.path.join(out, "saved.safetensors"), plan)
    save_sharded(mine, os.path.join(out, "saved_dir"), plan, max_shard_size=60_000)

    # 6. Failures: a missing shard on one rank, a bad plan on another.
    path = ckpt if rank != world - 1 else os.path.join(out, "no-such-checkpoint")
    try:
        load_sharded(path, plan)
        report["missing"] = "no error"
    except Exception as e:
        report["missing"] = type(e).__name__ + ": " + str(e)
    bad = plan if rank != 0 else {"rules": [{"pattern": "a[", "rule": "skip"}]}
    try:
        load_sharded(ckpt, bad)
        report["bad_plan"] = "no error"
    except Exception as e:
        report["bad_plan"] = type(e).__name__ + ": " + str(e)

    dist.barrier()
    dist.destroy_process_group()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
        sys.exit(1)
