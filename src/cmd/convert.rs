//! `tensorseal convert`: pickle checkpoints (torch zip, legacy torch, NumPy)
//! to safetensors without running them, and safetensors back to torch.

use std::io::IsTerminal;
use std::path::PathBuf;

use tensorseal_convert::{ConvertError, Options, Progress, Report};
use tensorseal_format::shard;

use super::{write_stdout, CmdResult, Failure, EXIT_INVALID, EXIT_OK, EXIT_USAGE};

/// Arguments of `convert`.
#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint file (.bin/.pt/.pth/.ckpt, .npy/.npz) or Hugging Face model
    /// directory (pytorch_model.bin, or shards + pytorch_model.bin.index.json).
    /// With --to torch: a .safetensors file, index or directory.
    pub src: PathBuf,
    /// Output: a .safetensors file, or a directory (model.safetensors, or
    /// shards + model.safetensors.index.json). With --to torch: a .pt file.
    pub dst: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "safetensors")]
    pub to: Target,
    /// Dotted path of the object to convert in a nested checkpoint (e.g.
    /// `state_dict` or `model.ema`). Default: the first of state_dict,
    /// model_state_dict, model_state, model, module that holds tensors.
    #[arg(long, value_name = "PATH")]
    pub select: Option<String>,
    /// Keep every tensor of the whole checkpoint under its dotted path.
    #[arg(long, conflicts_with = "select")]
    pub flatten: bool,
    /// Shard the output directory: 5GB, 500MB, 10GiB or bytes (HF rules).
    #[arg(long, value_name = "SIZE")]
    pub max_shard_size: Option<String>,
    /// Skip re-reading the output and comparing it with the input.
    #[arg(long)]
    pub no_verify: bool,
    /// Replace existing output files.
    #[arg(long)]
    pub force: bool,
    /// Print a JSON report on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Output formats of `convert`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Target {
    /// safetensors (default).
    Safetensors,
    /// torch zip checkpoint loadable with torch.load(weights_only=True).
    Torch,
}

fn failure(e: ConvertError) -> Failure {
    Failure {
        code: if e.is_invalid_input() {
            EXIT_INVALID
        } else {
            EXIT_USAGE
        },
        error: anyhow::anyhow!("{e}"),
    }
}

pub fn run(args: Args) -> CmdResult {
    let max_shard_size = match &args.max_shard_size {
        Some(s) => Some(shard::parse_size(s).map_err(|e| Failure {
            code: EXIT_USAGE,
            error: anyhow::anyhow!("--max-shard-size: {e}"),
        })?),
        None => None,
    };
    let report = match args.to {
        Target::Torch => {
            if args.select.is_some() || args.flatten || max_shard_size.is_some() {
                return Err(Failure {
                    code: EXIT_USAGE,
                    error: anyhow::anyhow!(
                        "--select, --flatten and --max-shard-size apply to safetensors output only"
                    ),
                });
            }
            tensorseal_convert::to_torch(&args.src, &args.dst, !args.no_verify, args.force)
                .map_err(failure)?
        }
        Target::Safetensors => {
            let opts = Options {
                select: args.select.clone(),
                flatten: args.flatten,
                max_shard_size,
                verify: !args.no_verify,
                overwrite: args.force,
            };
            let show = std::io::stderr().is_terminal() && !args.json;
            let mut bar: Option<indicatif::ProgressBar> = None;
            let mut on = |p: Progress<'_>| match p {
                Progress::Start { total_bytes, .. } if show => {
                    let b = indicatif::ProgressBar::new(total_bytes);
                    if let Ok(style) = indicatif::ProgressStyle::with_template(
                        "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})",
                    ) {
                        b.set_style(style.progress_chars("=> "));
                    }
                    b.set_message("converting");
                    bar = Some(b);
                }
                Progress::Tensor { bytes, .. } => {
                    if let Some(b) = &bar {
                        b.inc(bytes);
                    }
                }
                Progress::Verify => {
                    if let Some(b) = &bar {
                        b.set_message("verifying");
                    }
                }
                _ => {}
            };
            let r = tensorseal_convert::to_safetensors(&args.src, &args.dst, &opts, &mut on);
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            r.map_err(failure)?
        }
    };
    if let Some(key) = &report.chosen {
        eprintln!(
            "note: nested checkpoint: converting `{key}` (choose with --select PATH, or --flatten)"
        );
    }
    if args.json {
        write_stdout(&format!("{}\n", json_report(&report)))?;
    } else {
        let mut out = String::new();
        for o in &report.outputs {
            out.push_str(&format!("{}\n", o.display()));
        }
        if let Some(ix) = &report.index {
            out.push_str(&format!("{}\n", ix.display()));
        }
        write_stdout(&out)?;
        eprintln!(
            "converted {} tensors ({} bytes) from {}{}{}",
            report.tensors,
            report.total_bytes,
            report.format.map(|f| f.name()).unwrap_or("?"),
            if report.aliases.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} identical aliases recorded in metadata",
                    report.aliases.len()
                )
            },
            if report.verified { ", verified" } else { "" }
        );
    }
    Ok(EXIT_OK)
}

fn json_report(r: &Report) -> serde_json::Value {
    serde_json::json!({
        "inputs": r.inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "format": r.format.map(|f| f.name()),
        "selected": r.chosen,
        "tensors": r.tensors,
        "aliases": r.aliases.iter().map(|(a, k)| serde_json::json!({"alias": a, "kept": k})).collect::<Vec<_>>(),
        "values_in_metadata": r.values,
        "outputs": r.outputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "index": r.index.as_ref().map(|p| p.display().to_string()),
        "total_bytes": r.total_bytes,
        "verified": r.verified,
    })
}
