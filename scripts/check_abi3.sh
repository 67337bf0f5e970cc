#!/usr/bin/env bash
# Builds the stable-ABI wheel (`maturin build --release --features abi3`,
# tag cp39-abi3) and runs the Python API tests against it under the given
# interpreter, in a fresh virtual environment. Not part of scripts/test.sh
# (it downloads torch per interpreter); run it per CPython you ship to:
#
#   scripts/check_abi3.sh /root/.pyenv/versions/3.9.18/bin/python
#   scripts/check_abi3.sh python3.13 [pytest args...]
#
# With CPython < 3.10 the reference safetensors is 0.7 and torch older than
# the pinned ones, so tests that compare with the newest reference fail
# there with the default (version-specific) build alike.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python=${1:?usage: scripts/check_abi3.sh PYTHON [pytest args...]}
shift
work=$(mktemp -d "${TMPDIR:-/tmp}/tensorseal-abi3.XXXXXX")
trap 'rm -rf "$work"' EXIT
maturin=${MATURIN:-maturin}
command -v "$maturin" >/dev/null || maturin="$root/.venv/bin/maturin"
"$maturin" build --release --features abi3 -i "$python" -o "$work/wheels" >&2
wheel=$(ls "$work"/wheels/tensorseal-*-cp39-abi3-*.whl)
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q numpy torch safetensors pytest hypothesis fsspec "$wheel"
"$work/venv/bin/python" -c 'import tensorseal._tensorseal as n; assert not n.BUFFER_PROTOCOL, "not the abi3 build"'
# From outside the source tree, so that the installed wheel is what is tested.
cd "$work"
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider "$root/tests/python/api" "$@"
