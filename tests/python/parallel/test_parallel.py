"""Tensor- and pipeline-parallel loading and saving with real ranks: world
sizes 1-4 as CPU processes over torch.distributed (gloo), on a checkpoint
written by transformers' save_pretrained of a tiny Llama in several shards."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from safetensors.torch import load_file as ref_load_file  # noqa: E402
from safetensors.torch import save_file as ref_save_file  # noqa: E402

import tensorseal.numpy as tn  # noqa: E402
import tensorseal.torch as tt  # noqa: E402

HERE = pathlib.Path(__file__).parent
PLAN = HERE / "plan.json"
PAGE = 4096


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    # Sizes chosen so that 3 and 4 ranks split unevenly (tensor_split rule).
    cfg = LlamaConfig(
        vocab_size=250, hidden_size=64, intermediate_size=100, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    out = tmp_path_factory.mktemp("llama")
    model.save_pretrained(out, max_shard_size="60KB")
    shards = sorted(p.name for p in out.glob("model-*.safetensors"))
    assert len(shards) > 2, shards
    return out


def full_tensors(ckpt):
    out = {}
    for f in sorted(ckpt.glob("model-*.safetensors")):
        out.update(ref_load_file(f))
    return out


WORLDS = (1, 2, 3, 4)


@pytest.fixture(scope="module")
def worlds(ckpt, tmp_path_factory):
    """Runs every world size at once (10 processes; process start-up, not
    I/O, is the cost) and returns {world: (outdir, reports)}."""
    tmp = tmp_path_factory.mktemp("ranks")
    env = dict(os.environ, OMP_NUM_THREADS="1", RAYON_NUM_THREADS="2")
    procs = {}
    for world in WORLDS:
        out = tmp / f"w{world}"
        out.mkdir()
        init = tmp / f"init{world}"
        procs[world] = (out, [
            subprocess.Popen(
                [sys.executable, str(HERE / "_worker.py"), str(r), str(world), str(init), str(ckpt), str(PLAN), str(out)],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            for r in range(world)
        ])
    results = {}
    for world, (out, ps) in procs.items():
        logs = []
        for p in ps:
            try:
                logs.append(p.communicate(timeout=150)[0])
            except subprocess.TimeoutExpired:
                for _, qs in procs.values():
                    for q in qs:
                        q.kill()
                pytest.fail(f"world {world}: a rank hung")
        failed = [f"rank {r} of {world} failed:\n{logs[r]}" for r, p in enumerate(ps) if p.returncode != 0]
        results[world] = (out, failed or [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)])
    return results


@pytest.mark.parametrize("world", WORLDS)
def test_ranks_load_save_and_fail_together(ckpt, worlds, world, tmp_path):
    out, reports = worlds[world]
    assert all(isinstance(r, dict) for r in reports), "\n".join(map(str, reports))
    full = full_tensors(ckpt)
    total = sum(t.numel() * t.element_size() for t in full.values())
    header_total = reports[0]["stats"]["header_bytes"]
    for rep in reports:
        assert rep["errors"] == [], rep["errors"]
        st = rep["stats"]
        # The library's count is exactly the share ...
        assert st["data_bytes"] == rep["share"]
        # ... and the process's own I/O counter agrees: at least the share,
        # at most share + headers + one page per run.
        assert rep["share"] <= rep["rchar"] <= rep["share"] + st["header_bytes"] + PAGE * st["runs"], rep
    # Shares add up to the checkpoint, plus the replicated norms.
    shares = sum(r["share"] for r in reports)
    norms = sum(t.numel() * t.element_size() for n, t in full.items() if "norm" in n)
    assert shares == total + (world - 1) * norms
    assert header_total > 0
    # Collective mode: each byte read once across all ranks.
    assert sum(r["collective_bytes"] for r in reports) == total
    # Pipeline stages: 3 layers over 2 stages -> [0, 1] and [2].
    if world in (2, 4):
        for r in reports:
            assert r["stage_layers"] == ([0, 1] if r["stage"] == 0 else [2])
            assert r["stage_non_layer"] == ([] if r["stage"] else sorted(n for n in full if ".layers." not in n))
    # Saved without gathering: byte-identical to the reference's save_file.
    ref = tmp_path / "ref.safetensors"
    ref_save_file(full, ref)
    assert (out / "saved.safetensors").read_bytes() == ref.read_bytes()
    # The sharded variant: save_pretrained names, and the same tensors.
    names = sorted(p.name for p in (out / "saved_dir").iterdir())
    n = len(names) - 1
    assert n > 1 and names[-1] == "model.safetensors.index.json", names
    assert names[:-1] == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    back = tt.load_sharded(out / "saved_dir", {"rules": []}, 0, 1)
    assert sorted(back) == sorted(full) and all(torch.equal(back[k], full[k]) for k in full)
    # A failing rank makes every rank raise, with the culprit's message.
    for key, culprit, own in (("missing", world - 1, "FileNotFoundError"), ("bad_plan", 0, "SafetensorError")):
        for r in reports:
            if r["rank"] == culprit or world == 1:
                assert r[key].startswith(own), r[key]
            else:
                assert r[key].startswith("RankError") and f"rank {culprit}" in r[key], r[key]


def test_numpy_and_rank_slice_match_torch(ckpt):
    full = full_tensors(ckpt)
    for world in (3,):
        for rank in range(world):
            a = tn.load_sharded(ckpt, PLAN, rank, world)
            b = tt.load_sharded(ckpt, str(PLAN), rank, world)
            assert sorted(a) == sorted(b)
            for name, arr in a.items():
                assert (torch.from_numpy(arr.copy()) == b[name]).all()
                sl = tt.rank_slice(PLAN, name, list(full[name].shape), rank, world)
                assert torch.equal(full[name][sl], b[name])


def test_plan_forms_and_callables(ckpt):
    full = full_tensors(ckpt)
    seen = []

    def rule(name, shape, rank, world):
        seen.append((name, tuple(shape), rank, world))
        return ("shard", -1)

    got = tt.load_sharded(ckpt, [("*q_proj.weight", rule), {"pattern": "*", "rule": "skip"}], 1, 2)
    assert sorted(got) == sorted(n for n in full if n.endswith("q_proj.weight"))
    assert all(s[2:] == (1, 2) for s in seen) and len(seen) == len(got)
    for n, t in got.items():
        assert torch.equal(t, torch.tensor_split(full[n], 2, dim=-1)[1])
    with pytest.raises(tt.SafetensorError, match="explode"):
        tt.load_sharded(ckpt, [("*", "explode")], 0, 1)
    with pytest.raises(tt.SafetensorError, match="returned"):
        tt.load_sharded(ckpt, [("*", lambda *a: 42)], 0, 1)
    with pytest.raises(tt.SafetensorError, match="no dimension 5"):
        tt.load_sharded(ckpt, [("*", ("shard", 5))], 0, 1)
    with pytest.raises(tt.SafetensorError, match="rank 2 is out of range"):
        tt.load_sharded(ckpt, [], 2, 2)
