"""`pip install tensorseal` installs the CLI too: the `tensorseal` console
script and `python -m tensorseal` run the same Rust code as the binary, with
the same output and exit codes, and `import tensorseal` does not load it."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
PYTHON = os.environ.get("TENSORSEAL_PYTHON", sys.executable)
TINY = ROOT / "examples" / "tiny.safetensors"
BAD = ROOT / "tests" / "fixtures" / "format" / "invalid" / "duplicate_key__tensor.safetensors"


def _script() -> pathlib.Path:
    # Console scripts are installed next to the interpreter of the environment.
    return pathlib.Path(PYTHON).parent / "tensorseal"


def _run(cmd, *args):
    return subprocess.run([*map(str, cmd), *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def _entry_points():
    script = _script()
    if not script.is_file():
        pytest.fail(f"{script} is missing: install the package (scripts/build-python.sh) first", pytrace=False)
    return {"console script": [script], "python -m": [PYTHON, "-m", "tensorseal"]}


@pytest.mark.parametrize(
    "args",
    [
        ["inspect", TINY],
        ["inspect", TINY, "--json"],
        ["inspect", BAD],
        ["inspect", ROOT / "does-not-exist"],
        ["inspect"],
        ["--version"],
        ["scan", ROOT / "tests" / "fixtures" / "scan" / "malicious" / "torch_zip_payload.pt", "--json"],
    ],
    ids=["table", "json", "invalid-file", "missing-file", "usage-error", "version", "scan"],
)
def test_same_output_and_exit_code_as_the_binary(tensorseal_bin, args):
    want = _run([tensorseal_bin], *args)
    for name, cmd in _entry_points().items():
        got = _run(cmd, *args)
        assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr), name


def test_import_does_not_load_the_cli():
    code = "import sys, tensorseal; print('tensorseal._cli' in sys.modules)"
    r = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"


def test_stdout_written_by_python_first_stays_first(tmp_path):
    # The Rust side writes to file descriptor 1; Python's buffered stdout is flushed before.
    code = "import sys; print('before'); from tensorseal._cli import main; sys.exit(main(['inspect', sys.argv[1], '--json']))"
    r = subprocess.run([PYTHON, "-c", code, str(TINY)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("before\n{")
