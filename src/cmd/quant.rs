//! `tensorseal dequantize`, `tensorseal densify`, and the quantization and
//! sparse sections of `tensorseal inspect` (over `tensorseal-quant`).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tensorseal_format::MmapFile;
use tensorseal_quant::dequant::{dequantize_source, Options, Source};
use tensorseal_quant::sparse::{densify, describe};
use tensorseal_quant::{OutDtype, QuantError};

use super::{write_stdout, CmdResult, Failure, EXIT_INVALID, EXIT_OK, EXIT_USAGE};

/// Maps a quant error to its exit code: environment problems are 2,
/// invalid or unsupported content 1.
pub fn quant_failure(e: QuantError) -> Failure {
    Failure {
        code: if e.is_environment() {
            EXIT_USAGE
        } else {
            EXIT_INVALID
        },
        error: anyhow::anyhow!("{e}"),
    }
}

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
    #[arg(long, default_value = "5GB", value_name = "SIZE")]
    pub max_shard_size: String,
    /// Print what was written as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// fsync the output before exiting (it is written atomically either way).
    #[arg(long)]
    pub sync: bool,
}

pub fn run_dequantize(args: DequantizeArgs) -> CmdResult {
    let usage = |m: String| Failure {
        code: EXIT_USAGE,
        error: anyhow::anyhow!(m),
    };
    let dtype =
        OutDtype::parse(&args.dtype).ok_or_else(|| usage(format!("--dtype: {:?}", args.dtype)))?;
    let max = tensorseal_format::shard::parse_size(&args.max_shard_size)
        .map_err(|e| usage(format!("--max-shard-size: {e}")))?;
    let opts = Options {
        dtype,
        max_shard_size: max,
        durability: super::durability(args.sync),
        ..Options::default()
    };
    let source = Source::open(&args.src).map_err(quant_failure)?;
    let report = source.recognize().map_err(quant_failure)?;
    if report.layers.is_empty() {
        eprintln!(
            "warning: no quantized layer recognised in {}; copying every tensor",
            args.src.display()
        );
    }
    let s = dequantize_source(&source, &report, &args.dst, &opts).map_err(quant_failure)?;
    let files: Vec<String> = s.files.iter().map(|p| p.display().to_string()).collect();
    let out = if args.json {
        format!(
            "{:#}\n",
            json!({"dequantized": s.dequantized, "copied": s.copied, "dtype": dtype.to_string(),
                   "files": files, "bytes": s.bytes})
        )
    } else {
        format!(
            "dequantized {} layer{} to {dtype}, copied {} tensor{}; {} bytes in {}\n",
            s.dequantized,
            if s.dequantized == 1 { "" } else { "s" },
            s.copied,
            if s.copied == 1 { "" } else { "s" },
            s.bytes,
            files.join(", ")
        )
    };
    write_stdout(&out)?;
    Ok(EXIT_OK)
}

/// Arguments of `densify`.
#[derive(clap::Args)]
pub struct DensifyArgs {
    /// A .safetensors file holding sparse tensors (docs/sparse.md).
    pub src: PathBuf,
    /// The dense .safetensors file to write.
    pub dst: PathBuf,
    /// Print what was written as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// fsync the output before exiting (it is written atomically either way).
    #[arg(long)]
    pub sync: bool,
}

pub fn run_densify(args: DensifyArgs) -> CmdResult {
    let s = densify(&args.src, &args.dst, super::durability(args.sync)).map_err(quant_failure)?;
    let out = if args.json {
        format!(
            "{:#}\n",
            json!({"densified": s.densified, "copied": s.copied, "file": args.dst.display().to_string()})
        )
    } else {
        format!(
            "densified {} sparse tensor{}, copied {}; wrote {}\n",
            s.densified,
            if s.densified == 1 { "" } else { "s" },
            s.copied,
            args.dst.display()
        )
    };
    write_stdout(&out)?;
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
    let source = Source::open(path).map_err(quant_failure)?;
    let report = source.recognize().map_err(quant_failure)?;
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
            let file = MmapFile::open(f).map_err(|e| quant_failure(e.into()))?;
            let d = describe(&file).map_err(quant_failure)?;
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
