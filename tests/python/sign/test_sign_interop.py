"""Interop of `tensorseal sign/verify/digest` with the `model-signing` package
(`model_signing sign key` / `verify key`), in both directions."""

import base64
import json
import os
import pathlib
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec

MODEL_SIGNING = pathlib.Path(sys.executable).parent / "model_signing"
CURVES = {"p256": ec.SECP256R1, "p384": ec.SECP384R1, "p521": ec.SECP521R1}


def ms(*args, cwd=None):
    """Runs the model_signing CLI."""
    return subprocess.run(
        [str(MODEL_SIGNING), *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def make_keys(d: pathlib.Path, curve: str, name: str = "key"):
    key = ec.generate_private_key(CURVES[curve]())
    priv = d / f"{name}-{curve}.pem"
    pub = d / f"{name}-{curve}.pub.pem"
    priv.write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo))
    return key, priv, pub


def make_model(d: pathlib.Path) -> pathlib.Path:
    m = d / "model"
    files = {
        "config.json": b'{"layers": 2}\n',
        "model-00001-of-00002.safetensors": os.urandom(300_000),
        "model-00002-of-00002.safetensors": os.urandom(2_500_000),
        "tokenizer/vocab.txt": b"a\nb\nc\n",
        "tokenizer.json": b"{}",
        "a/b": b"x",
        "a.txt": b"y",
        "README.md": b"# model\n",
        ".gitattributes": b"*.safetensors filter=lfs\n",
        ".git/HEAD": b"ref: refs/heads/main\n",
    }
    for rel, data in files.items():
        p = m / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return m


def statement(sig: pathlib.Path) -> dict:
    bundle = json.loads(sig.read_text())
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))


@pytest.fixture(params=sorted(CURVES))
def curve(request):
    return request.param


@pytest.mark.parametrize("inside", [True, False], ids=["sig-inside", "sig-outside"])
def test_tensorseal_signature_passes_model_signing_verify(tmp_path, run_cli, curve, inside):
    _, priv, pub = make_keys(tmp_path, curve)
    model = make_model(tmp_path)
    sig = model / "model.sig" if inside else tmp_path / "out.sig"
    r = run_cli("sign", model, "--private-key", priv, "--signature", sig)
    assert r.returncode == 0, r.stderr
    v = ms("verify", "key", model, "--signature", sig, "--public_key", pub)
    assert v.returncode == 0, v.stderr
    assert "Verification succeeded" in v.stdout
    # And our own verifier agrees.
    r = run_cli("verify", model, "--public-key", pub, "--signature", sig)
    assert r.returncode == 0, r.stdout + r.stderr


def test_model_signing_signature_passes_tensorseal_verify(tmp_path, run_cli, curve):
    _, priv, pub = make_keys(tmp_path, curve)
    model = make_model(tmp_path)
    sig = model / "model.sig"
    s = ms("sign", "key", model, "--private_key", priv, "--signature", sig)
    assert s.returncode == 0, s.stderr
    r = run_cli("verify", model, "--public-key", pub, "--signature", sig, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["verified"] is True
    assert out["files"] == 8  # .git/ and .gitattributes ignored, model.sig too
    assert out["root_digest"] == statement(sig)["subject"][0]["digest"]["sha256"]


def test_default_signature_path_is_model_sig_in_cwd(tmp_path, run_cli):
    _, priv, pub = make_keys(tmp_path, "p256")
    model = make_model(tmp_path)
    r = run_cli("sign", "model", "--private-key", priv, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "model.sig").is_file()
    v = ms("verify", "key", "model", "--signature", "model.sig", "--public_key", pub, cwd=tmp_path)
    assert v.returncode == 0, v.stderr
    r = run_cli("verify", "model", "--public-key", pub, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # Signing from inside the model: model.sig lands in it and is ignored.
    r = run_cli("sign", ".", "--private-key", priv, cwd=model)
    assert r.returncode == 0, r.stderr
    st = statement(model / "model.sig")
    assert "model.sig" in st["predicate"]["serialization"]["ignore_paths"]
    assert st["subject"][0]["name"] == "model"
    v = ms("verify", "key", ".", "--signature", "model.sig", "--public_key", pub, cwd=model)
    assert v.returncode == 0, v.stderr


def test_statement_is_the_one_model_signing_writes(tmp_path, run_cli, curve):
    """Same statement, field for field (the ignore_paths list is a set)."""
    _, priv, _ = make_keys(tmp_path, curve)
    model = make_model(tmp_path)
    ours, theirs = model / "ours.sig", model / "theirs.sig"
    # Each signature file ignores only itself: sign both with the other absent.
    assert run_cli("sign", model, "--private-key", priv, "--signature", ours).returncode == 0
    ours.rename(tmp_path / "ours.sig")
    assert ms("sign", "key", model, "--private_key", priv, "--signature", theirs).returncode == 0
    theirs.rename(tmp_path / "theirs.sig")
    a, b = statement(tmp_path / "ours.sig"), statement(tmp_path / "theirs.sig")
    for st in (a, b):
        ser_ = st["predicate"]["serialization"]
        ser_["ignore_paths"] = sorted(p for p in ser_["ignore_paths"] if not p.endswith(".sig"))
    assert a == b
    ba = json.loads((tmp_path / "ours.sig").read_text())
    bb = json.loads((tmp_path / "theirs.sig").read_text())
    assert ba["mediaType"] == bb["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert ba["verificationMaterial"] == bb["verificationMaterial"]
    assert list(ba) == list(bb)
    assert list(ba["dsseEnvelope"]) == list(bb["dsseEnvelope"])


def flip_byte(model):
    p = model / "model-00002-of-00002.safetensors"
    data = bytearray(p.read_bytes())
    data[1_234_567] ^= 0x01
    p.write_bytes(bytes(data))
    return "changed", "model-00002-of-00002.safetensors"


def add_file(model):
    (model / "tokenizer" / "extra.bin").write_bytes(b"surprise")
    return "extra", "tokenizer/extra.bin"


def remove_file(model):
    (model / "a" / "b").unlink()
    return "missing", "a/b"


@pytest.mark.parametrize("tamper", [flip_byte, add_file, remove_file])
@pytest.mark.parametrize("signer", ["tensorseal", "model_signing"])
def test_tampering_fails_both_tools(tmp_path, run_cli, curve, tamper, signer):
    _, priv, pub = make_keys(tmp_path, curve)
    model = make_model(tmp_path)
    sig = tmp_path / "model.sig"
    if signer == "tensorseal":
        assert run_cli("sign", model, "--private-key", priv, "--signature", sig).returncode == 0
    else:
        assert ms("sign", "key", model, "--private_key", priv, "--signature", sig).returncode == 0
    kind, name = tamper(model)
    v = ms("verify", "key", model, "--signature", sig, "--public_key", pub)
    assert v.returncode != 0
    assert name in v.stderr
    r = run_cli("verify", model, "--public-key", pub, "--signature", sig)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].split()[:2] == [kind, name]
    assert "does not match" in r.stderr
    j = run_cli("verify", model, "--public-key", pub, "--signature", sig, "--json")
    assert j.returncode == 1
    out = json.loads(j.stdout)
    assert out["verified"] is False
    names = {"changed": [c["name"] for c in out["changed"]], "missing": out["missing"], "extra": out["extra"]}
    assert names[kind] == [name]
    assert sum(len(v) for v in names.values()) == 1


@pytest.mark.parametrize("signer", ["tensorseal", "model_signing"])
def test_wrong_key_fails_both_tools(tmp_path, run_cli, signer):
    _, priv, _ = make_keys(tmp_path, "p256")
    _, _, other_pub = make_keys(tmp_path, "p256", name="other")
    _, _, p384_pub = make_keys(tmp_path, "p384", name="other")
    model = make_model(tmp_path)
    sig = tmp_path / "model.sig"
    if signer == "tensorseal":
        assert run_cli("sign", model, "--private-key", priv, "--signature", sig).returncode == 0
    else:
        assert ms("sign", "key", model, "--private_key", priv, "--signature", sig).returncode == 0
    for pub in (other_pub, p384_pub):
        v = ms("verify", "key", model, "--signature", sig, "--public_key", pub)
        assert v.returncode != 0
        r = run_cli("verify", model, "--public-key", pub, "--signature", sig)
        assert r.returncode == 1, r.stderr
        assert "key mismatch" in r.stderr
        assert r.stdout == ""
        j = json.loads(run_cli("verify", model, "--public-key", pub, "--signature", sig, "--json").stdout)
        assert j["verified"] is False and j["error_kind"] == "key_mismatch"


def test_forged_statement_fails_both_tools(tmp_path, run_cli):
    """Re-encoding the payload with a new digest keeps the hint but breaks the signature."""
    _, priv, pub = make_keys(tmp_path, "p384")
    model = make_model(tmp_path)
    sig = tmp_path / "model.sig"
    assert run_cli("sign", model, "--private-key", priv, "--signature", sig).returncode == 0
    (model / "README.md").write_bytes(b"# evil\n")
    bundle = json.loads(sig.read_text())
    st = statement(sig)
    import hashlib

    for r in st["predicate"]["resources"]:
        if r["name"] == "README.md":
            r["digest"] = hashlib.sha256(b"# evil\n").hexdigest()
    root = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in st["predicate"]["resources"]))
    st["subject"][0]["digest"]["sha256"] = root.hexdigest()
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(st, indent=2).encode()).decode()
    sig.write_text(json.dumps(bundle))
    assert ms("verify", "key", model, "--signature", sig, "--public_key", pub).returncode != 0
    r = run_cli("verify", model, "--public-key", pub, "--signature", sig)
    assert r.returncode == 1
    assert "invalid signature" in r.stderr


def test_digest_is_the_signed_root_digest(tmp_path, run_cli):
    _, priv, _ = make_keys(tmp_path, "p256")
    model = make_model(tmp_path)
    sig = tmp_path / "model.sig"
    assert ms("sign", "key", model, "--private_key", priv, "--signature", sig).returncode == 0
    want = statement(sig)["subject"][0]["digest"]["sha256"]
    r = run_cli("digest", model)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == want
    import model_signing

    m = model_signing.hashing.hash(model)
    j = json.loads(run_cli("digest", model, "--json").stdout)
    assert [(x["name"], x["digest"]) for x in j["resources"]] == [
        (rd.identifier, rd.digest.digest_hex) for rd in m.resource_descriptors()
    ]
    assert j["root_digest"]["sha256"] == want


def test_ignore_paths_interop(tmp_path, run_cli):
    _, priv, pub = make_keys(tmp_path, "p256")
    model = make_model(tmp_path)
    sig = tmp_path / "a.sig"
    # One path per flag, as model_signing takes them.
    r = run_cli("sign", "--private-key", priv, "--signature", sig, "--ignore-paths", model / "README.md", "--ignore-paths", model / "tokenizer", model)
    assert r.returncode == 0, r.stderr
    st = statement(sig)
    names = [x["name"] for x in st["predicate"]["resources"]]
    assert "README.md" not in names and not any(n.startswith("tokenizer/") for n in names)
    assert "tokenizer.json" in names
    assert {"README.md", "tokenizer"} <= set(st["predicate"]["serialization"]["ignore_paths"])
    # Ignored files may change: both verifiers read the ignore list from the signature.
    (model / "README.md").write_bytes(b"edited")
    (model / "tokenizer" / "new.txt").write_bytes(b"new")
    assert ms("verify", "key", model, "--signature", sig, "--public_key", pub).returncode == 0
    assert run_cli("verify", model, "--public-key", pub, "--signature", sig).returncode == 0
    # The other way: model_signing records its ignore paths, tensorseal honours them.
    sig2 = tmp_path / "b.sig"
    s = ms("sign", "key", model, "--private_key", priv, "--signature", sig2, "--ignore-paths", model / "a")
    assert s.returncode == 0, s.stderr
    (model / "a" / "b").write_bytes(b"changed")
    r = run_cli("verify", model, "--public-key", pub, "--signature", sig2)
    assert r.returncode == 0, r.stdout + r.stderr
    # A path outside the model has no effect, with a warning.
    r = run_cli("digest", model, "--ignore-paths", tmp_path / "elsewhere")
    assert r.returncode == 0 and "has no effect" in r.stderr


def test_git_paths_can_be_included(tmp_path, run_cli):
    _, priv, pub = make_keys(tmp_path, "p256")
    model = make_model(tmp_path)
    sig = tmp_path / "m.sig"
    r = run_cli("sign", model, "--private-key", priv, "--signature", sig, "--no-ignore-git-paths")
    assert r.returncode == 0, r.stderr
    names = [x["name"] for x in statement(sig)["predicate"]["resources"]]
    assert ".git/HEAD" in names and ".gitattributes" in names
    assert "ignore_paths" not in statement(sig)["predicate"]["serialization"]
    v = ms("verify", "key", model, "--signature", sig, "--public_key", pub, "--no-ignore-git-paths")
    assert v.returncode == 0, v.stderr
    assert run_cli("verify", model, "--public-key", pub, "--signature", sig, "--no-ignore-git-paths").returncode == 0
    # With the default (git paths ignored) both report the git files missing.
    r = run_cli("verify", model, "--public-key", pub, "--signature", sig)
    assert r.returncode == 1 and "missing  .git/HEAD" in r.stdout
    assert ms("verify", "key", model, "--signature", sig, "--public_key", pub).returncode != 0


def test_symlinks(tmp_path, run_cli):
    _, priv, pub = make_keys(tmp_path, "p256")
    model = make_model(tmp_path)
    (model / "link.json").symlink_to("config.json")
    sig = tmp_path / "m.sig"
    r = run_cli("sign", model, "--private-key", priv, "--signature", sig)
    assert r.returncode == 2
    assert "link.json" in r.stderr and "symbolic link" in r.stderr
    assert ms("sign", "key", model, "--private_key", priv, "--signature", sig).returncode != 0
    r = run_cli("sign", model, "--private-key", priv, "--signature", sig, "--allow-symlinks")
    assert r.returncode == 0, r.stderr
    st = statement(sig)
    assert st["predicate"]["serialization"]["allow_symlinks"] is True
    assert "link.json" in [x["name"] for x in st["predicate"]["resources"]]
    v = ms("verify", "key", model, "--signature", sig, "--public_key", pub, "--allow_symlinks")
    assert v.returncode == 0, v.stderr
    sig2 = tmp_path / "m2.sig"
    s = ms("sign", "key", model, "--private_key", priv, "--signature", sig2, "--allow_symlinks")
    assert s.returncode == 0, s.stderr
    assert run_cli("verify", model, "--public-key", pub, "--signature", sig2, "--allow-symlinks").returncode == 0
    r = run_cli("verify", model, "--public-key", pub, "--signature", sig2)
    assert r.returncode == 2 and "--allow-symlinks" in r.stderr


@pytest.mark.parametrize("fmt", ["sec1", "encrypted"])
def test_key_formats(tmp_path, run_cli, curve, fmt):
    key, _, pub = make_keys(tmp_path, curve)
    priv = tmp_path / f"{fmt}.pem"
    args = []
    if fmt == "sec1":
        priv.write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.TraditionalOpenSSL, ser.NoEncryption()))
    else:
        priv.write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.BestAvailableEncryption(b"s3cret")))
        (tmp_path / "pw").write_text("s3cret\n")
        r = run_cli("sign", make_model(tmp_path), "--private-key", priv, "--signature", tmp_path / "x.sig")
        assert r.returncode == 2 and "password" in r.stderr
        args = ["--password-file", tmp_path / "pw"]
    model = tmp_path / "model"
    if not model.exists():
        make_model(tmp_path)
    sig = tmp_path / "m.sig"
    r = run_cli("sign", model, "--private-key", priv, "--signature", sig, *args)
    assert r.returncode == 0, r.stderr
    v = ms("verify", "key", model, "--signature", sig, "--public_key", pub)
    assert v.returncode == 0, v.stderr


def test_usage_and_garbage_errors(tmp_path, run_cli):
    _, priv, pub = make_keys(tmp_path, "p256")
    model = make_model(tmp_path)
    sig = tmp_path / "m.sig"
    # Missing key file: usage/I/O error naming it.
    r = run_cli("sign", model, "--private-key", tmp_path / "nope.pem", "--signature", sig)
    assert r.returncode == 2 and "nope.pem" in r.stderr
    # A public key where a private key is needed.
    r = run_cli("sign", model, "--private-key", pub, "--signature", sig)
    assert r.returncode == 2 and "public key" in r.stderr
    # A private key where the public key is needed: refused, although its public half would do.
    assert run_cli("sign", model, "--private-key", priv, "--signature", sig).returncode == 0
    r = run_cli("verify", model, "--public-key", priv, "--signature", sig)
    assert r.returncode == 2 and "this is a private key" in r.stderr
    # --ignore-paths takes one value: a second one is the model argument, not a path to ignore.
    r = run_cli("digest", "--ignore-paths", model / "README.md", model, "extra")
    assert r.returncode == 2 and "extra" in r.stderr
    # Garbage signature file: invalid input, no panic.
    sig.write_bytes(os.urandom(200))
    r = run_cli("verify", model, "--public-key", pub, "--signature", sig)
    assert r.returncode == 1 and "malformed signature" in r.stderr
    assert "panicked" not in r.stderr
    # Missing signature file.
    r = run_cli("verify", model, "--public-key", pub, "--signature", tmp_path / "none.sig")
    assert r.returncode == 2
    # Ignoring the whole model is refused.
    r = run_cli("sign", model, "--private-key", priv, "--signature", sig, "--ignore-paths", model)
    assert r.returncode == 2 and "model itself" in r.stderr


def test_ignore_unsigned_files(tmp_path, run_cli):
    _, priv, pub = make_keys(tmp_path, "p256")
    model = make_model(tmp_path)
    sig = tmp_path / "m.sig"
    assert run_cli("sign", model, "--private-key", priv, "--signature", sig).returncode == 0
    (model / "notes.txt").write_text("added later")
    assert run_cli("verify", model, "--public-key", pub, "--signature", sig).returncode == 1
    r = run_cli("verify", model, "--public-key", pub, "--signature", sig, "--ignore-unsigned-files")
    assert r.returncode == 0, r.stdout + r.stderr
    v = ms("verify", "key", model, "--signature", sig, "--public_key", pub, "--ignore_unsigned_files")
    assert v.returncode == 0, v.stderr


def test_single_file_model_both_ways(tmp_path, run_cli):
    _, priv, pub = make_keys(tmp_path, "p384")
    f = tmp_path / "weights.safetensors"
    f.write_bytes(os.urandom(50_000))
    a, b = tmp_path / "a.sig", tmp_path / "b.sig"
    assert run_cli("sign", f, "--private-key", priv, "--signature", a).returncode == 0
    assert ms("sign", "key", f, "--private_key", priv, "--signature", b).returncode == 0
    for sig in (a, b):
        st = statement(sig)
        assert [x["name"] for x in st["predicate"]["resources"]] == ["."]
        assert st["subject"][0]["name"] == "weights.safetensors"
        assert ms("verify", "key", f, "--signature", sig, "--public_key", pub).returncode == 0
        assert run_cli("verify", f, "--public-key", pub, "--signature", sig).returncode == 0
    f.write_bytes(os.urandom(50_000))
    r = run_cli("verify", f, "--public-key", pub, "--signature", b)
    assert r.returncode == 1 and r.stdout.startswith("changed  .")
    assert ms("verify", "key", f, "--signature", b, "--public_key", pub).returncode != 0
