//! ECDSA keys on NIST P-256, P-384 and P-521, read from PEM.
//!
//! Private keys: PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) and
//! password-protected PKCS#8 (`ENCRYPTED PRIVATE KEY`, PBES2). Public keys:
//! SubjectPublicKeyInfo (`PUBLIC KEY`), compressed or uncompressed point.
//!
//! Signatures are ASN.1 DER, over SHA-256 (P-256), SHA-384 (P-384) or
//! SHA-512 (P-521), as model-signing makes them with `cryptography`. P-256 and
//! P-384 signatures are deterministic (RFC 6979); P-521 ones use a random
//! nonce from the operating system.

use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};

use crate::error::{Result, SignError};
use crate::manifest::to_hex;

/// A private signing key.
#[derive(Clone)]
pub enum PrivateKey {
    /// NIST P-256 (secp256r1), signs SHA-256 digests.
    P256(p256::ecdsa::SigningKey),
    /// NIST P-384 (secp384r1), signs SHA-384 digests.
    P384(p384::ecdsa::SigningKey),
    /// NIST P-521 (secp521r1), signs SHA-512 digests.
    P521(p521::ecdsa::SigningKey),
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.curve())
    }
}

/// A public verification key.
#[derive(Clone)]
pub enum PublicKey {
    /// NIST P-256 (secp256r1).
    P256(p256::ecdsa::VerifyingKey),
    /// NIST P-384 (secp384r1).
    P384(p384::ecdsa::VerifyingKey),
    /// NIST P-521 (secp521r1).
    P521(p521::ecdsa::VerifyingKey),
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({}, hint {})", self.curve(), self.hint())
    }
}

fn p521_signing(sk: &p521::SecretKey) -> Option<p521::ecdsa::SigningKey> {
    p521::ecdsa::SigningKey::from_bytes(&sk.to_bytes()).ok()
}

fn key_err(what: &str, detail: impl Into<String>) -> SignError {
    SignError::Key {
        what: what.to_owned(),
        detail: detail.into(),
    }
}

/// The PEM label of the first PEM block, if any.
fn pem_label(pem: &str) -> Option<&str> {
    let start = pem.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = pem.get(start..)?;
    let end = rest.find("-----")?;
    rest.get(..end)
}

fn curve_name_from_oid(oid: &str) -> &str {
    match oid {
        "1.2.840.10045.3.1.7" => "secp256r1 (P-256)",
        "1.3.132.0.34" => "secp384r1 (P-384)",
        "1.3.132.0.35" => "secp521r1 (P-521)",
        "1.3.132.0.10" => "secp256k1",
        _ => oid,
    }
}

impl PrivateKey {
    /// Reads a PEM private key. `what` names it in errors (usually its path);
    /// `password` is needed for `ENCRYPTED PRIVATE KEY`.
    pub fn from_pem(pem: &[u8], password: Option<&[u8]>, what: &str) -> Result<Self> {
        let pem = std::str::from_utf8(pem)
            .map_err(|_| key_err(what, "not a PEM file (not UTF-8 text)"))?;
        let label =
            pem_label(pem).ok_or_else(|| key_err(what, "not a PEM file (no -----BEGIN line)"))?;
        match label {
            "PRIVATE KEY" => Self::from_pkcs8_pem(pem, what),
            "EC PRIVATE KEY" => {
                if pem.contains("Proc-Type: 4,ENCRYPTED") {
                    return Err(key_err(
                        what,
                        "legacy OpenSSL-encrypted EC keys are not supported; convert with \
                         `openssl pkcs8 -topk8 -in KEY -out KEY.p8` (PKCS#8, optionally encrypted)",
                    ));
                }
                if let Ok(k) = p256::SecretKey::from_sec1_pem(pem) {
                    return Ok(PrivateKey::P256(k.into()));
                }
                if let Ok(k) = p384::SecretKey::from_sec1_pem(pem) {
                    return Ok(PrivateKey::P384(k.into()));
                }
                if let Some(k) = p521::SecretKey::from_sec1_pem(pem)
                    .ok()
                    .as_ref()
                    .and_then(p521_signing)
                {
                    return Ok(PrivateKey::P521(k));
                }
                Err(key_err(
                    what,
                    "EC PRIVATE KEY is not a P-256, P-384 or P-521 key (or is malformed)",
                ))
            }
            "ENCRYPTED PRIVATE KEY" => {
                let password = password.ok_or_else(|| {
                    key_err(what, "the private key is encrypted; a password is needed")
                })?;
                let (_, doc) = pkcs8::Document::from_pem(pem)
                    .map_err(|e| key_err(what, format!("bad PEM: {e}")))?;
                let enc = pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes())
                    .map_err(|e| key_err(what, format!("bad encrypted PKCS#8: {e}")))?;
                let der = enc
                    .decrypt(password)
                    .map_err(|e| key_err(what, format!("cannot decrypt (wrong password?): {e}")))?;
                Self::from_pkcs8_der(der.as_bytes(), what)
            }
            "PUBLIC KEY" => Err(key_err(
                what,
                "this is a public key; a private key is needed",
            )),
            other => Err(key_err(
                what,
                format!("unsupported PEM block {other:?}; expected PRIVATE KEY or EC PRIVATE KEY"),
            )),
        }
    }

    fn from_pkcs8_pem(pem: &str, what: &str) -> Result<Self> {
        let (_, doc) = pkcs8::SecretDocument::from_pem(pem)
            .map_err(|e| key_err(what, format!("bad PEM: {e}")))?;
        Self::from_pkcs8_der(doc.as_bytes(), what)
    }

    fn from_pkcs8_der(der: &[u8], what: &str) -> Result<Self> {
        if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
            return Ok(PrivateKey::P256(k.into()));
        }
        if let Ok(k) = p384::SecretKey::from_pkcs8_der(der) {
            return Ok(PrivateKey::P384(k.into()));
        }
        if let Some(k) = p521::SecretKey::from_pkcs8_der(der)
            .ok()
            .as_ref()
            .and_then(p521_signing)
        {
            return Ok(PrivateKey::P521(k));
        }
        let info = pkcs8::PrivateKeyInfo::try_from(der)
            .map_err(|e| key_err(what, format!("bad PKCS#8 private key: {e}")))?;
        let alg = info.algorithm.oid.to_string();
        let curve = info
            .algorithm
            .parameters_oid()
            .map(|o| o.to_string())
            .unwrap_or_default();
        if alg == "1.2.840.10045.2.1" {
            Err(key_err(
                what,
                format!(
                    "unsupported curve {}; P-256, P-384 and P-521 are supported",
                    curve_name_from_oid(&curve)
                ),
            ))
        } else {
            Err(key_err(
                what,
                format!(
                    "not an elliptic-curve key (algorithm {alg}); ECDSA P-256, P-384 or P-521 is needed"
                ),
            ))
        }
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        match self {
            PrivateKey::P256(k) => PublicKey::P256(*k.verifying_key()),
            PrivateKey::P384(k) => PublicKey::P384(*k.verifying_key()),
            PrivateKey::P521(k) => PublicKey::P521(p521::ecdsa::VerifyingKey::from(k)),
        }
    }

    /// Curve name.
    pub fn curve(&self) -> &'static str {
        match self {
            PrivateKey::P256(_) => "P-256",
            PrivateKey::P384(_) => "P-384",
            PrivateKey::P521(_) => "P-521",
        }
    }

    /// Signs `msg` (hashing it with the curve's hash); returns the DER
    /// signature.
    pub fn sign_der(&self, msg: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer;
        match self {
            PrivateKey::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign(msg);
                s.to_der().as_bytes().to_vec()
            }
            PrivateKey::P384(k) => {
                let s: p384::ecdsa::Signature = k.sign(msg);
                s.to_der().as_bytes().to_vec()
            }
            PrivateKey::P521(k) => {
                let s: p521::ecdsa::Signature = k.sign(msg);
                s.to_der().as_bytes().to_vec()
            }
        }
    }
}

impl PublicKey {
    /// Reads a PEM SubjectPublicKeyInfo (`PUBLIC KEY`). A private key PEM is
    /// also accepted (its public half is used).
    pub fn from_pem(pem: &[u8], what: &str) -> Result<Self> {
        let text = std::str::from_utf8(pem)
            .map_err(|_| key_err(what, "not a PEM file (not UTF-8 text)"))?;
        let label =
            pem_label(text).ok_or_else(|| key_err(what, "not a PEM file (no -----BEGIN line)"))?;
        match label {
            "PUBLIC KEY" => {
                if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(text) {
                    return Ok(PublicKey::P256(k));
                }
                if let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_pem(text) {
                    return Ok(PublicKey::P384(k));
                }
                if let Some(k) = p521::PublicKey::from_public_key_pem(text)
                    .ok()
                    .and_then(|p| p521::ecdsa::VerifyingKey::from_affine(*p.as_affine()).ok())
                {
                    return Ok(PublicKey::P521(k));
                }
                let (_, doc) = pkcs8::Document::from_pem(text)
                    .map_err(|e| key_err(what, format!("bad PEM: {e}")))?;
                let spki = pkcs8::spki::SubjectPublicKeyInfoRef::try_from(doc.as_bytes())
                    .map_err(|e| key_err(what, format!("bad SubjectPublicKeyInfo: {e}")))?;
                let alg = spki.algorithm.oid.to_string();
                if alg == "1.2.840.10045.2.1" {
                    let curve = spki
                        .algorithm
                        .parameters_oid()
                        .map(|o| o.to_string())
                        .unwrap_or_default();
                    Err(key_err(
                        what,
                        format!(
                            "unsupported curve {} (or invalid point); P-256, P-384 and P-521 are supported",
                            curve_name_from_oid(&curve)
                        ),
                    ))
                } else {
                    Err(key_err(
                        what,
                        format!("not an elliptic-curve key (algorithm {alg}); ECDSA P-256, P-384 or P-521 is needed"),
                    ))
                }
            }
            "PRIVATE KEY" | "EC PRIVATE KEY" => {
                Ok(PrivateKey::from_pem(pem, None, what)?.public_key())
            }
            other => Err(key_err(
                what,
                format!("unsupported PEM block {other:?}; expected PUBLIC KEY"),
            )),
        }
    }

    /// Curve name.
    pub fn curve(&self) -> &'static str {
        match self {
            PublicKey::P256(_) => "P-256",
            PublicKey::P384(_) => "P-384",
            PublicKey::P521(_) => "P-521",
        }
    }

    /// PEM SubjectPublicKeyInfo with an uncompressed point and LF line ends,
    /// byte-identical to what Python `cryptography` writes.
    pub fn to_pem(&self) -> String {
        let r = match self {
            PublicKey::P256(k) => k.to_public_key_pem(LineEnding::LF),
            PublicKey::P384(k) => k.to_public_key_pem(LineEnding::LF),
            PublicKey::P521(k) => p521::PublicKey::from_affine(*k.as_affine())
                .map_err(|_| p256::pkcs8::spki::Error::KeyMalformed)
                .and_then(|p| p.to_public_key_pem(LineEnding::LF)),
        };
        // Encoding a valid in-memory key cannot fail; an empty string would
        // only make the hint not match, never verify something wrongly.
        r.unwrap_or_default()
    }

    /// The `verificationMaterial.publicKey.hint` model-signing records: the
    /// hex SHA-256 of the key's PEM SubjectPublicKeyInfo encoding.
    pub fn hint(&self) -> String {
        to_hex(&Sha256::digest(self.to_pem().as_bytes()))
    }

    /// Verifies an ASN.1 DER ECDSA signature over `msg` (only DER, as
    /// model-signing).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier;
        match self {
            PublicKey::P256(k) => {
                p256::ecdsa::Signature::from_der(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
            }
            PublicKey::P384(k) => {
                p384::ecdsa::Signature::from_der(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
            }
            PublicKey::P521(k) => {
                p521::ecdsa::Signature::from_der(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
            }
        }
    }
}
