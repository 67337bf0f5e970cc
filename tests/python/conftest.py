"""Shared pytest fixtures: where the tensorseal binary is, scratch folders."""

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tensorseal_bin() -> pathlib.Path:
    """Path of the tensorseal CLI built by scripts/test.sh (or TENSORSEAL_BIN)."""
    path = os.environ.get("TENSORSEAL_BIN")
    if path:
        return pathlib.Path(path)
    subprocess.run(["cargo", "build", "--quiet", "--bin", "tensorseal"], cwd=ROOT, check=True)
    return ROOT / "target" / "debug" / "tensorseal"


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
