//! `tensorseal dequantize`, `tensorseal densify`, and the quantization and
//! sparse sections of `tensorseal inspect` (over `tensorseal-quant`).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tensorseal_format::MmapFile;
use tensorseal_quant::dequant::{dequantize_source, Options, Source};
use tensorseal_quant::sparse::{densify, describe};
use tensorseal_quant::OutDtype;

use super::args::{parse_size, Size};
use super::{write_json, write_stdout, CmdResult, Failure, EXIT_OK};

/// Arguments of `dequantize`.
#[derive(clap::Args)]
pub struct DequantizeArgs {
    /// A quantized checkpoint: .safetensors file, index, or directory (with its config.json).
    pub src: PathBuf,
    /// Output: a path ending in .safetensors (one file), else a directory
    /// (model.safetensors, or shards and an index; config.json without quantization_config).
    pub dst: PathBuf,
    /// Element type of the dequantized tensors.
    #[arg(long, default_value = "bf16", value_parser = ["bf16", "f16", "f32"])]
    pub dtype: String,
    /// Largest output shard when DST is a directory: 5GB, 500MB, 10GiB, or bytes.
    #[arg(long, default_value = "5GB", value_name = "SIZE", value_parser = parse_size)]
    pub max_shard_size: Size,
    /// Replace an existing output (a file at DST, or a checkpoint in the
    /// DST directory, whose files this run does not overwrite are removed).
    #[arg(long)]
    pub force: bool,
    /// Print what was written as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// fsync the output before exiting (it is written atomically either way).
    #[arg(long)]
    pub sync: bool,
}

pub fn run_dequantize(args: DequantizeArgs) -> CmdResult {
    let dtype = OutDtype::parse(&args.dtype).ok_or_else(|| {
        Failure::usage(anyhow::anyhow!(
            "--dtype: unknown element type {:?}",
            args.dtype
        ))
    })?;
    let before = refuse_existing(&args.dst, args.force)?;
    let opts = Options {
        dtype,
        max_shard_size: args.max_shard_size.0,
        durability: super::durability(args.sync),
        ..Options::default()
    };
    let source = Source::open(&args.src)?;
    let report = source.recognize()?;
    if report.layers.is_empty() {
        eprintln!(
            "warning: no quantized layer recognised in {}; copying every tensor",
            args.src.display()
        );
    }
    let s = dequantize_source(&source, &report, &args.dst, &opts)?;
    let removed = remove_stale(before, &s.files, &args.dst)?;
    let files: Vec<String> = s.files.iter().map(|p| p.display().to_string()).collect();
    if args.json {
        return write_json(
            "tensorseal-dequantize/1",
            json!({"dequantized": s.dequantized, "copied": s.copied, "dtype": dtype.to_string(),
                   "files": files, "bytes": s.bytes, "removed": removed}),
        )
        .map(|()| EXIT_OK);
    }
    write_stdout(&format!(
        "dequantized {} to {dtype}, copied {}; {} in {}\n",
        super::plural(s.dequantized as u64, "layer"),
        super::plural(s.copied as u64, "tensor"),
        super::bytes(s.bytes),
        files.join(", ")
    ))?;
    Ok(EXIT_OK)
}

/// The checkpoint files already at `dst` (a file, or a directory's
/// `model*.safetensors` and index): an error unless `force`, else the list
/// to remove once the new output is written.
fn refuse_existing(dst: &Path, force: bool) -> Result<Vec<PathBuf>, Failure> {
    let existing = if dst.is_dir() {
        super::split::existing_outputs(dst)?
    } else if std::fs::symlink_metadata(dst).is_ok() {
        vec![dst.to_path_buf()]
    } else {
        Vec::new()
    };
    if !existing.is_empty() && !force {
        let names: Vec<String> = existing.iter().map(|p| p.display().to_string()).collect();
        return Err(Failure::usage(anyhow::anyhow!(
            "{} already holds a checkpoint ({}); use --force to replace it",
            dst.display(),
            names.join(", ")
        )));
    }
    Ok(existing)
}

/// Removes the files of an earlier checkpoint at `dst` that this run did not
/// overwrite (`written`, plus the index of a sharded output), so no loader
/// can mix the two.
fn remove_stale(
    before: Vec<PathBuf>,
    written: &[PathBuf],
    dst: &Path,
) -> Result<Vec<String>, Failure> {
    let index = dst.join("model.safetensors.index.json");
    let mut removed = Vec::new();
    for old in before {
        let sharded_index = old == index && written.len() > 1;
        if written.contains(&old) || sharded_index {
            continue;
        }
        std::fs::remove_file(&old).map_err(|e| {
            Failure::usage(anyhow::Error::new(e).context(format!(
                "removing {} of the earlier checkpoint",
                old.display()
            )))
        })?;
        removed.push(old.display().to_string());
    }
    Ok(removed)
}

/// Arguments of `densify`.
#[derive(clap::Args)]
pub struct DensifyArgs {
    /// A .safetensors file holding sparse tensors (docs/sparse.md).
    pub src: PathBuf,
    /// The dense .safetensors file to write.
    pub dst: PathBuf,
    /// Replace DST if it exists.
    #[arg(long)]
    pub force: bool,
    /// Print what was written as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// fsync the output before exiting (it is written atomically either way).
    #[arg(long)]
    pub sync: bool,
}

pub fn run_densify(args: DensifyArgs) -> CmdResult {
    refuse_existing(&args.dst, args.force)?;
    let s = densify(&args.src, &args.dst, super::durability(args.sync))?;
    if args.json {
        return write_json(
            "tensorseal-densify/1",
            json!({"densified": s.densified, "copied": s.copied, "file": args.dst.display().to_string()}),
        )
        .map(|()| EXIT_OK);
    }
    write_stdout(&format!(
        "densified {}, copied {}; wrote {}\n",
        super::plural(s.densified as u64, "sparse tensor"),
        super::plural(s.copied as u64, "tensor"),
        args.dst.display()
    ))?;
    Ok(EXIT_OK)
}

/// The quantization and sparse sections of `inspect`: JSON values (null
/// when there is nothing to say) and the text to print after the table.
pub fn inspect_sections(
    path: &Path,
    single_file: Option<&Path>,
) -> Result<(Value, Value, String), Failure> {
    use std::fmt::Write;
    let mut text = String::new();
    let source = Source::open(path)?;
    let report = source.recognize()?;
    let quant = if report.layers.is_empty() {
        Value::Null
    } else {
        let _ = writeln!(
            text,
            "\nquantized layers: {}{}",
            report.layers.len(),
            report
                .config_method
                .as_ref()
                .map(|m| format!(" (config: {m})"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            text,
            "  {:<48} {:<24} {:>4} {:>8} {:>10}",
            "tensor", "scheme", "bits", "group", "bits/w"
        );
        for l in &report.layers {
            let _ = writeln!(
                text,
                "  {:<48} {:<24} {:>4} {:>8} {:>10.3}",
                l.output,
                l.scheme.name(),
                l.bits,
                l.grouping.to_string(),
                l.effective_bits()
            );
        }
        let mut totals = serde_json::Map::new();
        for (scheme, (n, weights, bytes)) in report.totals() {
            let eff = if weights == 0 {
                0.0
            } else {
                bytes as f64 * 8.0 / weights as f64
            };
            let _ = writeln!(text, "  total {:<42} {:>4} layer{}, {weights} weights, {bytes} bytes, {eff:.3} bits/weight",
                scheme.name(), n, if n == 1 { "" } else { "s" });
            totals.insert(scheme.name().into(), json!({"layers": n, "weights": weights, "stored_bytes": bytes, "effective_bits": eff}));
        }
        json!({
            "config_method": report.config_method,
            "layers": report.layers.iter().map(|l| json!({
                "name": l.output, "scheme": l.scheme.name(), "bits": l.bits,
                "group_size": l.grouping.to_string(), "shape": l.shape, "tensors": l.tensors,
                "stored_bytes": l.stored_bytes, "effective_bits": l.effective_bits(),
            })).collect::<Vec<_>>(),
            "totals": totals,
        })
    };
    let sparse = match single_file {
        Some(f) => {
            let file = MmapFile::open(f)?;
            let d = describe(&file)?;
            if d.is_empty() {
                Value::Null
            } else {
                let _ = writeln!(text, "\nsparse tensors: {}", d.len());
                for s in &d {
                    let _ = writeln!(
                        text,
                        "  {:<48} {:<5} {:<6} {:<20} nnz {:>10}  density {:.4}",
                        s.name,
                        s.layout.name(),
                        s.dtype.as_str(),
                        format!("{:?}", s.shape),
                        s.nnz,
                        s.density()
                    );
                }
                d.iter().map(|s| json!({
                    "name": s.name, "layout": s.layout.name(), "dtype": s.dtype.as_str(), "shape": s.shape,
                    "nnz": s.nnz, "density": s.density(), "components": s.components,
                })).collect()
            }
        }
        None => Value::Null,
    };
    Ok((quant, sparse, text))
}
