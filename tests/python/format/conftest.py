"""Fixtures for the format interop tests: the `format_tool` example binary."""

import json
import os
import pathlib
import subprocess

import pytest


@pytest.fixture(scope="session")
def format_tool() -> pathlib.Path:
    """crates/tensorseal-format/examples/format_tool, built before pytest runs
    (scripts/test.sh: `cargo build -p tensorseal-format --example format_tool`)
    and named by TENSORSEAL_FORMAT_TOOL."""
    path = os.environ.get("TENSORSEAL_FORMAT_TOOL")
    if not path or not pathlib.Path(path).is_file():
        pytest.fail(
            f"TENSORSEAL_FORMAT_TOOL={path!r} is not a built file: run "
            "cargo build -p tensorseal-format --example format_tool and set it to "
            "target/debug/examples/format_tool (scripts/test.sh does both)",
            pytrace=False,
        )
    return pathlib.Path(path)


@pytest.fixture
def tool(format_tool):
    """Runs format_tool; returns parsed JSON stdout, or raises with stderr."""

    def run(*args):
        p = subprocess.run([str(format_tool), *map(str, args)], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"format_tool {args} failed ({p.returncode}): {p.stderr}")
        return json.loads(p.stdout) if p.stdout.strip() else None

    return run
