"""`tensorseal inspect/split/merge` on bad input: one-line errors, exit codes
1 (invalid file) and 2 (usage, I/O), never a panic."""

import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "format"


def _one_line_error(p):
    assert "panicked" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    return lines[0]


@pytest.mark.parametrize("path", sorted((FIXTURES / "invalid").iterdir()), ids=lambda p: p.stem)
def test_invalid_fixture_exit_1(run_cli, path):
    for args in (["inspect", path], ["inspect", path, "--json"]):
        p = run_cli(*args)
        assert p.returncode == 1, (path.name, p.returncode, p.stderr)
        assert p.stdout == ""
        _one_line_error(p)


@pytest.mark.parametrize("path", sorted((FIXTURES / "valid").iterdir()), ids=lambda p: p.stem)
def test_valid_fixture_inspects(run_cli, path):
    p = run_cli("inspect", path, "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert "metadata" in doc and isinstance(doc["tensors"], list)


def test_error_messages_name_the_fault(run_cli):
    p = run_cli("inspect", FIXTURES / "invalid" / "unknown_dtype__f128.safetensors")
    line = _one_line_error(p)
    assert '"F128"' in line and '"a"' in line
    p = run_cli("inspect", FIXTURES / "invalid" / "non_contiguous__gap_between.safetensors")
    assert '"b"' in _one_line_error(p)


def test_io_and_usage_errors_exit_2(run_cli, tmp_path):
    p = run_cli("inspect", tmp_path / "missing.safetensors")
    assert p.returncode == 2
    _one_line_error(p)
    p = run_cli("inspect", tmp_path)  # empty directory
    assert p.returncode == 2
    _one_line_error(p)
    p = run_cli("inspect")
    assert p.returncode == 2
    # A bad size is a usage error from the argument parser, naming the flag and the value.
    p = run_cli("split", ROOT / "examples" / "tiny.safetensors", tmp_path / "o", "--max-shard-size", "5XB")
    assert p.returncode == 2
    assert p.stderr.startswith("error: invalid value '5XB' for '--max-shard-size <SIZE>'"), p.stderr


def test_index_escaping_the_directory_is_refused(run_cli, tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": {"a": "../evil.safetensors"}})
    )
    for args in (["inspect", tmp_path], ["merge", tmp_path, tmp_path / "out.safetensors"]):
        p = run_cli(*args)
        assert p.returncode == 1
        assert "../evil.safetensors" in _one_line_error(p)
    assert not (tmp_path / "out.safetensors").exists()


def test_index_inconsistent_with_shards_is_refused(run_cli, tmp_path):
    src = ROOT / "examples" / "tiny.safetensors"
    out = tmp_path / "s"
    assert run_cli("split", src, out, "--max-shard-size", "300").returncode == 0
    index_path = out / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    # A tensor the index does not list.
    victim = sorted(index["weight_map"])[0]
    broken = dict(index, weight_map={k: v for k, v in index["weight_map"].items() if k != victim})
    index_path.write_text(json.dumps(broken))
    p = run_cli("inspect", out)
    assert p.returncode == 1 and victim in _one_line_error(p)
    # A tensor mapped to a shard that does not hold it.
    files = sorted(set(index["weight_map"].values()))
    wrong = dict(index["weight_map"])
    wrong[victim] = next(f for f in files if f != index["weight_map"][victim])
    index_path.write_text(json.dumps(dict(index, weight_map=wrong)))
    p = run_cli("merge", out, tmp_path / "m.safetensors")
    assert p.returncode == 1 and victim in _one_line_error(p)
    assert not (tmp_path / "m.safetensors").exists()


def test_no_temp_files_left_behind(run_cli, tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "missing.safetensors"}})
    )
    p = run_cli("merge", tmp_path, tmp_path / "out.safetensors")
    assert p.returncode == 2
    assert sorted(x.name for x in tmp_path.iterdir()) == ["model.safetensors.index.json"]


def test_split_over_an_older_split(run_cli, tmp_path):
    """A second split into the same directory is refused without --force; with
    it, the earlier split's files it does not overwrite are removed, so a
    loader (or inspect) never sees a mix of the two."""
    src = ROOT / "examples" / "tiny.safetensors"
    first = run_cli("split", src, tmp_path, "--max-shard-size", "300", "--json")
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["schema"] == "tensorseal-split/1"
    assert doc["total_size"] == 1236 and doc["removed"] == [] and len(doc["shards"]) == 5
    assert sum(s["bytes"] for s in doc["shards"]) == 1236
    refused = run_cli("split", src, tmp_path, "--max-shard-size", "600", "--json")
    assert refused.returncode == 2 and "--force" in _one_line_error(refused)
    assert refused.stdout == ""
    second = run_cli("split", src, tmp_path, "--max-shard-size", "600", "--json", "--force")
    assert second.returncode == 0, second.stderr
    doc2 = json.loads(second.stdout)
    written = {s["path"] for s in doc2["shards"]}
    assert sorted(doc2["removed"]) == sorted(s["path"] for s in doc["shards"] if s["path"] not in written)
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted(
        [pathlib.Path(p).name for p in written] + ["model.safetensors.index.json"]
    )
    merged = run_cli("merge", tmp_path, tmp_path / "m.safetensors", "--json")
    assert json.loads(merged.stdout) == {
        "schema": "tensorseal-merge/1",
        "path": str(tmp_path / "m.safetensors"), "shards": 3, "tensors": 9, "bytes": 1236,
    }
    again = run_cli("merge", tmp_path, tmp_path / "m.safetensors")
    assert again.returncode == 2 and "--force" in _one_line_error(again)
    assert (tmp_path / "m.safetensors").read_bytes() == src.read_bytes()


CONVERT_FIXTURES = ROOT / "tests" / "fixtures" / "convert"


@pytest.mark.parametrize(
    "name,what",
    [
        ("small.pt", "a PyTorch zip checkpoint"),
        ("every_dtype_legacy.pt", "a pickle (legacy PyTorch checkpoint"),
        ("array_f32.npy", "a NumPy .npy array"),
        ("arrays.npz", "a NumPy .npz archive"),
    ],
)
def test_checkpoints_are_named_with_what_to_do(run_cli, tmp_path, name, what):
    path = CONVERT_FIXTURES / name
    for args in (["inspect", path], ["inspect", path, "--json"], ["split", path, tmp_path / "o"], ["merge", path, tmp_path / "m.safetensors"]):
        p = run_cli(*args)
        assert p.returncode == 1, (args, p.stderr)
        line = _one_line_error(p)
        assert f"not a safetensors file: this is {what}" in line, line
        assert "convert it with `tensorseal convert`" in line, line
        assert "header length" not in line, line


def test_io_error_cause_printed_once(run_cli, tmp_path):
    line = _one_line_error(run_cli("inspect", tmp_path / "missing.safetensors"))
    assert line.count("No such file or directory") == 1, line
    assert str(tmp_path / "missing.safetensors") in line
