#!/usr/bin/env python3
"""abi3 wheel vs the default build: torch load_file / save_file of a 256 MiB
file (64 float32 tensors of 4 MiB, written by the reference), alternating
fresh processes, medians.

    scripts/bench_abi3.py PYTHON DEFAULT_DIR [RUNS]

PYTHON: an interpreter whose environment has torch, safetensors and the abi3
wheel installed; DEFAULT_DIR: the default (version-specific) wheel for the
same interpreter installed with `pip install --no-deps --target DEFAULT_DIR`
(put first on PYTHONPATH for the "default" runs).
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

PY, DEFAULT_DIR = sys.argv[1], sys.argv[2]
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 7
F = os.path.join(tempfile.mkdtemp(prefix="bench-abi3-"), "m.safetensors")
CHILD = r'''
import sys, time, json
import torch
import tensorseal, tensorseal.torch as ts
import tensorseal._tensorseal as n
f = sys.argv[1]
t = time.perf_counter(); d = ts.load_file(f); t_load = time.perf_counter() - t
t = time.perf_counter(); s = sum(float(v.sum()) for v in d.values()); t_touch = time.perf_counter() - t
t = time.perf_counter(); ts.save_file(d, f + ".out"); t_save = time.perf_counter() - t
print(json.dumps({"bp": n.BUFFER_PROTOCOL, "load": t_load, "load+sum": t_load + t_touch, "save": t_save}))
'''
if not os.path.exists(F):
    subprocess.run([PY, "-c", "import torch, safetensors.torch as s; s.save_file({f't{i}': torch.randn(1024, 1024) for i in range(64)}, %r)" % F], check=True)
res = {"abi3": [], "default": []}
for i in range(RUNS):
    for kind in ("abi3", "default"):
        env = dict(os.environ)
        if kind == "default":
            env["PYTHONPATH"] = DEFAULT_DIR
        out = subprocess.run([PY, "-c", CHILD, F], env=env, capture_output=True, text=True, check=True, cwd="/").stdout
        r = json.loads(out); assert r["bp"] == (kind == "default"), r
        res[kind].append(r)
for k in ("load", "load+sum", "save"):
    a = statistics.median(r[k] for r in res["abi3"]); d = statistics.median(r[k] for r in res["default"])
    print(f"{k:9s} abi3 {a*1e3:8.2f} ms  default {d*1e3:8.2f} ms  ratio abi3/default {a/d:.2f}")
os.remove(F + ".out")
os.remove(F)
os.rmdir(os.path.dirname(F))
