//! `tensorseal split`: shard a file like Hugging Face `save_pretrained`.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tensorseal_format::shard;

use super::args::{parse_size, Size};
use super::progress::Bar;
use super::{bytes, plural, write_json, write_stdout, CmdResult, Failure, EXIT_OK};

/// Arguments of `split`.
#[derive(clap::Args)]
pub struct Args {
    /// The .safetensors file to split.
    pub file: PathBuf,
    /// Directory to write the shards and model.safetensors.index.json into.
    pub outdir: PathBuf,
    /// Largest shard (tensor bytes): 5GB, 500MB, 10GiB, or a number of bytes.
    /// GB/MB/KB are powers of 10, GiB/MiB/KiB powers of 2, as in Hugging Face.
    #[arg(long, default_value = "5GB", value_name = "SIZE", value_parser = parse_size)]
    pub max_shard_size: Size,
    /// Replace a checkpoint already in OUTDIR (model.safetensors, an index,
    /// shards): the files of the earlier split that this one does not
    /// overwrite are removed, so no loader can mix the two.
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

/// The file names a split writes: `model.safetensors`, the index, and
/// `model-NNNNN-of-MMMMM.safetensors` shards.
pub(super) fn is_split_output(name: &str) -> bool {
    if name == "model.safetensors" || name == "model.safetensors.index.json" {
        return true;
    }
    tensorseal_format::shard::is_shard_name(name)
}

/// The checkpoint files already in `outdir` (none if it does not exist).
pub(super) fn existing_outputs(outdir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let entries = match std::fs::read_dir(outdir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Failure::usage(
                anyhow::Error::new(e).context(format!("reading {}", outdir.display())),
            ))
        }
    };
    let mut found = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        if name.to_str().is_some_and(is_split_output) {
            found.push(outdir.join(name));
        }
    }
    found.sort();
    Ok(found)
}

#[derive(Serialize)]
struct ShardDoc {
    path: String,
    tensors: usize,
    bytes: u64,
}

#[derive(Serialize)]
struct SplitDoc {
    shards: Vec<ShardDoc>,
    index: Option<String>,
    total_size: u64,
    /// Files of an earlier split removed by `--force`.
    removed: Vec<String>,
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
    let before = existing_outputs(&args.outdir)?;
    // The input itself among them: writing or removing it would destroy it.
    let input = std::fs::canonicalize(&args.file).ok();
    if let Some(same) = before
        .iter()
        .find(|p| input.is_some() && std::fs::canonicalize(p).ok() == input)
    {
        return Err(Failure::usage(anyhow::anyhow!(
            "{} is the input file; split into another directory",
            same.display()
        )));
    }
    if !before.is_empty() && !args.force {
        let names: Vec<String> = before
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        return Err(Failure::usage(anyhow::anyhow!(
            "{} already holds a checkpoint ({}); use --force to replace it",
            args.outdir.display(),
            names.join(", ")
        )));
    }
    let bar = Bar::bytes("split");
    let report = shard::split_with_progress(
        &args.file,
        &args.outdir,
        args.max_shard_size.0,
        super::durability(args.sync),
        &mut |done, total| bar.update(done, total),
    )?;
    bar.finish();
    // --force: what the earlier split left that this one did not write.
    let mut removed = Vec::new();
    for old in before {
        let written =
            report.shards.iter().any(|s| s.path == old) || report.index.as_ref() == Some(&old);
        if written {
            continue;
        }
        std::fs::remove_file(&old).map_err(|e| {
            Failure::usage(
                anyhow::Error::new(e)
                    .context(format!("removing {} of the earlier split", old.display())),
            )
        })?;
        removed.push(old);
    }
    if args.json {
        let doc = SplitDoc {
            shards: report
                .shards
                .iter()
                .map(|s| ShardDoc {
                    path: s.path.display().to_string(),
                    tensors: s.tensors,
                    bytes: s.bytes,
                })
                .collect(),
            index: report.index.as_ref().map(|p| p.display().to_string()),
            total_size: report.total_size,
            removed: removed.iter().map(|p| p.display().to_string()).collect(),
        };
        write_json("tensorseal-split/1", doc)?;
    } else {
        let mut out = String::new();
        for s in &report.shards {
            out.push_str(&format!(
                "{}\t{}\t{}\n",
                s.path.display(),
                plural(s.tensors as u64, "tensor"),
                bytes(s.bytes)
            ));
        }
        if let Some(index) = &report.index {
            out.push_str(&format!(
                "{}\ttotal_size {}\n",
                index.display(),
                bytes(report.total_size)
            ));
        }
        write_stdout(&out)?;
    }
    for p in &removed {
        eprintln!("removed {} (part of the earlier split)", p.display());
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::is_split_output;

    #[test]
    fn split_names() {
        assert!(is_split_output("model.safetensors"));
        assert!(is_split_output("model.safetensors.index.json"));
        assert!(is_split_output("model-00001-of-00002.safetensors"));
        assert!(!is_split_output("model-0001-of-00002.safetensors"));
        assert!(!is_split_output("model-00001-xx-00002.safetensors"));
        assert!(!is_split_output("merged.safetensors"));
    }
}
