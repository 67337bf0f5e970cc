//! The signature file: a Sigstore bundle (v0.3, JSON) holding a DSSE envelope
//! whose payload is an in-toto Statement v1 with the OMS predicate
//! `https://model_signing/signature/v1.0`.
//!
//! Writing mirrors model-signing 1.1.1 field for field (compact bundle JSON;
//! statement pretty-printed with 2-space indent and ASCII-only escapes as
//! protobuf's `MessageToJson` writes it). Reading is lenient about layout and
//! unknown fields but strict about everything that is checked: media type,
//! payload type, statement type, predicate type, the single subject, the
//! root digest over the resources.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::dsse::IN_TOTO_PAYLOAD_TYPE;
use crate::error::{Result, SignError};
use crate::manifest::{compare_names, from_hex, to_hex, Manifest, Resource, Serialization};

/// Sigstore bundle media type written and required.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// OMS v1.0 predicate type.
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// The pre-1.0 predicate type model-signing still verifies.
pub const PREDICATE_TYPE_COMPAT: &str = "https://model_signing/Digests/v0.1";

/// The in-toto statement of a manifest, as the DSSE payload bytes.
pub fn statement_json(m: &Manifest) -> Vec<u8> {
    let mut serialization = serde_json::Map::new();
    serialization.insert("method".into(), json!(m.serialization.method));
    serialization.insert("hash_type".into(), json!(m.serialization.hash_type));
    serialization.insert(
        "allow_symlinks".into(),
        json!(m.serialization.allow_symlinks),
    );
    if !m.serialization.ignore_paths.is_empty() {
        serialization.insert("ignore_paths".into(), json!(m.serialization.ignore_paths));
    }
    let resources: Vec<Value> = m
        .resources
        .iter()
        .map(|r| json!({"name": r.name, "algorithm": r.algorithm, "digest": r.digest_hex()}))
        .collect();
    let statement = json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": m.model_name, "digest": {"sha256": to_hex(&m.root_digest())}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {"serialization": Value::Object(serialization), "resources": resources},
    });
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, AsciiPretty::new());
    // Serializing a `Value` into a Vec cannot fail.
    let _ = serde::Serialize::serialize(&statement, &mut ser);
    out
}

/// The bundle JSON for a signed payload.
pub fn bundle_json(payload: &[u8], signature_der: &[u8], hint: &str) -> Vec<u8> {
    let bundle = json!({
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": hint}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": B64.encode(payload),
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": B64.encode(signature_der), "keyid": ""}],
        },
    });
    serde_json::to_vec(&bundle).unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundleIn {
    media_type: Option<String>,
    verification_material: Option<MaterialIn>,
    dsse_envelope: Option<EnvelopeIn>,
    message_signature: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MaterialIn {
    public_key: Option<PublicKeyIn>,
    certificate: Option<Value>,
    x509_certificate_chain: Option<Value>,
}

#[derive(Deserialize)]
struct PublicKeyIn {
    hint: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeIn {
    payload: String,
    payload_type: String,
    signatures: Vec<SignatureIn>,
}

#[derive(Deserialize)]
struct SignatureIn {
    sig: String,
}

/// The parts of a bundle that verification needs, decoded but not verified.
#[derive(Debug, Clone)]
pub struct ParsedBundle {
    /// `verificationMaterial.publicKey.hint`, when present and non-empty.
    pub hint: Option<String>,
    /// DSSE payload type.
    pub payload_type: String,
    /// Decoded DSSE payload (the statement JSON).
    pub payload: Vec<u8>,
    /// Decoded first DSSE signature (DER).
    pub signature: Vec<u8>,
}

fn malformed(s: impl Into<String>) -> SignError {
    SignError::Malformed(s.into())
}

/// Parses a bundle without verifying anything but its shape.
pub fn parse_bundle(bytes: &[u8]) -> Result<ParsedBundle> {
    let b: BundleIn = serde_json::from_slice(bytes)
        .map_err(|e| malformed(format!("not a Sigstore bundle: {e}")))?;
    match b.media_type.as_deref() {
        Some(BUNDLE_MEDIA_TYPE) => {}
        Some(other) => {
            return Err(malformed(format!(
                "bundle media type is {other:?}, expected {BUNDLE_MEDIA_TYPE:?}"
            )))
        }
        None => return Err(malformed("bundle has no mediaType")),
    }
    let material = b
        .verification_material
        .ok_or_else(|| malformed("bundle has no verificationMaterial"))?;
    if material.certificate.is_some() || material.x509_certificate_chain.is_some() {
        return Err(SignError::Unsupported(
            "the bundle was signed with a certificate (Sigstore keyless or `sign certificate`); \
             only public-key signatures (`model_signing sign key`) are supported"
                .into(),
        ));
    }
    let hint = material
        .public_key
        .and_then(|k| k.hint)
        .filter(|h| !h.is_empty());
    let env = match (b.dsse_envelope, b.message_signature) {
        (Some(e), _) => e,
        (None, Some(_)) => {
            return Err(SignError::Unsupported(
                "bundle holds a messageSignature, not a DSSE envelope".into(),
            ))
        }
        (None, None) => return Err(malformed("bundle has no dsseEnvelope")),
    };
    let payload = B64
        .decode(env.payload.as_bytes())
        .map_err(|e| malformed(format!("DSSE payload is not base64: {e}")))?;
    let first = env
        .signatures
        .first()
        .ok_or_else(|| malformed("DSSE envelope has no signature"))?;
    let signature = B64
        .decode(first.sig.as_bytes())
        .map_err(|e| malformed(format!("DSSE signature is not base64: {e}")))?;
    Ok(ParsedBundle {
        hint,
        payload_type: env.payload_type,
        payload,
        signature,
    })
}

#[derive(Deserialize)]
struct StatementIn {
    #[serde(rename = "_type")]
    type_: Option<String>,
    subject: Option<Vec<SubjectIn>>,
    #[serde(rename = "predicateType")]
    predicate_type: Option<String>,
    predicate: Option<PredicateIn>,
}

#[derive(Deserialize)]
struct SubjectIn {
    name: Option<String>,
    digest: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct PredicateIn {
    serialization: Option<SerializationIn>,
    resources: Option<Vec<ResourceIn>>,
}

#[derive(Deserialize)]
struct SerializationIn {
    method: Option<String>,
    hash_type: Option<String>,
    allow_symlinks: Option<bool>,
    ignore_paths: Option<Vec<String>>,
    shard_size: Option<Value>,
}

#[derive(Deserialize)]
struct ResourceIn {
    name: Option<String>,
    algorithm: Option<String>,
    digest: Option<String>,
}

/// Canonical form of a resource name, as Python's `PurePosixPath` makes it:
/// repeated slashes, `.` components and a trailing slash dropped.
pub fn normalize_name(name: &str) -> String {
    let parts: Vec<&str> = name
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let body = parts.join("/");
    if name.starts_with('/') {
        format!("/{body}")
    } else if body.is_empty() {
        ".".to_owned()
    } else {
        body
    }
}

fn digest_of(hex: &str, what: &str) -> Result<Vec<u8>> {
    from_hex(hex).ok_or_else(|| malformed(format!("{what}: digest {hex:?} is not hex")))
}

/// Parses the (already authenticated) DSSE payload into the signed manifest.
/// Checks the statement and predicate types, the single subject and that the
/// subject digest is the SHA-256 of the resource digests.
pub fn parse_statement(payload_type: &str, payload: &[u8]) -> Result<Manifest> {
    if payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(malformed(format!(
            "DSSE payload type is {payload_type:?}, expected {IN_TOTO_PAYLOAD_TYPE:?}"
        )));
    }
    let st: StatementIn = serde_json::from_slice(payload)
        .map_err(|e| malformed(format!("payload is not an in-toto statement: {e}")))?;
    match st.type_.as_deref() {
        Some(STATEMENT_TYPE) => {}
        other => {
            return Err(malformed(format!(
                "statement _type is {other:?}, expected {STATEMENT_TYPE:?}"
            )))
        }
    }
    let subjects = st.subject.unwrap_or_default();
    match st.predicate_type.as_deref() {
        Some(PREDICATE_TYPE) => {}
        Some(PREDICATE_TYPE_COMPAT) => return compat_manifest(subjects),
        other => {
            return Err(SignError::Unsupported(format!(
                "predicate type {other:?}; expected {PREDICATE_TYPE:?}"
            )))
        }
    }
    let [subject] = subjects.as_slice() else {
        return Err(malformed(format!(
            "expected exactly one subject, found {}",
            subjects.len()
        )));
    };
    let expected_root = subject
        .digest
        .as_ref()
        .and_then(|d| d.get("sha256"))
        .ok_or_else(|| malformed("subject has no sha256 digest"))?;
    let pred = st
        .predicate
        .ok_or_else(|| malformed("statement has no predicate"))?;
    let ser = pred
        .serialization
        .ok_or_else(|| malformed("predicate has no serialization"))?;
    let method = ser.method.unwrap_or_default();
    if method != "files" {
        let extra = if ser.shard_size.is_some() {
            " (shard serialization)"
        } else {
            ""
        };
        return Err(SignError::Unsupported(format!(
            "serialization method {method:?}{extra}; only \"files\" is supported"
        )));
    }
    let hash_type = ser
        .hash_type
        .ok_or_else(|| malformed("serialization has no hash_type"))?;
    if hash_type != "sha256" {
        return Err(SignError::Unsupported(format!(
            "hash_type {hash_type:?}; only \"sha256\" is supported"
        )));
    }
    let allow_symlinks = ser
        .allow_symlinks
        .ok_or_else(|| malformed("serialization has no allow_symlinks"))?;
    let mut resources = Vec::new();
    let mut root = sha2::Sha256::default();
    for (i, r) in pred.resources.unwrap_or_default().into_iter().enumerate() {
        let name = r
            .name
            .ok_or_else(|| malformed(format!("resource #{i} has no name")))?;
        let algorithm = r
            .algorithm
            .ok_or_else(|| malformed(format!("resource {name:?} has no algorithm")))?;
        let digest_hex = r
            .digest
            .ok_or_else(|| malformed(format!("resource {name:?} has no digest")))?;
        let digest = digest_of(&digest_hex, &format!("resource {name:?}"))?;
        sha2::Digest::update(&mut root, &digest);
        if algorithm != "sha256" {
            return Err(SignError::Unsupported(format!(
                "resource {name:?} uses algorithm {algorithm:?}; only sha256 is supported"
            )));
        }
        resources.push(Resource {
            name: normalize_name(&name),
            algorithm,
            digest,
        });
    }
    let got = to_hex(&sha2::Digest::finalize(root));
    if !got.eq_ignore_ascii_case(expected_root) {
        return Err(SignError::Inconsistent(format!(
            "the subject digest is {expected_root} but the resources hash to {got}"
        )));
    }
    let mut m = Manifest {
        model_name: subject.name.clone().unwrap_or_default(),
        serialization: Serialization {
            method,
            hash_type,
            allow_symlinks,
            ignore_paths: ser.ignore_paths.unwrap_or_default(),
        },
        resources,
    };
    m.sort();
    check_unique(&m)?;
    Ok(m)
}

fn compat_manifest(subjects: Vec<SubjectIn>) -> Result<Manifest> {
    let mut resources = Vec::new();
    for (i, s) in subjects.into_iter().enumerate() {
        let name = s
            .name
            .ok_or_else(|| malformed(format!("subject #{i} has no name")))?;
        let hex = s
            .digest
            .as_ref()
            .and_then(|d| d.get("sha256"))
            .ok_or_else(|| malformed(format!("subject {name:?} has no sha256 digest")))?;
        let digest = digest_of(hex, &format!("subject {name:?}"))?;
        resources.push(Resource {
            name: normalize_name(&name),
            algorithm: "sha256".into(),
            digest,
        });
    }
    let mut m = Manifest {
        model_name: "compat-undefined-not-present".into(),
        serialization: Serialization {
            method: "files".into(),
            hash_type: "sha256".into(),
            allow_symlinks: false,
            ignore_paths: Vec::new(),
        },
        resources,
    };
    m.sort();
    check_unique(&m)?;
    Ok(m)
}

fn check_unique(m: &Manifest) -> Result<()> {
    for w in m.resources.windows(2) {
        if let [a, b] = w {
            if compare_names(&a.name, &b.name).is_eq() {
                return Err(SignError::Inconsistent(format!(
                    "the manifest lists {:?} more than once",
                    a.name
                )));
            }
        }
    }
    Ok(())
}

/// serde_json pretty formatter (2 spaces) that escapes every non-ASCII
/// character as `\uXXXX`, like Python's `json.dumps(ensure_ascii=True)`.
struct AsciiPretty<'a> {
    inner: serde_json::ser::PrettyFormatter<'a>,
}

impl AsciiPretty<'_> {
    fn new() -> Self {
        AsciiPretty {
            inner: serde_json::ser::PrettyFormatter::with_indent(b"  "),
        }
    }
}

impl serde_json::ser::Formatter for AsciiPretty<'_> {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() && c != '\x7f' {
                let mut b = [0u8; 4];
                writer.write_all(c.encode_utf8(&mut b).as_bytes())?;
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{u:04x}")?;
                }
            }
        }
        Ok(())
    }
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.begin_array(w)
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.end_array(w)
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.inner.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.end_array_value(w)
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.begin_object(w)
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.end_object(w)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.inner.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.end_object_value(w)
    }
}
