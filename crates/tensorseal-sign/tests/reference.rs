//! Checks against vectors and signatures made by the reference `model-signing`
//! 1.1.1 package (tests/fixtures/sign, from scripts/gen_sign_fixtures.py).

use std::path::{Path, PathBuf};

use serde_json::Value;
use tensorseal_sign::keys::{PrivateKey, PublicKey};
use tensorseal_sign::manifest::{self, compare_names, to_hex, HashOptions};
use tensorseal_sign::{compare, dsse, sign_manifest, verify_bundle, verify_model, SignError};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sign")
}

fn vectors() -> Value {
    let s = std::fs::read_to_string(fixtures().join("vectors.json")).unwrap();
    serde_json::from_str(&s).unwrap()
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap()
}

fn public(curve: &str) -> PublicKey {
    PublicKey::from_pem(&read(&format!("{curve}-pub.pem")), curve).unwrap()
}

#[test]
fn hints_match_model_signing() {
    let v = vectors();
    for curve in ["p256", "p384", "p521"] {
        let want = v["hints"][curve].as_str().unwrap();
        assert_eq!(public(curve).hint(), want, "{curve} public key");
        for form in ["pkcs8", "sec1"] {
            let k =
                PrivateKey::from_pem(&read(&format!("{curve}-{form}.pem")), None, form).unwrap();
            assert_eq!(k.public_key().hint(), want, "{curve} {form}");
        }
        let enc = read(&format!("{curve}-encrypted.pem"));
        let k = PrivateKey::from_pem(&enc, Some(b"tensorseal"), "enc").unwrap();
        assert_eq!(k.public_key().hint(), want, "{curve} encrypted");
        let err = PrivateKey::from_pem(&enc, Some(b"wrong"), "enc").unwrap_err();
        assert!(matches!(err, SignError::Key { .. }), "{err}");
        let err = PrivateKey::from_pem(&enc, None, "enc").unwrap_err();
        assert!(err.to_string().contains("password"), "{err}");
    }
    // The PEM re-encoding is byte-identical to the file cryptography wrote.
    assert_eq!(
        public("p256").to_pem().as_bytes(),
        read("p256-pub.pem").as_slice()
    );
    assert_eq!(
        public("p384").to_pem().as_bytes(),
        read("p384-pub.pem").as_slice()
    );
}

#[test]
fn manifest_order_matches_model_signing() {
    let v = vectors();
    let want: Vec<&str> = v["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    let mut got = want.clone();
    got.reverse();
    got.sort_by(|a, b| compare_names(a, b));
    assert_eq!(got, want);
    // Plain string order would differ ("a.txt" < "a/b" bytewise).
    let mut plain = want.clone();
    plain.sort();
    assert_ne!(plain, want);
}

#[test]
fn pae_matches_model_signing() {
    let v = vectors();
    let payload = v["pae"]["payload"].as_str().unwrap().as_bytes();
    assert_eq!(
        dsse::pae(dsse::IN_TOTO_PAYLOAD_TYPE, payload),
        v["pae"]["encoded"].as_str().unwrap().as_bytes()
    );
    assert_eq!(
        dsse::pae_compat(dsse::IN_TOTO_PAYLOAD_TYPE, payload),
        v["pae"]["encoded_compat"].as_str().unwrap().as_bytes()
    );
}

#[test]
fn model_digests_match_model_signing() {
    let v = vectors();
    let m = manifest::hash_model(&fixtures().join("model"), &HashOptions::new(), &()).unwrap();
    let want: Vec<(String, String)> = v["model"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let got: Vec<(String, String)> = m
        .resources
        .iter()
        .map(|r| (r.name.clone(), r.digest_hex()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        to_hex(&m.root_digest()),
        v["model"]["root_digest"].as_str().unwrap()
    );
    assert_eq!(m.model_name, "model");
}

#[test]
fn verifies_signatures_made_by_model_signing() {
    for curve in ["p256", "p384", "p521"] {
        let bundle = read(&format!("model-{curve}.sig"));
        let key = public(curve);
        let signed = verify_bundle(&bundle, &key).unwrap();
        let local =
            manifest::hash_model(&fixtures().join("model"), &HashOptions::new(), &()).unwrap();
        let c = compare(&signed, &local);
        assert!(c.is_match(), "{curve}: {c:?}");
        assert_eq!(c.matched, local.len());
        let v = verify_model(
            &fixtures().join("model"),
            &bundle,
            &key,
            &Default::default(),
            &(),
        );
        // Default VerifyOptions do not ignore git paths; the model has none.
        assert!(v.unwrap().comparison.is_match());
    }
}

#[test]
fn wrong_key_is_a_key_mismatch() {
    let bundle = read("model-p256.sig");
    let err = verify_bundle(&bundle, &public("p384")).unwrap_err();
    assert!(matches!(err, SignError::KeyMismatch { .. }), "{err}");
}

#[test]
fn tampered_payload_or_signature_is_rejected() {
    let bundle: Value = serde_json::from_slice(&read("model-p256.sig")).unwrap();
    let key = public("p256");
    // Flip one digest in the statement: the signature no longer verifies.
    let payload = bundle["dsseEnvelope"]["payload"].as_str().unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut stmt = b64.decode(payload).unwrap();
    let pos = stmt.windows(6).position(|w| w == b"digest").unwrap() + 12;
    stmt[pos] = if stmt[pos] == b'0' { b'1' } else { b'0' };
    let mut forged = bundle.clone();
    forged["dsseEnvelope"]["payload"] = Value::String(b64.encode(&stmt));
    let err = verify_bundle(&serde_json::to_vec(&forged).unwrap(), &key).unwrap_err();
    assert!(matches!(err, SignError::BadSignature { .. }), "{err}");
    // Drop the hint: the signature check alone still catches a wrong key.
    let mut nohint = bundle.clone();
    nohint["verificationMaterial"]["publicKey"]["hint"] = Value::String(String::new());
    let other = PrivateKey::from_pem(&read("p384-pkcs8.pem"), None, "k").unwrap();
    let err =
        verify_bundle(&serde_json::to_vec(&nohint).unwrap(), &other.public_key()).unwrap_err();
    assert!(matches!(err, SignError::BadSignature { .. }), "{err}");
    // Without the hint the right key still verifies.
    verify_bundle(&serde_json::to_vec(&nohint).unwrap(), &key).unwrap();
}

#[test]
fn our_statement_reads_back_and_verifies() {
    for curve in ["p256", "p384", "p521"] {
        let key = PrivateKey::from_pem(&read(&format!("{curve}-sec1.pem")), None, curve).unwrap();
        let m = manifest::hash_model(&fixtures().join("model"), &HashOptions::new(), &()).unwrap();
        let bundle = sign_manifest(&m, &key);
        let back = verify_bundle(&bundle, &key.public_key()).unwrap();
        assert_eq!(back, m);
        let v: Value = serde_json::from_slice(&bundle).unwrap();
        assert_eq!(
            v["mediaType"],
            "application/vnd.dev.sigstore.bundle.v0.3+json"
        );
        assert_eq!(
            v["verificationMaterial"]["publicKey"]["hint"],
            vectors()["hints"][curve]
        );
        assert_eq!(
            v["dsseEnvelope"]["payloadType"],
            "application/vnd.in-toto+json"
        );
        // Non-ASCII names are escaped in the statement, as MessageToJson does.
        use base64::Engine as _;
        let stmt = base64::engine::general_purpose::STANDARD
            .decode(v["dsseEnvelope"]["payload"].as_str().unwrap())
            .unwrap();
        assert!(stmt.is_ascii());
        assert!(String::from_utf8(stmt)
            .unwrap()
            .contains("\\u00e9t\\u00e9.txt"));
    }
}
