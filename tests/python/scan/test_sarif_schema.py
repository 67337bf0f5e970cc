"""`scan --format sarif` against the SARIF 2.1.0 JSON schema (OASIS, fetched by
scripts/fetch_sarif_schema.py) and against what GitHub code scanning needs of a result:
a region with `startLine`, a `partialFingerprints` entry, and a location for findings in
archive members."""

import copy
import json
import pathlib
import urllib.parse

import jsonschema
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
SCHEMA = json.loads((ROOT / "tests" / "fixtures" / "sarif" / "sarif-schema-2.1.0.json").read_text())
CORPUS = ROOT / "tests" / "fixtures" / "scan"
ADVERSARIAL = ROOT / "tests" / "fixtures" / "adversarial"
KEY = "tensorsealFinding/v1"


def sarif(run_cli, *paths):
    r = run_cli("scan", "--format", "sarif", *paths)
    assert r.returncode in (0, 1, 2), r.stderr
    return json.loads(r.stdout)


def test_schema_fixture_is_the_pinned_one():
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fetch_sarif_schema.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    "paths",
    [
        [CORPUS / "malicious"],
        [CORPUS / "benign"],
        [ADVERSARIAL],
    ],
    ids=["malicious", "benign", "adversarial"],
)
def test_valid_sarif_that_github_accepts(run_cli, paths):
    log = sarif(run_cli, *paths)
    jsonschema.Draft4Validator.check_schema(SCHEMA)
    errors = sorted(jsonschema.Draft4Validator(SCHEMA).iter_errors(log), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])
    results = log["runs"][0]["results"]
    members = 0
    for res in results:
        loc = res["locations"][0]
        phys = loc["physicalLocation"]
        assert phys["artifactLocation"]["uri"]
        assert phys["region"]["startLine"] == 1
        fp = res["partialFingerprints"][KEY]
        assert len(fp) == 32 and int(fp, 16) >= 0
        if res["properties"].get("member"):
            members += 1
            # The archive is the physical location; the member is a logical one.
            name = loc["logicalLocations"][0]["fullyQualifiedName"]
            uri = phys["artifactLocation"]["uri"]
            archive = name[: len(name) - len("!".join(res["properties"]["member"])) - 1]
            assert name == archive + "!" + "!".join(res["properties"]["member"])
            assert urllib.parse.unquote(uri).removeprefix("file://") == archive
    if paths[0] != CORPUS / "benign":
        assert results and members, "the corpus has findings in archive members"


def test_the_schema_rejects_what_it_should(run_cli):
    log = sarif(run_cli, CORPUS / "malicious")
    validator = jsonschema.Draft4Validator(SCHEMA)
    assert validator.is_valid(log)
    for breaks in (
        lambda r: r.pop("message"),
        lambda r: r["locations"][0]["physicalLocation"]["region"].update(startLine=0),
        lambda r: r.update(partialFingerprints={"x": 1}),
        lambda r: r.update(level="critical"),
    ):
        bad = copy.deepcopy(log)
        breaks(bad["runs"][0]["results"][0])
        assert not validator.is_valid(bad)


def test_fingerprints_are_stable_across_runs(run_cli):
    a = sarif(run_cli, CORPUS / "malicious")["runs"][0]["results"]
    b = sarif(run_cli, CORPUS / "malicious")["runs"][0]["results"]
    fa = [r["partialFingerprints"][KEY] for r in a]
    assert fa == [r["partialFingerprints"][KEY] for r in b]
    # One alert per finding: no two results of a run share an identity.
    assert len(set(fa)) == len(fa)
