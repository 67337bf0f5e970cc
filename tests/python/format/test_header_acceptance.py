"""The header acceptance table of docs/header-acceptance.md, checked against both
libraries: pip safetensors (the reference) and `tensorseal inspect`. Every row of the
table is a case here and every case is a row, so the document cannot drift."""

import pathlib
import re
import struct

import pytest
from safetensors.numpy import load_file

DOC = pathlib.Path(__file__).resolve().parents[3] / "docs" / "header-acceptance.md"

ENTRY = '"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]'


def with_extra(value: str) -> str:
    """A one-tensor header whose tensor entry has an extra field `x` = value."""
    return "{" + ENTRY + ',"x":' + value + "}}"


def lists(d: int) -> str:
    return "[" * d + "]" * d


def objects(d: int) -> str:
    return '{"a":' * d + "1" + "}" * d


CASES = {
    "plain": "{" + ENTRY + "}}",
    "extra-field": with_extra('"hello"'),
    "depth-127-lists": with_extra(lists(125)),
    "depth-127-objects": with_extra(objects(125)),
    "depth-128-lists": with_extra(lists(126)),
    "depth-128-objects": with_extra(objects(126)),
    "depth-100000": with_extra(lists(100_000)),
    "unclosed-deep": with_extra("[" * 1000),
    "brackets-in-string": with_extra('"' + "[{" * 500 + '\\"]"'),
    "metadata-null": '{"__metadata__":null,' + ENTRY + "}}",
    "metadata-strings": '{"__metadata__":{"k":"v"},' + ENTRY + "}}",
    "metadata-nested-value": '{"__metadata__":{"k":' + lists(3) + "}," + ENTRY + "}}",
    "metadata-deep-200": '{"__metadata__":' + objects(200) + "," + ENTRY + "}}",
    "duplicate-tensor": "{" + ENTRY + "}," + ENTRY + "}}",
    "trailing-spaces": "{" + ENTRY + "}}" + " " * 7,
}


def table() -> dict[str, tuple[str, str]]:
    """Case id -> (reference verdict, tensorseal verdict) from the document's table."""
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\|\s*`([a-z0-9-]+)`\s*\|[^|]*\|\s*(accept|reject)\s*\|\s*(accept|reject)\s*\|", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


def test_table_and_cases_match():
    assert set(table()) == set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_both_libraries_behave_as_documented(case, tmp_path, run_cli):
    header = CASES[case].encode()
    path = tmp_path / "f.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    try:
        load_file(path)
        reference = "accept"
    except Exception:  # the reference raises SafetensorError; any error is a rejection
        reference = "reject"
    r = run_cli("inspect", path, timeout=60)
    assert r.returncode in (0, 1), r.stderr
    ours = "accept" if r.returncode == 0 else "reject"
    assert (reference, ours) == table()[case], r.stderr
    if case.startswith("depth-128") or case == "depth-100000":
        assert "nests arrays/objects 128 deep" in r.stderr
