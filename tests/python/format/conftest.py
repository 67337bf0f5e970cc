"""Fixtures for the format interop tests: the `format_tool` example binary."""

import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def format_tool() -> pathlib.Path:
    """Builds (if needed) and returns crates/tensorseal-format/examples/format_tool."""
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    subprocess.run(
        ["cargo", "build", "--quiet", "-p", "tensorseal-format", "--example", "format_tool"],
        cwd=ROOT,
        check=True,
    )
    return target / "debug" / "examples" / "format_tool"


@pytest.fixture
def tool(format_tool):
    """Runs format_tool; returns parsed JSON stdout, or raises with stderr."""

    def run(*args):
        p = subprocess.run([str(format_tool), *map(str, args)], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"format_tool {args} failed ({p.returncode}): {p.stderr}")
        return json.loads(p.stdout) if p.stdout.strip() else None

    return run
