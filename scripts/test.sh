#!/usr/bin/env bash
# Runs every test of tensorseal on a fresh machine: installs what the tests
# need (a Python virtual environment with the reference packages), checks
# formatting, lints and docs, runs the Rust tests, builds the fuzz targets and
# runs the Python tests (interop with safetensors, torch, numpy, model-signing)
# and the reference safetensors' own Python tests against tensorseal.
#
#   scripts/test.sh            everything
#   QUICK=1 scripts/test.sh    skip fmt/clippy/doc/fuzz build
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
step() { printf '\n==> %s\n' "$*" >&2; }

step "Python environment"
venv=$(scripts/setup-venv.sh)
export TENSORSEAL_PYTHON="$venv/bin/python"

if [ -z "${QUICK:-}" ]; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy"
  cargo clippy --workspace --all-targets --locked -- -D warnings
  step "cargo doc"
  RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
fi

step "cargo build (CLI and the format_tool example, for pytest)"
cargo build --locked --bin tensorseal
cargo build --locked -p tensorseal-format --example format_tool
export TENSORSEAL_BIN="$root/target/debug/tensorseal"
export TENSORSEAL_FORMAT_TOOL="$root/target/debug/examples/format_tool"

step "cargo test"
cargo test --workspace --locked

if [ -z "${QUICK:-}" ] && [ -f fuzz/Cargo.toml ]; then
  step "build fuzz targets (stable toolchain, uninstrumented: proves they compile)"
  cargo build --manifest-path fuzz/Cargo.toml --locked --bins
  step "replay fuzz regression inputs and seeds"
  for t in $(cargo metadata --manifest-path fuzz/Cargo.toml --no-deps --format-version 1 | "$TENSORSEAL_PYTHON" -c 'import json,sys; print(" ".join(t["name"] for p in json.load(sys.stdin)["packages"] for t in p["targets"] if "bin" in t["kind"]))'); do
    for d in fuzz/regressions/"$t" fuzz/seeds/"$t"; do
      [ -d "$d" ] || continue
      for f in "$d"/*; do "fuzz/target/debug/$t" "$f" >/dev/null 2>&1 || { echo "fuzz input $f crashed $t" >&2; exit 1; }; done
    done
  done
fi

if [ -x scripts/build-python.sh ]; then
  step "build and install the Python package"
  scripts/build-python.sh "$venv"
fi

step "pytest"
"$venv/bin/python" -m pytest -q tests/python

step "GPU tests (tests/gpu: skipped, with the reason, where torch sees no GPU)"
"$venv/bin/python" -m pytest -q -rs tests/gpu

step "the reference safetensors' own Python tests, through tensorseal.install_as_safetensors()"
# Downloads the reference's sdist from PyPI (cached in target/reference-suite);
# says SKIPPED and goes on if it cannot be downloaded.
"$venv/bin/python" scripts/run_reference_suite.py --python "$venv/bin/python"
