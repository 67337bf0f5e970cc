//! Sign and verify model directories in the OpenSSF Model Signing (OMS v1.0)
//! format, interoperable with the `model-signing` Python package (1.1.1,
//! `sign key` / `verify key`).
//!
//! The pipeline:
//! 1. [`manifest::hash_model`] lists every file of the model (ignore and
//!    symlink rules of model-signing) and hashes them with SHA-256 in
//!    parallel, giving a [`Manifest`].
//! 2. [`sign_manifest`] writes the manifest as an in-toto statement, signs
//!    its DSSE pre-authentication encoding with an ECDSA key and wraps it in
//!    a Sigstore bundle.
//! 3. [`verify_bundle`] checks the key hint and the signature *before*
//!    reading the statement, then returns the signed manifest;
//!    [`verify_model`] also hashes the local model and [`compare`]s file by
//!    file.
//!
//! ```no_run
//! use std::path::Path;
//! use tensorseal_sign::{manifest, keys::PrivateKey, sign_manifest};
//! let key = PrivateKey::from_pem(&std::fs::read("key.pem")?, None, "key.pem")?;
//! let m = manifest::hash_model(Path::new("model"), &manifest::HashOptions::new(), &())?;
//! std::fs::write("model.sig", sign_manifest(&m, &key))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bundle;
pub mod dsse;
pub mod error;
pub mod keys;
pub mod manifest;

use std::path::Path;

pub use error::{Result, SignError};
pub use manifest::{HashOptions, IgnorePath, Manifest, Resource};

use keys::{PrivateKey, PublicKey};

/// Largest signature file read (a manifest of millions of files fits).
pub const MAX_SIGNATURE_BYTES: u64 = 1 << 30;

/// Signs a manifest: returns the Sigstore bundle JSON to write to disk.
pub fn sign_manifest(m: &Manifest, key: &PrivateKey) -> Vec<u8> {
    let payload = bundle::statement_json(m);
    let sig = key.sign_der(&dsse::pae(dsse::IN_TOTO_PAYLOAD_TYPE, &payload));
    bundle::bundle_json(&payload, &sig, &key.public_key().hint())
}

/// Checks a bundle's key hint and signature with `key`, and only then parses
/// and returns the signed manifest.
pub fn verify_bundle(bundle_bytes: &[u8], key: &PublicKey) -> Result<Manifest> {
    let b = bundle::parse_bundle(bundle_bytes)?;
    let hint = key.hint();
    if let Some(expected) = &b.hint {
        if !expected.eq_ignore_ascii_case(&hint) {
            return Err(SignError::KeyMismatch {
                expected: expected.clone(),
                actual: hint,
            });
        }
    }
    let ok = key.verify(&dsse::pae(&b.payload_type, &b.payload), &b.signature)
        || key.verify(&dsse::pae_compat(&b.payload_type, &b.payload), &b.signature);
    if !ok {
        return Err(SignError::BadSignature { curve: key.curve() });
    }
    bundle::parse_statement(&b.payload_type, &b.payload)
}

/// A file whose digest differs from the signed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    /// Resource name.
    pub name: String,
    /// Signed digest (hex).
    pub expected: String,
    /// Digest of the local file (hex).
    pub actual: String,
}

/// File-by-file comparison of a signed manifest with a local one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Files present in both with the same digest.
    pub matched: usize,
    /// Files present in both whose content differs.
    pub changed: Vec<Changed>,
    /// Signed files that are not in the local model.
    pub missing: Vec<String>,
    /// Local files that the signature does not list.
    pub extra: Vec<String>,
}

impl Comparison {
    /// True when the local model is exactly the signed one.
    pub fn is_match(&self) -> bool {
        self.changed.is_empty() && self.missing.is_empty() && self.extra.is_empty()
    }
}

/// Compares two manifests (both in canonical order) by name and digest.
pub fn compare(expected: &Manifest, actual: &Manifest) -> Comparison {
    use std::cmp::Ordering;
    let mut c = Comparison::default();
    let mut e = expected.resources.iter().peekable();
    let mut a = actual.resources.iter().peekable();
    loop {
        match (e.peek(), a.peek()) {
            (None, None) => break,
            (Some(x), None) => {
                c.missing.push(x.name.clone());
                e.next();
            }
            (None, Some(y)) => {
                c.extra.push(y.name.clone());
                a.next();
            }
            (Some(x), Some(y)) => match manifest::compare_names(&x.name, &y.name) {
                Ordering::Less => {
                    c.missing.push(x.name.clone());
                    e.next();
                }
                Ordering::Greater => {
                    c.extra.push(y.name.clone());
                    a.next();
                }
                Ordering::Equal => {
                    if x.digest == y.digest && x.algorithm == y.algorithm {
                        c.matched += 1;
                    } else {
                        c.changed.push(Changed {
                            name: x.name.clone(),
                            expected: x.digest_hex(),
                            actual: y.digest_hex(),
                        });
                    }
                    e.next();
                    a.next();
                }
            },
        }
    }
    c
}

/// Options of [`verify_model`].
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Hashing options (ignore paths from the command line, git paths,
    /// symlinks). The ignore paths recorded in the signature are added.
    pub hash: HashOptions,
    /// Only hash the files the signature lists: extra files are not reported.
    pub ignore_unsigned_files: bool,
}

/// The outcome of [`verify_model`] once the signature is authentic.
#[derive(Debug, Clone)]
pub struct Verification {
    /// The signed manifest.
    pub expected: Manifest,
    /// The manifest of the local model.
    pub actual: Manifest,
    /// File-by-file differences.
    pub comparison: Comparison,
}

/// Verifies a model directory against a bundle: signature first, then every
/// file. `Err` means the signature could not be checked or is not valid;
/// `Ok` carries the comparison, which may still show differences.
pub fn verify_model(
    model: &Path,
    bundle_bytes: &[u8],
    key: &PublicKey,
    opts: &VerifyOptions,
    progress: &dyn manifest::Progress,
) -> Result<Verification> {
    let expected = verify_bundle(bundle_bytes, key)?;
    let mut hash_opts = opts.hash.clone();
    hash_opts.ignore_paths.extend(
        expected
            .serialization
            .ignore_paths
            .iter()
            .filter_map(|p| IgnorePath::parse(p)),
    );
    let mut files = manifest::list_files(model, &hash_opts)?;
    if opts.ignore_unsigned_files {
        files.retain(|f| {
            expected
                .resources
                .binary_search_by(|r| manifest::compare_names(&r.name, &f.name))
                .is_ok()
        });
    }
    let resources = manifest::hash_files(&files, progress)?;
    let actual = Manifest {
        model_name: manifest::model_name(model),
        serialization: manifest::Serialization {
            method: "files".into(),
            hash_type: "sha256".into(),
            allow_symlinks: hash_opts.allow_symlinks,
            ignore_paths: hash_opts.recorded_ignores(),
        },
        resources,
    };
    let comparison = compare(&expected, &actual);
    Ok(Verification {
        expected,
        actual,
        comparison,
    })
}
