//! `tensorseal verify`.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use tensorseal_sign::keys::PublicKey;
use tensorseal_sign::manifest::to_hex;
use tensorseal_sign::{SignError, VerifyOptions, MAX_SIGNATURE_BYTES};

use super::progress::Bar;
use super::sign::{hash_options, HashArgs};
use super::{
    plural, write_json, write_stdout, CmdResult, Failure, EXIT_INVALID, EXIT_OK, EXIT_USAGE,
};

/// Arguments of `verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model: a directory (or a single file).
    pub model: PathBuf,
    /// ECDSA P-256, P-384 or P-521 public key, PEM SubjectPublicKeyInfo.
    #[arg(long, value_name = "PEM")]
    pub public_key: PathBuf,
    /// The signature (Sigstore bundle) to check.
    #[arg(long, value_name = "PATH", default_value = "model.sig")]
    pub signature: PathBuf,
    #[command(flatten)]
    pub hash: HashArgs,
    /// Only check the files the signature lists; files added since signing
    /// are not reported.
    #[arg(long)]
    pub ignore_unsigned_files: bool,
    /// Print one JSON document on stdout (also when verification fails).
    #[arg(long)]
    pub json: bool,
}

fn error_kind(e: &SignError) -> &'static str {
    match e {
        SignError::KeyMismatch { .. } => "key_mismatch",
        SignError::BadSignature { .. } => "bad_signature",
        SignError::Malformed(_) => "malformed",
        SignError::Unsupported(_) => "unsupported",
        SignError::Inconsistent(_) => "inconsistent",
        SignError::Key { .. } => "key",
        _ => "io",
    }
}

pub fn run(args: Args) -> CmdResult {
    let r = check(&args);
    if args.json {
        match &r {
            Err((kind, f)) if *kind != "mismatch" => {
                let out = serde_json::json!({
                    "verified": false,
                    "model": args.model.display().to_string(),
                    "signature": args.signature.display().to_string(),
                    "error_kind": kind,
                    "error": f.message(),
                });
                // stdout already failed if this fails: the error below says why.
                let _ = write_json(SCHEMA, out);
            }
            _ => {}
        }
    }
    r.map_err(|(_, f)| f)
}

const SCHEMA: &str = "tensorseal-verify/1";

/// A private key PEM where the public key belongs: refused, although its
/// public half could be derived, because handing a private key to every
/// verifier is the mistake worth catching.
fn refuse_private_key(pem: &[u8], path: &std::path::Path) -> Result<(), Failure> {
    let text = String::from_utf8_lossy(pem);
    let private = text.lines().any(|l| {
        let l = l.trim();
        l.starts_with("-----BEGIN ") && l.ends_with("PRIVATE KEY-----")
    });
    if private {
        return Err(Failure::usage(anyhow!(
            "--public-key {}: this is a private key; verify with its public half \
             (`openssl pkey -in {} -pubout`), and keep the private key secret",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

type Checked = Result<u8, (&'static str, Failure)>;

fn check(args: &Args) -> Checked {
    let key_bytes = super::read_secret(&args.public_key, "public key").map_err(|e| ("io", e))?;
    refuse_private_key(&key_bytes, &args.public_key).map_err(|e| ("key", e))?;
    let key = PublicKey::from_pem(&key_bytes, &args.public_key.display().to_string())
        .map_err(|e| ("key", Failure::usage(e)))?;
    let bundle = read_limited(&args.signature).map_err(|e| ("io", e))?;
    let hash =
        hash_options(&args.model, &args.hash, Some(&args.signature)).map_err(|e| ("usage", e))?;
    let opts = VerifyOptions {
        hash,
        ignore_unsigned_files: args.ignore_unsigned_files,
    };
    let bar = Bar::bytes("verifying");
    let v = tensorseal_sign::verify_model(&args.model, &bundle, &key, &opts, &bar);
    bar.finish();
    let v = v.map_err(|e| {
        let kind = error_kind(&e);
        let code = if e.is_environment() {
            EXIT_USAGE
        } else {
            EXIT_INVALID
        };
        let hint = match &e {
            SignError::SymlinkRefused { .. } => " (was the model signed with --allow-symlinks?)",
            _ => "",
        };
        let err = anyhow!("{}: {e}{hint}", args.signature.display());
        (kind, Failure::usage(err).with_code(code))
    })?;
    let c = &v.comparison;
    let root = to_hex(&v.expected.root_digest());
    if args.json {
        let out = serde_json::json!({
            "verified": c.is_match(),
            "model": args.model.display().to_string(),
            "signature": args.signature.display().to_string(),
            "key_hint": key.hint(),
            "curve": key.curve(),
            "root_digest": root,
            "files": v.expected.len(),
            "matched": c.matched,
            "changed": c.changed.iter().map(|x| serde_json::json!({
                "name": x.name, "expected": x.expected, "actual": x.actual,
            })).collect::<Vec<_>>(),
            "missing": c.missing,
            "extra": c.extra,
        });
        write_json(SCHEMA, out).map_err(|e| ("io", e))?;
    } else {
        let mut out = String::new();
        for x in &c.changed {
            out.push_str(&format!(
                "changed  {}  (signed sha256 {}, found {})\n",
                x.name, x.expected, x.actual
            ));
        }
        for x in &c.missing {
            out.push_str(&format!("missing  {x}\n"));
        }
        for x in &c.extra {
            out.push_str(&format!("extra    {x}\n"));
        }
        write_stdout(&out).map_err(|e| ("io", e))?;
    }
    if c.is_match() {
        eprintln!(
            "verified {}: {} match {} (root sha256 {}, {} key)",
            args.model.display(),
            plural(c.matched as u64, "file"),
            args.signature.display(),
            root,
            key.curve()
        );
        Ok(EXIT_OK)
    } else {
        Err((
            "mismatch",
            Failure::invalid(anyhow!(
                "{} does not match {} (signature valid): {} changed, {} missing, {} extra",
                args.model.display(),
                args.signature.display(),
                c.changed.len(),
                c.missing.len(),
                c.extra.len()
            )),
        ))
    }
}

/// Reads the signature file, refusing one larger than [`MAX_SIGNATURE_BYTES`].
fn read_limited(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    // A signature is model input: never block on a FIFO or read a device.
    let f = tensorseal_format::open_regular(path)
        .with_context(|| format!("reading signature {}", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_SIGNATURE_BYTES + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading signature {}", path.display()))?;
    if buf.len() as u64 > MAX_SIGNATURE_BYTES {
        return Err(Failure::invalid(anyhow!(
            "{}: larger than {MAX_SIGNATURE_BYTES} bytes, not a signature",
            path.display()
        )));
    }
    Ok(buf)
}
