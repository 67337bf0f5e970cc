//! `tensorseal merge`: join a sharded checkpoint into one file.

use std::path::PathBuf;

use tensorseal_format::shard;

use super::{format_failure, write_stdout, CmdResult, EXIT_OK};

/// Arguments of `merge`.
#[derive(clap::Args)]
pub struct Args {
    /// A *.safetensors.index.json, or the directory holding it.
    pub index_or_dir: PathBuf,
    /// The .safetensors file to write (atomically).
    pub out: PathBuf,
    /// Print what was written as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// fsync every file written (and its directory) before exiting, so the
    /// output survives a power loss. Without it the output is still written
    /// atomically (temporary file, then rename) and the OS writes it back.
    #[arg(long)]
    pub sync: bool,
}

pub fn run(args: Args) -> CmdResult {
    let mut progress = super::split::byte_progress("merge");
    let r = shard::merge_with_progress(
        &args.index_or_dir,
        &args.out,
        super::durability(args.sync),
        &mut progress,
    )
    .map_err(format_failure)?;
    if args.json {
        let doc = serde_json::json!({
            "path": args.out.display().to_string(),
            "shards": r.shards,
            "tensors": r.tensors,
            "bytes": r.data_bytes,
        });
        write_stdout(&format!("{doc:#}\n"))?;
        return Ok(EXIT_OK);
    }
    write_stdout(&format!(
        "{}\t{} tensors from {} shards\t{} bytes\n",
        args.out.display(),
        r.tensors,
        r.shards,
        r.data_bytes
    ))?;
    Ok(EXIT_OK)
}
