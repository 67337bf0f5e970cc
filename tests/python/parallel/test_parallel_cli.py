"""`tensorseal inspect --plan` and `tensorseal split --plan`."""

import json

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file as ref_load_file  # noqa: E402
from safetensors.torch import save_file as ref_save_file  # noqa: E402

PLAN = {"rules": [{"pattern": "w*", "rule": {"shard": 0}}, {"pattern": "o", "rule": {"shard": 1}},
                  {"pattern": "skip", "rule": "skip"}]}


@pytest.fixture
def model(tmp_path):
    full = {
        "w1": torch.arange(70, dtype=torch.float32).reshape(7, 10),
        "o": torch.arange(30, dtype=torch.float16).reshape(3, 10),
        "norm": torch.ones(4),
        "skip": torch.zeros(2),
    }
    path = tmp_path / "m.safetensors"
    ref_save_file(full, path)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(PLAN))
    return full, path, plan


def test_inspect_plan_reports_each_rank(run_cli, model):
    full, path, plan = model
    r = run_cli("inspect", path, "--plan", plan, "--world-size", 3, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["world_size"] == 3 and doc["tensors"] == 4
    for rank, row in enumerate(doc["ranks"]):
        want = (
            torch.tensor_split(full["w1"], 3, 0)[rank].nbytes
            + torch.tensor_split(full["o"], 3, 1)[rank].nbytes
            + full["norm"].nbytes
        )
        assert row == {"rank": rank, "tensors": 3, "bytes": want, "runs": row["runs"]}
        assert row["runs"] == 1 + 3 + 1  # w1: one run; o: one per row; norm: one
    human = run_cli("inspect", path, "--plan", plan, "--world-size", 3)
    assert human.returncode == 0 and "rank\ttensors\tbytes" in human.stdout


def test_split_plan_writes_per_rank_files(run_cli, model, tmp_path):
    full, path, plan = model
    out = tmp_path / "out"
    r = run_cli("split", path, out, "--plan", plan, "--world-size", 2, "--json")
    assert r.returncode == 0, r.stderr
    files = json.loads(r.stdout)["files"]
    assert [f["rank"] for f in files] == [0, 1]
    for rank in range(2):
        got = ref_load_file(out / f"model-rank-{rank}-part-0.safetensors")
        assert sorted(got) == ["norm", "o", "w1"]
        assert torch.equal(got["w1"], torch.tensor_split(full["w1"], 2, 0)[rank])
        assert torch.equal(got["o"], torch.tensor_split(full["o"], 2, 1)[rank])


def test_bad_plan_is_a_usage_error(run_cli, model, tmp_path):
    _full, path, _plan = model
    bad = tmp_path / "bad.json"
    bad.write_text('{"rules": [{"pattern": "a[", "rule": "skip"}]}')
    r = run_cli("inspect", path, "--plan", bad, "--world-size", 2)
    assert r.returncode == 2 and "a[" in r.stderr and r.stdout == ""
    r = run_cli("inspect", path, "--plan", bad)
    assert r.returncode == 2  # --plan needs --world-size
