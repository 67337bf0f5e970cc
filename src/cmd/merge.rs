//! `tensorseal merge`: join a sharded checkpoint into one file.

use std::path::PathBuf;

use serde::Serialize;
use tensorseal_format::shard;

use super::progress::Bar;
use super::{bytes, plural, write_json, write_stdout, CmdResult, Failure, EXIT_OK};

/// Arguments of `merge`.
#[derive(clap::Args)]
pub struct Args {
    /// A *.safetensors.index.json, or the directory holding it.
    pub index_or_dir: PathBuf,
    /// The .safetensors file to write (atomically).
    pub out: PathBuf,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub force: bool,
    /// Print what was written as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// fsync every file written (and its directory) before exiting, so the
    /// output survives a power loss. Without it the output is still written
    /// atomically (temporary file, then rename) and the OS writes it back.
    #[arg(long)]
    pub sync: bool,
}

#[derive(Serialize)]
struct MergeDoc {
    path: String,
    shards: usize,
    tensors: usize,
    bytes: u64,
}

pub fn run(args: Args) -> CmdResult {
    if !args.force && std::fs::symlink_metadata(&args.out).is_ok() {
        return Err(Failure::usage(anyhow::anyhow!(
            "{} exists (use --force to replace it)",
            args.out.display()
        )));
    }
    let bar = Bar::bytes("merge");
    let r = shard::merge_with_progress(
        &args.index_or_dir,
        &args.out,
        super::durability(args.sync),
        &mut |done, total| bar.update(done, total),
    )?;
    bar.finish();
    if args.json {
        return write_json(
            "tensorseal-merge/1",
            MergeDoc {
                path: args.out.display().to_string(),
                shards: r.shards,
                tensors: r.tensors,
                bytes: r.data_bytes,
            },
        )
        .map(|()| EXIT_OK);
    }
    write_stdout(&format!(
        "{}\t{} from {}\t{}\n",
        args.out.display(),
        plural(r.tensors as u64, "tensor"),
        plural(r.shards as u64, "shard"),
        bytes(r.data_bytes)
    ))?;
    Ok(EXIT_OK)
}
