#!/usr/bin/env bash
# Creates (or refreshes) the Python virtual environment the tests use and
# prints its path. Idempotent: skips pip when requirements are unchanged.
#   TENSORSEAL_VENV  where to put it (default: .venv in the repository root)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${TENSORSEAL_VENV:-$root/.venv}
py=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  echo "creating virtual environment in $venv" >&2
  "$py" -m venv "$venv"
fi
stamp="$venv/.tensorseal-requirements"
if ! cmp -s "$root/requirements-test.txt" "$stamp" 2>/dev/null; then
  echo "installing test requirements into $venv" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q -r "$root/requirements-test.txt" >&2
  cp "$root/requirements-test.txt" "$stamp"
fi
echo "$venv"
