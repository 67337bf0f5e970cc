#!/usr/bin/env python3
"""Benchmark: dequantizing multi-GB checkpoints (block FP8, 4-bit GPTQ) with
tensorseal.quant.dequantize vs a plain copy of the same number of output
bytes, in the same run, alternating fresh processes.

    .venv-h/bin/python scripts/bench_quant.py [--gib 1] [--rounds 3] [--dir /tmp/h16/bench]

The baseline is ``shutil.copyfile`` of the dense output (kernel copy through
the page cache: read N bytes, write N bytes), so the ratio says how close
dequantizing gets to moving its output through memory. Neither side fsyncs
(``sync=False``); both write a new file into the page cache (the previous
output is removed, untimed, before each run). Data is generated into --dir
and deleted at the end.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

CHILD = r"""
import json, sys, time
kind, src, dst = sys.argv[1:4]
t = time.perf_counter()
if kind == "dequant":
    import tensorseal.quant as q
    q.dequantize(src, dst, dtype="bf16", sync=False)
else:
    import shutil
    shutil.copyfile(src, dst)
print(json.dumps({"s": time.perf_counter() - t}))
"""


def make_fp8(path, gib):
    import ml_dtypes
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    side = 8192
    n = max(1, int(gib * (1 << 30)) // (side * side))
    tensors = {}
    for i in range(n):
        codes = rng.integers(0, 0x7E, size=(side, side), dtype=np.uint8)  # no NaN codes
        tensors[f"model.layers.{i}.mlp.weight"] = codes.view(ml_dtypes.float8_e4m3fn)
        tensors[f"model.layers.{i}.mlp.weight_scale_inv"] = rng.random((side // 128, side // 128), dtype=np.float32)
    os.makedirs(path, exist_ok=True)
    save_file(tensors, os.path.join(path, "model.safetensors"))
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}}, f)
    return n * side * side * 2


def make_gptq(path, gib):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(1)
    side, group = 8192, 128
    n = max(1, int(gib * (1 << 30)) // (side * side // 2))
    tensors = {}
    for i in range(n):
        p = f"model.layers.{i}.mlp.down_proj"
        tensors[f"{p}.qweight"] = rng.integers(-(2**31), 2**31, size=(side // 8, side), dtype=np.int32)
        tensors[f"{p}.qzeros"] = rng.integers(-(2**31), 2**31, size=(side // group, side // 8), dtype=np.int32)
        tensors[f"{p}.scales"] = rng.random((side // group, side)).astype(np.float16)
    os.makedirs(path, exist_ok=True)
    save_file(tensors, os.path.join(path, "model.safetensors"))
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": group}}, f)
    return n * side * side * 2


def child(kind, src, dst):
    out = subprocess.run([sys.executable, "-c", CHILD, kind, src, dst], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["s"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=1.0, help="packed input size per scheme (FP8: output is 2x, GPTQ: 8x... capped by --gib)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default="/tmp/h16/bench")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    results = {}
    try:
        for name, make, gib in [("fp8-block", make_fp8, args.gib), ("gptq-4bit", make_gptq, args.gib / 4)]:
            src = os.path.join(args.dir, name)
            out_bytes = make(src, gib)
            dense = os.path.join(args.dir, name + ".dense.safetensors")
            copy = os.path.join(args.dir, name + ".copy.safetensors")
            child("dequant", src, dense)  # warm-up: page cache, and the file the copy copies
            dq, cp = [], []
            for _ in range(args.rounds):
                # Both sides write a new file: replacing the old output would
                # also charge dequantize with freeing its page cache.
                os.remove(dense)
                dq.append(child("dequant", src, dense))
                cp.append(child("copy", dense, copy))
                os.remove(copy)
            md, mc = statistics.median(dq), statistics.median(cp)
            results[name] = {
                "output_GB": out_bytes / 1e9,
                "dequant_s": md,
                "copy_s": mc,
                "dequant_GBps": out_bytes / 1e9 / md,
                "copy_GBps": out_bytes / 1e9 / mc,
                "ratio": md / mc,
                "all_dequant_s": dq,
                "all_copy_s": cp,
            }
            print(f"{name}: output {out_bytes / 1e9:.2f} GB; dequantize median {md:.2f} s ({out_bytes / 1e9 / md:.2f} GB/s), "
                  f"plain copy {mc:.2f} s ({out_bytes / 1e9 / mc:.2f} GB/s); ratio {md / mc:.2f}x", file=sys.stderr)
            shutil.rmtree(src)
            os.remove(dense)
    finally:
        shutil.rmtree(args.dir, ignore_errors=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
