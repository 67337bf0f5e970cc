#!/usr/bin/env bash
# Builds the Python package `tensorseal` (crates/tensorseal-python) and
# installs it into the virtual environment given as first argument
# (default: .venv). Rebuilds are incremental (cargo's target/ is reused).
#   PROFILE=dev scripts/build-python.sh VENV   debug build (faster to compile)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$(cd "${1:-$root/.venv}" && pwd)
cd "$root"
profile=${PROFILE:-release}
args=(--release)
[ "$profile" = "dev" ] && args=()
# maturin develop installs into the active environment, found via VIRTUAL_ENV.
VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" \
  "$venv/bin/maturin" develop --quiet "${args[@]}" >&2
"$venv/bin/python" -c 'import tensorseal, sys; print("tensorseal", tensorseal.__version__, "installed in", sys.prefix)' >&2
