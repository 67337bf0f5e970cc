//! `inspect --plan` and `split --plan`: what each rank of a tensor- or
//! pipeline-parallel world reads under a sharding plan, and pre-sharded
//! per-rank checkpoints (crate `tensorseal-parallel`).

use std::path::Path;

use serde_json::json;
use tensorseal_format::{FileWriter, TensorSpec, WriteOptions};
use tensorseal_parallel::{Checkpoint, LoadPlan, ParallelError, Plan};

use super::{write_stdout, CmdResult, Failure, EXIT_INVALID, EXIT_OK, EXIT_USAGE};

/// Largest plan file read (bytes).
const MAX_PLAN_BYTES: u64 = 10 << 20;

/// Bad plans and rank arguments are usage errors (2), bad checkpoints 1,
/// I/O 2.
fn failure(e: ParallelError) -> Failure {
    match e {
        ParallelError::Format(f) => Failure::from(f),
        ParallelError::Io { .. }
        | ParallelError::BadPlan { .. }
        | ParallelError::BadRank { .. }
        | ParallelError::BadDim { .. }
        | ParallelError::Unaligned { .. } => Failure {
            code: EXIT_USAGE,
            error: anyhow::anyhow!("{e}"),
        },
        _ => Failure {
            code: EXIT_INVALID,
            error: anyhow::anyhow!("{e}"),
        },
    }
}

fn usage(msg: String) -> Failure {
    Failure {
        code: EXIT_USAGE,
        error: anyhow::anyhow!(msg),
    }
}

fn read_plan(path: &Path) -> Result<Plan, Failure> {
    let len = std::fs::metadata(path)
        .map_err(|e| usage(format!("--plan {}: {e}", path.display())))?
        .len();
    if len > MAX_PLAN_BYTES {
        return Err(usage(format!(
            "--plan {}: {len} bytes is larger than {MAX_PLAN_BYTES}",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("--plan {}: {e}", path.display())))?;
    Plan::from_json(&text).map_err(|e| usage(format!("--plan {}: {e}", path.display())))
}

fn rank_plans(ck: &Checkpoint, plan: &Plan, world: usize) -> Result<Vec<LoadPlan>, Failure> {
    if world == 0 {
        return Err(usage("--world-size must be at least 1".into()));
    }
    (0..world)
        .map(|r| {
            let a = ck
                .assign(plan, r, world, |i, name, _, _, _| {
                    Err(ParallelError::BadPlan {
                        reason: format!(
                            "rule of {name:?} is callable {i}, which only the Python API can run"
                        ),
                    })
                })
                .map_err(failure)?;
            ck.plan(&a).map_err(failure)
        })
        .collect()
}

/// `inspect PATH --plan PLAN --world-size N`: each rank's tensor count,
/// bytes and read runs.
pub fn inspect(path: &Path, plan: &Path, world: usize, as_json: bool) -> CmdResult {
    let plan = read_plan(plan)?;
    let ck = Checkpoint::open(path).map_err(failure)?;
    let plans = rank_plans(&ck, &plan, world)?;
    let checkpoint_bytes: u64 = ck
        .tensors()
        .iter()
        .map(|t| tensorseal_format::byte_size(&t.name, t.dtype, &t.shape).unwrap_or(0) as u64)
        .sum();
    let out: String = if as_json {
        let ranks: Vec<_> = plans
            .iter()
            .enumerate()
            .map(|(r, p)| {
                json!({"rank": r, "tensors": p.tensors.len(), "bytes": p.data_len(), "runs": p.run_count()})
            })
            .collect();
        let doc = json!({
            "path": path.display().to_string(),
            "world_size": world,
            "tensors": ck.tensors().len(),
            "checkpoint_bytes": checkpoint_bytes,
            "header_bytes": ck.header_bytes(),
            "ranks": ranks,
        });
        super::write_json("tensorseal-inspect-plan/1", &doc)?;
        return Ok(EXIT_OK);
    } else {
        let mut o = format!(
            "{}: {} tensors, {checkpoint_bytes} bytes, world size {world}\nrank\ttensors\tbytes\truns\tshare\n",
            path.display(),
            ck.tensors().len()
        );
        for (r, p) in plans.iter().enumerate() {
            let share = if checkpoint_bytes == 0 {
                0.0
            } else {
                p.data_len() as f64 * 100.0 / checkpoint_bytes as f64
            };
            o.push_str(&format!(
                "{r}\t{}\t{}\t{}\t{share:.1}%\n",
                p.tensors.len(),
                p.data_len(),
                p.run_count()
            ));
        }
        o
    };
    write_stdout(&out)?;
    Ok(EXIT_OK)
}

/// `split PATH OUTDIR --plan PLAN --world-size N`: one file per rank,
/// `OUTDIR/model-rank-{r}-part-0.safetensors`, holding that rank's parts
/// (the layout inference servers' sharded-state loaders read). Memory is
/// bounded by the largest part of one tensor.
pub fn split(
    path: &Path,
    outdir: &Path,
    plan: &Path,
    world: usize,
    as_json: bool,
    durability: tensorseal_format::Durability,
) -> CmdResult {
    let plan = read_plan(plan)?;
    let ck = Checkpoint::open(path).map_err(failure)?;
    let plans = rank_plans(&ck, &plan, world)?;
    std::fs::create_dir_all(outdir).map_err(|e| usage(format!("{}: {e}", outdir.display())))?;
    let mut written = Vec::new();
    for (r, lp) in plans.iter().enumerate() {
        let file = outdir.join(format!("model-rank-{r}-part-0.safetensors"));
        let specs: Vec<TensorSpec> = lp
            .tensors
            .iter()
            .map(|t| TensorSpec {
                name: t.name.clone(),
                dtype: t.dtype,
                shape: t.shape.clone(),
            })
            .collect();
        let opts = WriteOptions::new().with_durability(durability);
        FileWriter::create(&file, &specs, &opts)
            .and_then(|w| {
                w.fill_and_commit(|i, w| {
                    let t = lp
                        .tensors
                        .get(i)
                        .ok_or_else(|| std::io::Error::other(format!("no tensor {i}")))?;
                    let one = LoadPlan {
                        tensors: vec![t.clone()],
                        total_len: t.len,
                    };
                    let mut buf = vec![0u8; t.len];
                    ck.read_each(&one, &mut [&mut buf[..]])
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                    w.write_all(&buf)
                })
            })
            .map_err(Failure::from)?;
        written.push((file, lp.tensors.len(), lp.data_len()));
    }
    let out: String = if as_json {
        let files: Vec<_> = written
            .iter()
            .enumerate()
            .map(|(r, (p, t, b))| json!({"rank": r, "path": p.display().to_string(), "tensors": t, "bytes": b}))
            .collect();
        super::write_json(
            "tensorseal-split-plan/1",
            json!({"world_size": world, "files": files}),
        )?;
        return Ok(EXIT_OK);
    } else {
        written
            .iter()
            .map(|(p, t, b)| format!("{}\t{t} tensors\t{b} bytes\n", p.display()))
            .collect()
    };
    write_stdout(&out)?;
    Ok(EXIT_OK)
}
