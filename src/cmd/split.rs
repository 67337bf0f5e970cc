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
    /// Print what was written as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// fsync every file written (and its directory) before exiting, so the
    /// output survives a power loss. Without it the output is still written
    /// atomically (temporary file, then rename) and the OS writes it back.
    #[arg(long)]
    pub sync: bool,
    /// A sharding plan (JSON, see README "Tensor- and pipeline-parallel"):
    /// write one pre-sharded file per rank instead,
    /// OUTDIR/model-rank-{R}-part-0.safetensors. FILE may then also be an
    /// index or a directory of shards.
    #[arg(long, value_name = "PLAN.json", requires = "world_size")]
    pub plan: Option<PathBuf>,
    /// Number of ranks, with --plan.
    #[arg(long, value_name = "N", requires = "plan")]
    pub world_size: Option<usize>,
}

/// A byte progress bar on stderr, only when stderr is a terminal.
pub(crate) fn byte_progress(label: &'static str) -> impl FnMut(u64, u64) {
    use std::io::IsTerminal;
    let mut bar: Option<indicatif::ProgressBar> = None;
    let enabled = std::io::stderr().is_terminal();
    move |done, total| {
        if !enabled {
            return;
        }
        let b = bar.get_or_insert_with(|| {
            let b = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                b.set_style(style);
            }
            b.set_message(label);
            b
        });
        b.set_position(done);
        if done >= total {
            b.finish_and_clear();
        }
    }
}

pub fn run(args: Args) -> CmdResult {
    if let (Some(plan), Some(world)) = (&args.plan, args.world_size) {
        return super::parallel::split(
            &args.file,
            &args.outdir,
            plan,
            world,
            args.json,
            super::durability(args.sync),
        );
    }
    let max = shard::parse_size(&args.max_shard_size).map_err(|e| Failure {
        code: EXIT_USAGE,
        error: anyhow::anyhow!("--max-shard-size: {e}"),
    })?;
    let mut progress = byte_progress("split");
    let report = shard::split_with_progress(
        &args.file,
        &args.outdir,
        max,
        super::durability(args.sync),
        &mut progress,
    )
    .map_err(format_failure)?;
    if args.json {
        let doc = serde_json::json!({
            "shards": report.shards.iter().map(|(p, t, b)| serde_json::json!({
                "path": p.display().to_string(), "tensors": t, "bytes": b,
            })).collect::<Vec<_>>(),
            "index": report.index.as_ref().map(|p| p.display().to_string()),
            "total_size": report.total_size,
            "stale": report.stale.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        });
        write_stdout(&format!("{doc:#}\n"))?;
        warn_stale(&report.stale);
        return Ok(EXIT_OK);
    }
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
    warn_stale(&report.stale);
    Ok(EXIT_OK)
}

fn warn_stale(stale: &[PathBuf]) {
    for stale in stale {
        eprintln!(
            "warning: {} is not part of this split (left over from an earlier one?); loaders that glob shards may pick it up",
            stale.display()
        );
    }
}
