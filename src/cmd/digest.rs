//! `tensorseal digest`.

use std::path::PathBuf;

use tensorseal_sign::manifest::{self, to_hex};

use super::progress::Bar;
use super::sign::{hash_options, HashArgs};
use super::{write_json, write_stdout, CmdResult, EXIT_OK};

/// Arguments of `digest`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model: a directory (or a single file).
    pub model: PathBuf,
    /// Signature path that `sign` would write; left out of the digest when it
    /// lies inside MODEL, so the digest equals the one `sign` signs.
    #[arg(long, value_name = "PATH", default_value = "model.sig")]
    pub signature: PathBuf,
    #[command(flatten)]
    pub hash: HashArgs,
    /// Print the whole manifest (every file and its digest) as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> CmdResult {
    let opts = hash_options(&args.model, &args.hash, Some(&args.signature))?;
    let bar = Bar::bytes("hashing");
    let m = manifest::hash_model(&args.model, &opts, &bar)?;
    bar.finish();
    let root = to_hex(&m.root_digest());
    if args.json {
        let mut ser = serde_json::Map::new();
        ser.insert("method".into(), m.serialization.method.clone().into());
        ser.insert("hash_type".into(), m.serialization.hash_type.clone().into());
        ser.insert(
            "allow_symlinks".into(),
            m.serialization.allow_symlinks.into(),
        );
        ser.insert(
            "ignore_paths".into(),
            m.serialization.ignore_paths.clone().into(),
        );
        let out = serde_json::json!({
            "model_name": m.model_name,
            "root_digest": {"sha256": root},
            "serialization": ser,
            "resources": m.resources.iter().map(|r| serde_json::json!({
                "name": r.name, "algorithm": r.algorithm, "digest": r.digest_hex(),
            })).collect::<Vec<_>>(),
        });
        write_json("tensorseal-digest/1", out)?;
    } else {
        write_stdout(&format!("{root}\n"))?;
    }
    Ok(EXIT_OK)
}
