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
}

pub fn run(args: Args) -> CmdResult {
    let r = shard::merge(&args.index_or_dir, &args.out).map_err(format_failure)?;
    write_stdout(&format!(
        "{}\t{} tensors from {} shards\t{} bytes\n",
        args.out.display(),
        r.tensors,
        r.shards,
        r.data_bytes
    ))?;
    Ok(EXIT_OK)
}
