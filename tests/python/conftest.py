"""Shared pytest fixtures: where the tensorseal binary is, scratch folders.

The binary is built before pytest runs (scripts/test.sh does
`cargo build --bin tensorseal` and exports TENSORSEAL_BIN); the tests never
build it themselves.
"""

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tensorseal_bin() -> pathlib.Path:
    """Path of the tensorseal CLI named by TENSORSEAL_BIN."""
    path = os.environ.get("TENSORSEAL_BIN")
    if not path:
        pytest.fail(
            "TENSORSEAL_BIN is not set: build the CLI first (cargo build --bin tensorseal) and run "
            "with TENSORSEAL_BIN=$PWD/target/debug/tensorseal, or run scripts/test.sh",
            pytrace=False,
        )
    p = pathlib.Path(path)
    if not p.is_file() or not os.access(p, os.X_OK):
        pytest.fail(f"TENSORSEAL_BIN={path} is not an executable file; build it with cargo build --bin tensorseal", pytrace=False)
    return p


@pytest.fixture
def run_cli(tensorseal_bin):
    """Runs the CLI; returns the CompletedProcess (text mode)."""

    def run(*args, check=False, **kw):
        return subprocess.run(
            [str(tensorseal_bin), *map(str, args)],
            capture_output=True,
            text=True,
            check=check,
            **kw,
        )

    return run
