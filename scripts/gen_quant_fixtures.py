#!/usr/bin/env python3
"""Generates tests/fixtures/quant/: the reference decodings of every code of the
8-, 6- and 4-bit float dtypes (codes.json, from ml_dtypes and torch) and small
quantized checkpoints with their expected dequantization (layouts/), computed
with the published formula of each format in numpy.

    .venv-h/bin/python scripts/gen_quant_fixtures.py [--check]

--check regenerates into memory and fails if a committed file differs.
"""
import argparse
import json
import os
import sys

import ml_dtypes
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "quant")

# safetensors dtype -> (number of codes, ml_dtypes type, torch dtype or None)
DTYPES = [
    ("F8_E4M3", 256, ml_dtypes.float8_e4m3fn, torch.float8_e4m3fn),
    ("F8_E5M2", 256, ml_dtypes.float8_e5m2, torch.float8_e5m2),
    ("F8_E4M3FNUZ", 256, ml_dtypes.float8_e4m3fnuz, torch.float8_e4m3fnuz),
    ("F8_E5M2FNUZ", 256, ml_dtypes.float8_e5m2fnuz, torch.float8_e5m2fnuz),
    ("F8_E8M0", 256, ml_dtypes.float8_e8m0fnu, torch.float8_e8m0fnu),
    # torch has F4 only as packed pairs (float4_e2m1fn_x2), with no
    # element-wise conversion; F6 not at all.
    ("F4", 16, ml_dtypes.float4_e2m1fn, None),
    ("F6_E2M3", 64, ml_dtypes.float6_e2m3fn, None),
    ("F6_E3M2", 64, ml_dtypes.float6_e3m2fn, None),
]


def hexes(a):
    return [f"{int(x):0{a.dtype.itemsize * 2}x}" for x in a]


def codes_fixture():
    out = {
        "generator": "scripts/gen_quant_fixtures.py",
        "ml_dtypes": ml_dtypes.__version__,
        "torch": torch.__version__.split("+")[0],
        "dtypes": {},
    }
    for name, n, mld, td in DTYPES:
        codes = np.arange(n, dtype=np.uint8)
        a = codes.view(mld)
        with np.errstate(over="ignore", under="ignore"):
            entry = {
                "ml_dtypes": {
                    "f32": hexes(a.astype(np.float32).view(np.uint32)),
                    "bf16": hexes(a.astype(ml_dtypes.bfloat16).view(np.uint16)),
                    "f16": hexes(a.astype(np.float16).view(np.uint16)),
                }
            }
        if td is not None:
            t = torch.from_numpy(codes.copy()).view(td)
            entry["torch"] = {
                "f32": hexes(t.float().view(torch.int32).numpy().view(np.uint32)),
                "bf16": hexes(t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)),
                "f16": hexes(t.to(torch.float16).view(torch.int16).numpy().view(np.uint16)),
            }
        out["dtypes"][name] = entry
    return {"codes.json": json.dumps(out, indent=1) + "\n"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    files = {}
    files.update(codes_fixture())
    try:
        from _quant_layouts import layout_fixtures  # noqa: F401
    except ImportError:
        layout_fixtures = None
    if layout_fixtures is not None:
        files.update(layout_fixtures())
    bad = []
    for rel, data in sorted(files.items()):
        path = os.path.join(OUT, rel)
        raw = data.encode() if isinstance(data, str) else data
        if args.check:
            if not os.path.exists(path) or open(path, "rb").read() != raw:
                bad.append(rel)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(raw)
    if bad:
        sys.exit(f"fixtures differ from the generator: {bad}")
    print(f"{'checked' if args.check else 'wrote'} {len(files)} files under {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
