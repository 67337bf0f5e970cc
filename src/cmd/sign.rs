//! `tensorseal sign`, and what `sign`, `verify` and `digest` share: key and
//! ignore-path handling.

use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, Context};
use serde::Serialize;
use tensorseal_sign::keys::PrivateKey;
use tensorseal_sign::manifest;
use tensorseal_sign::{HashOptions, IgnorePath};

use super::progress::Bar;
use super::{bytes, plural, write_json, CmdResult, Failure, EXIT_OK};

/// Hashing options shared by `sign`, `verify` and `digest`.
#[derive(clap::Args, Debug, Clone)]
pub struct HashArgs {
    /// A path to leave out (a file, or a directory with everything below
    /// it); repeat the flag for more, one path each, as model_signing takes
    /// it. Relative paths are taken from the current directory, as
    /// model_signing does; paths outside MODEL have no effect.
    #[arg(long = "ignore-paths", value_name = "PATH")]
    pub ignore_paths: Vec<PathBuf>,
    /// Include git metadata (.git/, .gitattributes, .github/, .gitignore),
    /// which is ignored by default.
    #[arg(long)]
    pub no_ignore_git_paths: bool,
    /// Follow symbolic links to files (links to directories are skipped).
    /// Without it, any link in the model is an error.
    #[arg(long)]
    pub allow_symlinks: bool,
}

/// Arguments of `sign`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model: a directory (or a single file).
    pub model: PathBuf,
    /// ECDSA P-256, P-384 or P-521 private key, PEM (PKCS#8, SEC1 or encrypted PKCS#8).
    #[arg(long, value_name = "PEM")]
    pub private_key: PathBuf,
    /// Where to write the signature (a Sigstore bundle). Ignored when hashing
    /// if it lies inside MODEL.
    #[arg(long, value_name = "PATH", default_value = "model.sig")]
    pub signature: PathBuf,
    /// File holding the password of an encrypted private key (first line).
    /// The TENSORSEAL_KEY_PASSWORD environment variable also works.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    #[command(flatten)]
    pub hash: HashArgs,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Turns a command-line path into an ignore path relative to the model, as
/// model_signing's `_resolve_ignore_paths` does. `None` when outside.
pub(crate) fn relative_to_model(model: &Path, p: &Path) -> Option<IgnorePath> {
    let root = manifest::resolve_lenient(model);
    let cand = manifest::resolve_lenient(p);
    let rel = cand.strip_prefix(&root).ok()?;
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_str()?.to_owned()),
            _ => return None,
        }
    }
    IgnorePath::parse(&parts.join("/"))
}

/// Builds the hashing options: command-line ignore paths (plus the signature
/// path) made relative to the model, git paths, symlinks.
pub(crate) fn hash_options(
    model: &Path,
    args: &HashArgs,
    signature: Option<&Path>,
) -> Result<HashOptions, Failure> {
    let mut opts = HashOptions::new();
    opts.ignore_git_paths = !args.no_ignore_git_paths;
    opts.allow_symlinks = args.allow_symlinks;
    for p in &args.ignore_paths {
        match relative_to_model(model, p) {
            Some(i) if i.is_root() => {
                return Err(Failure::usage(anyhow!(
                    "--ignore-paths {}: that is the model itself; nothing would be signed",
                    p.display()
                )))
            }
            Some(i) => opts.ignore_paths.push(i),
            None => eprintln!(
                "warning: --ignore-paths {}: not inside {}, has no effect (relative paths are \
                 taken from the current directory)",
                p.display(),
                model.display()
            ),
        }
    }
    if let Some(sig) = signature {
        match relative_to_model(model, sig) {
            Some(i) if i.is_root() => {
                return Err(Failure::usage(anyhow!(
                    "--signature {} is the model file itself",
                    sig.display()
                )))
            }
            Some(i) => opts.ignore_paths.push(i),
            None => {}
        }
    }
    Ok(opts)
}

/// Reads the password of an encrypted key, if one was given.
fn password(args: &Args) -> Result<Option<Vec<u8>>, Failure> {
    if let Some(f) = &args.password_file {
        let bytes = super::read_secret(f, "password file")?;
        let s = String::from_utf8(bytes)
            .with_context(|| format!("reading password file {}", f.display()))?;
        return Ok(Some(s.lines().next().unwrap_or("").as_bytes().to_vec()));
    }
    Ok(std::env::var("TENSORSEAL_KEY_PASSWORD")
        .ok()
        .map(String::into_bytes))
}

pub fn run(args: Args) -> CmdResult {
    let key_bytes = super::read_secret(&args.private_key, "private key")?;
    let pw = password(&args)?;
    let key = PrivateKey::from_pem(
        &key_bytes,
        pw.as_deref(),
        &args.private_key.display().to_string(),
    )?;
    let opts = hash_options(&args.model, &args.hash, Some(&args.signature))?;
    let bar = Bar::bytes("hashing");
    let files = manifest::list_files(&args.model, &opts)?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    let resources = manifest::hash_files(&files, &bar)?;
    bar.finish();
    let m = tensorseal_sign::Manifest {
        model_name: manifest::model_name(&args.model),
        serialization: manifest::Serialization {
            method: "files".into(),
            hash_type: "sha256".into(),
            allow_symlinks: opts.allow_symlinks,
            ignore_paths: opts.recorded_ignores(),
        },
        resources,
    };
    let bundle = tensorseal_sign::sign_manifest(&m, &key);
    std::fs::write(&args.signature, &bundle)
        .with_context(|| format!("writing signature {}", args.signature.display()))?;
    let root = manifest::to_hex(&m.root_digest());
    if args.json {
        write_json(
            "tensorseal-sign/1",
            SignDoc {
                model: args.model.display().to_string(),
                signature: args.signature.display().to_string(),
                files: m.len(),
                bytes: total,
                root_digest: root.clone(),
                key_hint: key.public_key().hint(),
                curve: key.curve(),
            },
        )?;
    }
    eprintln!(
        "signed {} ({}, {}, root sha256 {}) with {} key -> {}",
        args.model.display(),
        plural(m.len() as u64, "file"),
        bytes(total),
        root,
        key.curve(),
        args.signature.display()
    );
    Ok(EXIT_OK)
}

#[derive(Serialize)]
struct SignDoc {
    model: String,
    signature: String,
    files: usize,
    bytes: u64,
    root_digest: String,
    key_hint: String,
    curve: &'static str,
}
