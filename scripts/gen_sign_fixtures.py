#!/usr/bin/env python3
"""Generates tests/fixtures/sign/ with the reference `model-signing` package.

Run with the venv python (model-signing 1.1.1 and cryptography installed):

    /work/venv/bin/python scripts/gen_sign_fixtures.py   # or $TENSORSEAL_VENV/bin/python

Writes:
- keys: fixed (derived from constant scalars, so reruns give the same keys)
  P-256, P-384 and P-521 private keys in PKCS#8, SEC1 and encrypted PKCS#8 (password
  "tensorseal") PEM, public keys in SubjectPublicKeyInfo PEM;
- vectors.json: key hints as model-signing computes them, the manifest order
  of tricky names, the DSSE PAE of a payload, the model below and its digests;
- model/: a small model directory (nested files, dotted names);
- model-p256.sig / model-p384.sig / model-p521.sig: signatures of model/ made by
  `model_signing.signing` with the key method (ECDSA signatures are random,
  so these change on every run; the Rust tests only verify them).
"""

import base64
import hashlib
import json
import pathlib
import shutil
import tempfile

from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec

import model_signing
from model_signing import manifest as ms_manifest
from model_signing._signing import sign_sigstore_pb

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "sign"

# Constant private scalars: fixtures are reproducible, keys are test-only.
SCALARS = {
    "p256": (ec.SECP256R1(), 0x1F2E3D4C5B6A798877665544332211000102030405060708090A0B0C0D0E0F10),
    "p384": (
        ec.SECP384R1(),
        0x0102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F20212223242526272829303132,
    ),
    "p521": (ec.SECP521R1(), 0x01A2B3C4D5E6F708192A3B4C5D6E7F8091A2B3C4D5E6F708192A3B4C5D6E7F8091A2B3C4D5E6F7),
}

MODEL_FILES = {
    "config.json": b'{"hidden_size": 8}\n',
    "model.safetensors": bytes(range(256)) * 5,
    "a/b.bin": b"nested\n",
    "a.txt": b"dotted name sorts after the directory a/\n",
    "a-b": b"dash\n",
    "sub/deeper/x": b"",
    ".hidden": b"hidden files are signed too\n",
    "\u00e9t\u00e9.txt": b"non-ASCII name\n",
}

ORDER_NAMES = ["a.txt", "a/b", "a-b", "a/b/c", "ab", "B", "a", "\u00e9", "z", "a0", "a/b.c", "a/b-c"]


def write_keys(vectors: dict) -> None:
    for name, (curve, scalar) in SCALARS.items():
        key = ec.derive_private_key(scalar, curve)
        (OUT / f"{name}-pkcs8.pem").write_bytes(
            key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
        )
        (OUT / f"{name}-sec1.pem").write_bytes(
            key.private_bytes(
                ser.Encoding.PEM, ser.PrivateFormat.TraditionalOpenSSL, ser.NoEncryption()
            )
        )
        (OUT / f"{name}-encrypted.pem").write_bytes(
            key.private_bytes(
                ser.Encoding.PEM,
                ser.PrivateFormat.PKCS8,
                ser.BestAvailableEncryption(b"tensorseal"),
            )
        )
        pub = key.public_key().public_bytes(
            ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo
        )
        (OUT / f"{name}-pub.pem").write_bytes(pub)
        vectors["hints"][name] = hashlib.sha256(pub).hexdigest()
    # A curve neither tool supports (secp256k1), for error messages.
    key = ec.derive_private_key(0x123456789ABCDEF, ec.SECP256K1())
    (OUT / "k256-pkcs8.pem").write_bytes(
        key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    )
    (OUT / "k256-pub.pem").write_bytes(
        key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    )


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    vectors: dict = {"hints": {}}
    write_keys(vectors)

    # Manifest order: model-signing sorts resources by PurePosixPath.
    items = [
        ms_manifest.FileManifestItem(
            path=pathlib.PurePosixPath(n),
            digest=model_signing._hashing.hashing.Digest("sha256", b"\0" * 32),
        )
        for n in ORDER_NAMES
    ]
    m = ms_manifest.Manifest("x", items, ms_manifest._FileSerialization("sha256"))
    vectors["order"] = [rd.identifier for rd in m.resource_descriptors()]

    payload = b'{"a": "b\\n"}'
    vectors["pae"] = {
        "payload": payload.decode(),
        "encoded": sign_sigstore_pb.pae(payload).decode(),
        "encoded_compat": sign_sigstore_pb.pae_compat(payload).decode(),
    }

    model = OUT / "model"
    for rel, data in MODEL_FILES.items():
        p = model / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    hashed = model_signing.hashing.Config().hash(model)
    vectors["model"] = {
        "resources": [
            {"name": rd.identifier, "digest": rd.digest.digest_hex}
            for rd in hashed.resource_descriptors()
        ],
    }
    # Root digest as the in-toto subject holds it.
    payload_obj = model_signing._signing.signing.Payload(hashed)
    subject = payload_obj.statement.pb.subject[0]
    vectors["model"]["root_digest"] = subject.digest["sha256"]

    # Signatures made by model-signing; the signature path lies outside the
    # model so the manifest is exactly model/.
    with tempfile.TemporaryDirectory() as tmp:
        for name in SCALARS:
            sig = pathlib.Path(tmp) / f"{name}.sig"
            model_signing.signing.Config().use_elliptic_key_signer(
                private_key=OUT / f"{name}-pkcs8.pem"
            ).sign(model, sig)
            (OUT / f"model-{name}.sig").write_bytes(sig.read_bytes())
            bundle = json.loads(sig.read_text())
            statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
            assert statement["subject"][0]["digest"]["sha256"] == vectors["model"]["root_digest"]

    (OUT / "vectors.json").write_text(json.dumps(vectors, indent=2, ensure_ascii=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
