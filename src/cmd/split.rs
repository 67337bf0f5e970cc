//! `tensorseal split`: shard a file like Hugging Face `save_pretrained`.

use std::path::PathBuf;

use tensorseal_format::shard;

use super::{format_failure, write_stdout, CmdResult, Failure, EXIT_OK, EXIT_USAGE};

/// Arguments of `split`.
#[derive(clap::Args)]
pub struct Args {
    /// The .safetensors file to split.
    pub file: PathBuf,
    /// Directory to write the shards and model.safetensors.index.json into.
    pub outdir: PathBuf,
    /// Largest shard (tensor bytes): 5GB, 500MB, 10GiB, or a number of bytes.
    /// GB/MB/KB are powers of 10, GiB/MiB/KiB powers of 2, as in Hugging Face.
    #[arg(long, default_value = "5GB", value_name = "SIZE")]
    pub max_shard_size: String,
}

pub fn run(args: Args) -> CmdResult {
    let max = shard::parse_size(&args.max_shard_size).map_err(|e| Failure {
        code: EXIT_USAGE,
        error: anyhow::anyhow!("--max-shard-size: {e}"),
    })?;
    let report = shard::split(&args.file, &args.outdir, max).map_err(format_failure)?;
    let mut out = String::new();
    for (path, tensors, bytes) in &report.shards {
        out.push_str(&format!(
            "{}\t{tensors} tensors\t{bytes} bytes\n",
            path.display()
        ));
    }
    if let Some(index) = &report.index {
        out.push_str(&format!(
            "{}\ttotal_size {}\n",
            index.display(),
            report.total_size
        ));
    }
    write_stdout(&out)?;
    Ok(EXIT_OK)
}
