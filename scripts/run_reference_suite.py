#!/usr/bin/env python3
"""Runs the reference ``safetensors`` package's own Python tests against
tensorseal, through ``tensorseal.install_as_safetensors()``.

The tests are not part of this repository: they are taken at run time from
the reference's source distribution on PyPI (the version pinned in
requirements-test.txt), downloaded with pip and cached under
``target/reference-suite/`` (git-ignored). They run in a subprocess whose
``import safetensors`` gives tensorseal, in a scratch working directory laid out like
the reference's bindings/python (the tests write files into ./ and
./tests/data).

The tensorflow and flax comparison modules run only when their framework is
importable; otherwise they are listed as not run (the reference's own suite
fails to import them then). The paddle and mlx modules always run, and skip
their tests without the framework (mlx exists only on macOS). Tests the reference skips by itself (no GPU, no s3 access) stay
skipped. Any failure or error fails the script.

    scripts/run_reference_suite.py [--python PY] [--reference] [-- PYTEST_ARGS...]

``--reference`` runs the same tests against the real ``safetensors`` (to
compare counts). If the download fails (no network), the script says so and
exits 0 without running anything, unless ``TENSORSEAL_REQUIRE_REFERENCE=1``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "target" / "reference-suite"

#: Test modules that import a framework unconditionally (and so fail to
#: import without it): module -> imports needed. test_paddle_comparison and
#: test_mlx_comparison import theirs only where available and skip otherwise
#: (mlx exists only on macOS), so they always run.
FRAMEWORK_MODULES = {
    "test_flax_comparison.py": ["jax", "flax"],
    "test_tf_comparison.py": ["tensorflow", "h5py"],
}


def pinned_version() -> str:
    for line in (ROOT / "requirements-test.txt").read_text().splitlines():
        m = re.match(r"\s*safetensors==([\w.]+)", line)
        if m:
            return m.group(1)
    raise SystemExit("requirements-test.txt does not pin safetensors")


def fetch_tests(python: str, version: str) -> Path | None:
    """The extracted ``bindings/python/tests`` directory, or None when the
    sdist cannot be downloaded."""
    dest = CACHE / f"safetensors-{version}-tests"
    if (dest / "test_simple.py").is_file():
        return dest
    CACHE.mkdir(parents=True, exist_ok=True)
    sdist = CACHE / f"safetensors-{version}.tar.gz"
    if not sdist.is_file():
        # The sdist of safetensors only: `--no-binary :all:` would also build
        # its build backend (maturin) from source to prepare metadata, which
        # took minutes of every fresh CI run; 2.5 s this way.
        cmd = [python, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", "safetensors",
               "--dest", str(CACHE), f"safetensors=={version}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0 or not sdist.is_file():
            print(f"could not download the safetensors {version} sdist:\n{r.stderr.strip()}", file=sys.stderr)
            return None
    prefix = f"safetensors-{version}/bindings/python/tests/"
    tmp = Path(tempfile.mkdtemp(dir=CACHE))
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix) and (m.isfile() or m.isdir())]
        for m in members:
            m.name = m.name[len(prefix):] or "."
        tar.extractall(tmp, members=members, filter="data")
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


def importable(python: str, names: list[str]) -> bool:
    code = "import importlib.util, sys; sys.exit(any(importlib.util.find_spec(n) is None for n in sys.argv[1:]))"
    return subprocess.run([python, "-c", code, *names]).returncode == 0


RUNNER = """
import sys
if sys.argv[1] == "tensorseal":
    import tensorseal
    tensorseal.install_as_safetensors()
import safetensors, pytest
print("safetensors resolves to", safetensors.__name__, getattr(safetensors, "__file__", ""), flush=True)
sys.exit(pytest.main(sys.argv[2:]))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=os.environ.get("TENSORSEAL_PYTHON", sys.executable))
    ap.add_argument("--reference", action="store_true", help="run against the real safetensors")
    ap.add_argument("pytest_args", nargs="*")
    args = ap.parse_args()

    version = pinned_version()
    tests = fetch_tests(args.python, version)
    if tests is None:
        if os.environ.get("TENSORSEAL_REQUIRE_REFERENCE") == "1":
            return 1
        print("SKIPPED: the reference suite was not run (download failed)", file=sys.stderr)
        return 0

    modules, not_run = [], []
    for path in sorted(tests.glob("test_*.py")):
        need = FRAMEWORK_MODULES.get(path.name, [])
        if need and not importable(args.python, need):
            not_run.append(f"{path.name} (needs {', '.join(need)}, not installed)")
        else:
            modules.append(str(path))

    # Tests that need a GPU without being marked to skip when there is none.
    gpu_only = ["test_paddle_comparison.py::WithOpenCase::test_paddle_tensor_gpu",
                "test_paddle_comparison.py::WithOpenCase::test_paddle_slice_gpu"]
    deselect = []
    if not os.environ.get("TENSORSEAL_REFERENCE_GPU"):
        deselect = ["-k", " and ".join(f"not {t.rsplit('::', 1)[1]}" for t in gpu_only)]
        for t in gpu_only:
            not_run.append(f"{t} (needs a GPU; set TENSORSEAL_REFERENCE_GPU=1 where there is one)")

    target = "safetensors" if args.reference else "tensorseal"
    with tempfile.TemporaryDirectory(prefix="tensorseal-refsuite-") as work:
        report = Path(work) / "report.xml"
        # The tests expect to run from bindings/python, writing into tests/data.
        (Path(work) / "tests" / "data").mkdir(parents=True)
        cmd = [args.python, "-c", RUNNER, target, "-q", "-p", "no:cacheprovider", "--continue-on-collection-errors",
               f"--rootdir={tests}", f"--junitxml={report}", *deselect, *modules, *args.pytest_args]
        r = subprocess.run(cmd, cwd=work)
        counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
        if report.is_file():
            for suite in ET.parse(report).getroot().iter("testsuite"):
                tests_n = int(suite.get("tests", 0))
                failed, errors, skipped = (int(suite.get(k, 0)) for k in ("failures", "errors", "skipped"))
                counts["failed"] += failed
                counts["errors"] += errors
                counts["skipped"] += skipped
                counts["passed"] += tests_n - failed - errors - skipped
    if not report.is_file():
        print(f"\nthe pytest process ended with status {r.returncode} before writing its report "
              "(a negative status is the signal that killed it)", file=sys.stderr)
    print(f"\nreference suite (safetensors {version} sdist) against {target}: "
          f"{counts['passed']} passed, {counts['failed']} failed, {counts['errors']} errors, "
          f"{counts['skipped']} skipped (by the tests themselves: no GPU, no s3)", file=sys.stderr)
    for m in not_run:
        print(f"  not run: {m}", file=sys.stderr)
    if r.returncode not in (0,) or counts["failed"] or counts["errors"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
