//! `tensorseal convert`: pickle checkpoints (torch zip, legacy torch, NumPy)
//! to safetensors without running them, and safetensors back to torch.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tensorseal_convert::{Options, Progress, Report, Verify};

use super::args::{parse_size, Size};
use super::progress::Bar;
use super::{bytes, plural, write_json, write_stdout, CmdResult, Failure, EXIT_OK};

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
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_shard_size: Option<Size>,
    /// Check the output after writing it. checksum: hash each tensor while
    /// copying it, then re-read only the output and compare hashes, names,
    /// dtypes and shapes. full: re-read the input and the output and compare
    /// every byte (also catches an input that changes or reads back
    /// differently). none: no check. With --to torch, checksum and full both
    /// re-read both files.
    #[arg(long, value_enum, value_name = "MODE", default_value = "checksum")]
    pub verify: VerifyMode,
    /// Same as --verify none.
    #[arg(long, conflicts_with = "verify")]
    pub no_verify: bool,
    /// Most tensor bytes the output may hold (5GB, 500MB, 10GiB or bytes),
    /// checked before anything is written. Default: twice the input's data
    /// plus 256 MiB. Expanded (stride-0) and overlapping views are written
    /// as torch returns them, so a few input bytes can stand for far more
    /// output; this bounds it.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_output_size: Option<Size>,
    /// Replace existing output files.
    #[arg(long)]
    pub force: bool,
    /// Print a JSON report on stdout.
    #[arg(long)]
    pub json: bool,
    /// fsync every file written (and its directory) before exiting, so the
    /// output survives a power loss. Without it the output is still written
    /// atomically (temporary file, then rename) and the OS writes it back.
    #[arg(long)]
    pub sync: bool,
}

/// Verification modes of `convert`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum VerifyMode {
    /// Per-tensor XXH3-128 of the copied bytes; only the output is re-read.
    Checksum,
    /// Re-read input and output, compare every byte.
    Full,
    /// No check.
    None,
}

/// Output formats of `convert`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Target {
    /// safetensors (default).
    Safetensors,
    /// torch zip checkpoint loadable with torch.load(weights_only=True).
    Torch,
}

/// SIGINT and SIGTERM while converting: the first sets `cancel`, which the
/// converter checks between pieces of 1 MiB, so that it stops, removes its
/// temporary file and returns; the binary then exits 128 + the signal
/// number (130 for SIGINT). A second signal exits at once.
struct Signals {
    cancel: Arc<AtomicBool>,
    which: Arc<AtomicUsize>,
}

impl Signals {
    fn install() -> Signals {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let cancel = Arc::new(AtomicBool::new(false));
        let which = Arc::new(AtomicUsize::new(0));
        for sig in [SIGINT, SIGTERM] {
            // Registration fails only for forbidden signals; without a
            // handler the default action (terminate) stays.
            let code = 128 + sig;
            let _ =
                signal_hook::flag::register_conditional_shutdown(sig, code, Arc::clone(&cancel));
            let _ = signal_hook::flag::register_usize(sig, Arc::clone(&which), code as usize);
            let _ = signal_hook::flag::register(sig, Arc::clone(&cancel));
        }
        Signals { cancel, which }
    }

    /// The exit code for the signal received, if any.
    fn exit_code(&self) -> Option<u8> {
        match self.which.load(Ordering::SeqCst) {
            0 => None,
            n => u8::try_from(n).ok(),
        }
    }
}

pub fn run(args: Args) -> CmdResult {
    // Only the safetensors direction polls the flag; `--to torch` keeps the
    // default action of the signals.
    let signals = matches!(args.to, Target::Safetensors).then(Signals::install);
    match convert(args, signals.as_ref()) {
        Err(f) => Err(match signals.as_ref().and_then(Signals::exit_code) {
            Some(code) => f.with_code(code),
            None => f,
        }),
        ok => ok,
    }
}

fn convert(args: Args, signals: Option<&Signals>) -> CmdResult {
    let verify = match (args.no_verify, args.verify) {
        (true, _) | (_, VerifyMode::None) => Verify::Off,
        (_, VerifyMode::Checksum) => Verify::Checksum,
        (_, VerifyMode::Full) => Verify::Full,
    };
    let max_shard_size = args.max_shard_size.map(|s| s.0);
    let max_output_size = args.max_output_size.map(|s| s.0);
    let report = match args.to {
        Target::Torch => {
            if args.select.is_some()
                || args.flatten
                || max_shard_size.is_some()
                || max_output_size.is_some()
            {
                return Err(Failure::usage(anyhow::anyhow!(
                    "--select, --flatten, --max-shard-size and --max-output-size apply to safetensors output only"
                )));
            }
            tensorseal_convert::to_torch(
                &args.src,
                &args.dst,
                verify != Verify::Off,
                args.force,
                super::durability(args.sync),
            )?
        }
        Target::Safetensors => {
            let opts = Options {
                select: args.select.clone(),
                flatten: args.flatten,
                max_shard_size,
                verify,
                overwrite: args.force,
                durability: super::durability(args.sync),
                max_output_size,
                cancel: signals.map(|s| Arc::clone(&s.cancel)),
            };
            let bar = if args.json {
                Bar::hidden()
            } else {
                Bar::bytes("converting")
            };
            let mut on = |p: Progress<'_>| match p {
                Progress::Start { total_bytes, .. } => bar.set_total(total_bytes),
                Progress::Tensor { bytes, .. } => bar.inc(bytes),
                Progress::Verify => bar.set_message("verifying"),
            };
            let r = tensorseal_convert::to_safetensors(&args.src, &args.dst, &opts, &mut on);
            bar.finish();
            r?
        }
    };
    if let Some(key) = &report.chosen {
        eprintln!(
            "note: nested checkpoint: converting `{key}` (choose with --select PATH, or --flatten)"
        );
    }
    if args.json {
        let mut j = json_report(&report);
        j["verification"] = serde_json::json!(verify_name(verify, args.to));
        write_json("tensorseal-convert/1", j)?;
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
            "converted {} ({}) from {}{}{}",
            plural(report.tensors as u64, "tensor"),
            bytes(report.total_bytes),
            report
                .format
                .map(|f| format_name(f.name()))
                .unwrap_or_else(|| "?".into()),
            if report.aliases.is_empty() {
                String::new()
            } else {
                let n = report.aliases.len();
                format!(
                    ", {n} identical alias{} recorded in metadata",
                    if n == 1 { "" } else { "es" }
                )
            },
            if report.verified {
                format!(", verified ({})", verify_name(verify, args.to))
            } else {
                String::new()
            }
        );
    }
    Ok(EXIT_OK)
}

/// The check that actually ran: to_torch always compares every byte.
fn verify_name(v: Verify, to: Target) -> &'static str {
    match (v, to) {
        (Verify::Checksum, Target::Torch) => Verify::Full.name(),
        _ => v.name(),
    }
}

fn json_report(r: &Report) -> serde_json::Value {
    serde_json::json!({
        "inputs": r.inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "format": r.format.map(|f| format_name(f.name())),
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

/// A checkpoint format as every command spells it (`scan`'s snake_case
/// names: `torch_zip`, `torch_legacy`, `npy`, `npz`).
fn format_name(name: &str) -> String {
    name.replace(' ', "_")
}
