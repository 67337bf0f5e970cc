#!/usr/bin/env python3
"""Measures what `import tensorseal` costs, with `python -X importtime`.

Runs a fresh interpreter N times (default 15), reads the cumulative time
of the top-level `tensorseal` entry from its -X importtime report, and
prints the median and minimum next to the same for `import safetensors`.
Also lists the modules `import tensorseal` loads that were not loaded
before it (typing, ctypes, numpy and torch must not be among them).

Bytecode is written and cached first (PYTHONDONTWRITEBYTECODE is ignored
here): an installed wheel ships compiled bytecode, and compiling the
sources on every import would measure the compiler instead.

Exit status 1 when the median exceeds --limit-ms (default 5) or a heavy
module is loaded, so CI or a person can run it; it is a benchmark script,
not a unit test, because timing depends on the machine.

Usage: python scripts/check_import_time.py [--runs 15] [--limit-ms 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

HEAVY = ("typing", "ctypes", "numpy", "torch", "ml_dtypes")
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def cumulative_us(module: str) -> int:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
        env=ENV,
    )
    for line in proc.stderr.splitlines():
        # "import time: self [us] | cumulative | imported package"
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1])
    raise SystemExit(f"no importtime entry for {module}:\n{proc.stderr}")


def new_modules() -> list:
    code = (
        "import sys; before = set(sys.modules); import tensorseal; "
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=ENV).stdout
    return out.split()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--limit-ms", type=float, default=5.0)
    args = ap.parse_args()
    ok = True
    for module in ("tensorseal", "safetensors"):
        try:
            cumulative_us(module)  # writes the bytecode cache
            times = [cumulative_us(module) / 1000 for _ in range(args.runs)]
        except subprocess.CalledProcessError:
            print(f"{module}: not importable")
            continue
        med = statistics.median(times)
        print(f"import {module}: median {med:.2f} ms, min {min(times):.2f} ms over {args.runs} runs")
        if module == "tensorseal" and med > args.limit_ms:
            print(f"  over the {args.limit_ms} ms limit")
            ok = False
    mods = new_modules()
    heavy = [m for m in mods if m.split(".")[0] in HEAVY]
    print("modules `import tensorseal` loads:", ", ".join(mods))
    if heavy:
        print("  heavy modules loaded:", ", ".join(heavy))
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
