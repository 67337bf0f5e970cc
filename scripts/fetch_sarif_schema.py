#!/usr/bin/env python3
"""Fetches the SARIF 2.1.0 JSON schema (OASIS, errata 01) into tests/fixtures/sarif/.

The schema is the public one of the OASIS SARIF technical committee, pinned to a commit of
github.com/oasis-tcs/sarif-spec and checked against its SHA-256, so the committed fixture
is exactly what this script downloads. tests/python/scan/test_sarif_schema.py validates
`tensorseal scan --format sarif` output against it.

    python scripts/fetch_sarif_schema.py          # writes the fixture
    python scripts/fetch_sarif_schema.py --check  # verifies the committed fixture
"""

import hashlib
import pathlib
import sys
import urllib.request

COMMIT = "a560296ca8c921f3bdb8d4a8db57ab83dae968a7"
URL = (
    "https://raw.githubusercontent.com/oasis-tcs/sarif-spec/"
    f"{COMMIT}/sarif-2.1/schema/sarif-schema-2.1.0.json"
)
SHA256 = "c3b4bb2d6093897483348925aaa73af03b3e3f4bd4ca38cef26dcb4212a2682e"
OUT = (
    pathlib.Path(__file__).resolve().parent.parent
    / "tests"
    / "fixtures"
    / "sarif"
    / "sarif-schema-2.1.0.json"
)


def main() -> int:
    if "--check" in sys.argv[1:]:
        data = OUT.read_bytes()
    else:
        with urllib.request.urlopen(URL, timeout=60) as r:
            data = r.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        print(f"sha256 {digest} of {URL} is not the pinned {SHA256}", file=sys.stderr)
        return 1
    if "--check" not in sys.argv[1:]:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_bytes(data)
        print(f"wrote {OUT} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
