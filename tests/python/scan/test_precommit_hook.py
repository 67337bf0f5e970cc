"""The pre-commit hook of .pre-commit-hooks.yaml, run as pre-commit runs it: its `entry`
(with the `tensorseal` command under test) followed by the staged files its `files`
pattern selects."""

import pathlib
import re
import shlex
import subprocess

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
CORPUS = ROOT / "tests" / "fixtures" / "scan"
HOOKS = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}


def staged(hook, folder):
    """Corpus files of `folder` the hook would be given (paths relative to the repository)."""
    pattern = re.compile(hook["files"])
    return sorted(
        str(p.relative_to(ROOT))
        for p in (CORPUS / folder).iterdir()
        if p.is_file() and pattern.search(str(p.relative_to(ROOT)))
    )


def run_hook(hook, tensorseal_bin, files, args=()):
    cmd = shlex.split(hook["entry"])
    assert cmd[0] == "tensorseal", "the hook runs the installed `tensorseal` command"
    return subprocess.run(
        [str(tensorseal_bin), *cmd[1:], *args, *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_hook_is_declared_for_pre_commit():
    hook = HOOKS["tensorseal-scan"]
    assert hook["language"] == "python" and hook["name"] and hook["types"] == ["file"]
    pattern = re.compile(hook["files"])
    for name in ["m.safetensors", "x/pytorch_model.bin", "a.PT", "w.npz", "c.ckpt", "t.gguf"]:
        assert pattern.search(name), name
    for name in ["README.md", "train.py", "config.json"]:
        assert not pattern.search(name), name


def test_hook_passes_benign_and_fails_malicious_files(tensorseal_bin):
    hook = HOOKS["tensorseal-scan"]
    benign = staged(hook, "benign")
    malicious = staged(hook, "malicious")
    assert len(benign) >= 20 and len(malicious) >= 40
    ok = run_hook(hook, tensorseal_bin, benign)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = run_hook(hook, tensorseal_bin, malicious)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "result: FAIL" in bad.stdout
    # Each malicious file fails on its own, as in a commit that stages only it.
    for f in ["tests/fixtures/scan/malicious/inst.pkl", "tests/fixtures/scan/malicious/torch_zip_payload.pt"]:
        assert f in malicious
        assert run_hook(hook, tensorseal_bin, [f]).returncode == 1, f


def test_hook_args_make_a_safetensors_only_gate(tensorseal_bin):
    hook = HOOKS["tensorseal-scan"]
    pt = ["tests/fixtures/scan/benign/state_dict_all_dtypes.pt"]
    assert run_hook(hook, tensorseal_bin, pt).returncode == 0
    gate = run_hook(hook, tensorseal_bin, pt, ["--policy", "safetensors-only"])
    assert gate.returncode == 1, gate.stdout
    st = ["tests/fixtures/scan/benign/model.safetensors"]
    assert run_hook(hook, tensorseal_bin, st, ["--policy", "safetensors-only"]).returncode == 0
