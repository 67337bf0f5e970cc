"""A real client: Hugging Face ``transformers`` saving and loading models with
``save_pretrained`` / ``from_pretrained`` while ``import safetensors`` gives
tensorseal (``tensorseal.install_as_safetensors()``, the one line the README
documents), against the same calls with the reference ``safetensors``.

Models are built from tiny configs with fixed seeds (no hub access): a BERT,
and a GPT-2 with tied input/output embeddings saved in several shards
(``max_shard_size``). Each side runs in a fresh interpreter, so the alias is
installed before transformers imports anything.

Checked: every file written is byte-identical to the reference's; a model
loaded by either library from either library's files gives outputs identical
to the model saved; tied embeddings stay tied; in the aliased process,
transformers really called tensorseal.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("transformers")

SCRIPT = textwrap.dedent(
    r'''
    import json, os, sys
    use_tensorseal, action, model_dir, out = sys.argv[1] == "1", sys.argv[2], sys.argv[3], sys.argv[4]
    if use_tensorseal:
        import tensorseal; tensorseal.install_as_safetensors()

    calls = []
    if use_tensorseal:
        # Record that transformers' calls land in tensorseal (patched before
        # transformers imports, and so binds, these functions).
        import tensorseal.torch as tt, tensorseal._open as to
        for mod, name in [(tt, "save_file"), (tt, "load_file"), (to.safe_open, "get_slice"), (to.safe_open, "get_tensor")]:
            orig = getattr(mod, name)
            def wrapped(*a, __orig=orig, __name=name, **k):
                calls.append(__name)
                return __orig(*a, **k)
            setattr(mod, name, wrapped)

    import safetensors, safetensors.torch, torch, transformers
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    report = {"safetensors": safetensors.__name__, "torch_module": safetensors.torch.__name__}

    def build(kind):
        torch.manual_seed(0)
        if kind == "bert":
            cfg = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=37, max_position_embeddings=64)
            return BertModel(cfg)
        cfg = GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=2, n_positions=64, tie_word_embeddings=True)
        return GPT2LMHeadModel(cfg)

    def outputs(model):
        model.eval()
        ids = torch.arange(1, 13).reshape(2, 6) % 99
        with torch.no_grad():
            o = model(input_ids=ids)
        t = o.last_hidden_state if hasattr(o, "last_hidden_state") else o.logits
        return t.flatten().tolist()

    for top in model_dir.split(os.pathsep):
      for kind in ["bert", "gpt2"]:
        d = os.path.join(top, kind)
        if action == "save":
            m = build(kind)
            shard = "20KB" if kind == "gpt2" else "5GB"
            m.save_pretrained(d, max_shard_size=shard)
            report[kind] = outputs(m)
        else:
            cls = BertModel if kind == "bert" else GPT2LMHeadModel
            m = cls.from_pretrained(d)
            report[top + ":" + kind] = outputs(m)
            if kind == "gpt2":
                report[top + ":tied"] = m.lm_head.weight.data_ptr() == m.transformer.wte.weight.data_ptr()
    report["calls"] = sorted(set(calls))
    with open(out, "w") as f:
        json.dump(report, f)
    '''
)


def run(tmp_path, use_tensorseal, action, model_dir):
    out = tmp_path / f"report-{int(use_tensorseal)}-{action}.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, "1" if use_tensorseal else "0", action, str(model_dir), str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(out.read_text())


def files(d):
    return sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs)


def test_transformers_save_pretrained_and_from_pretrained_through_the_alias(tmp_path):
    ours_dir, ref_dir = tmp_path / "ours", tmp_path / "ref"
    saved_ours = run(tmp_path, True, "save", ours_dir)
    saved_ref = run(tmp_path, False, "save", ref_dir)
    assert saved_ours["safetensors"] == "tensorseal" and saved_ours["torch_module"] == "tensorseal.torch"
    assert saved_ref["safetensors"] == "safetensors"
    assert "save_file" in saved_ours["calls"]

    # Same models (same seeds), same files, byte for byte; GPT-2 is sharded.
    assert saved_ours["bert"] == saved_ref["bert"] and saved_ours["gpt2"] == saved_ref["gpt2"]
    assert files(ours_dir) == files(ref_dir)
    gpt2_shards = [f for f in files(ours_dir / "gpt2") if f.endswith(".safetensors")]
    assert len(gpt2_shards) > 1 and "model.safetensors.index.json" in files(ours_dir / "gpt2")
    for f in files(ours_dir):
        assert (ours_dir / f).read_bytes() == (ref_dir / f).read_bytes(), f

    # Loading: each library, each library's files; outputs identical to the saved models'.
    for use_tensorseal in (True, False):
        loaded = run(tmp_path, use_tensorseal, "load", f"{ours_dir}{os.pathsep}{ref_dir}")
        for d in (ours_dir, ref_dir):
            assert loaded[f"{d}:bert"] == saved_ref["bert"], (use_tensorseal, d)
            assert loaded[f"{d}:gpt2"] == saved_ref["gpt2"], (use_tensorseal, d)
            assert loaded[f"{d}:tied"] is True
        if use_tensorseal:
            assert loaded["safetensors"] == "tensorseal"
            assert {"get_slice", "get_tensor", "load_file"} & set(loaded["calls"]), loaded["calls"]
