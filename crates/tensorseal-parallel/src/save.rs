//! Saving without gathering: every rank computes the same layout of the
//! full tensors and writes its own slices at their offsets.
//!
//! The protocol (the Python bindings drive it with `torch.distributed`
//! barriers): rank 0 calls [`SavePlan::create_files`] (each file created,
//! pre-sized, its header written; the index for a sharded save); after a
//! barrier every rank calls [`SavePlan::write_rank`] with its local bytes;
//! after a second barrier the files are complete. Each byte of tensor data
//! is written by exactly one rank: a rank writes its part unless a lower
//! rank holds the very same part (replicated tensors are written by the
//! lowest rank holding them). The file is byte-identical to the reference
//! `save_file` of the full tensors, because the layout is the format
//! crate's (the reference's order and padding).

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use tensorseal_format::shard::{index_json, plan_shards, shard_name};
use tensorseal_format::write::{Layout, TensorSpec};

use crate::plan::{Assignment, Plan, Rule};
use crate::runs::{select, Runs};
use crate::ParallelError;

/// One output file.
#[derive(Debug, Clone)]
pub struct OutFile {
    /// File name (relative to the output directory for a sharded save).
    pub path: PathBuf,
    /// Its layout.
    pub layout: Layout,
}

/// The layout of a save: files, and where each full tensor goes.
#[derive(Debug, Clone)]
pub struct SavePlan {
    /// The full tensors, in the order given.
    pub specs: Vec<TensorSpec>,
    /// Output files.
    pub files: Vec<OutFile>,
    /// `(file, absolute offset)` of each spec.
    pub place: Vec<(usize, u64)>,
    /// Index file path and text, for a sharded save of more than one file.
    pub index: Option<(PathBuf, String)>,
}

/// The writes of a rank for one tensor: the rank's local bytes of tensor
/// `tensor`, in order, fill the byte runs `runs` of file `file` in order
/// (one positioned write per run, the runs expanded as they are written).
/// One value per tensor, however many runs: a block of a tensor with tiny
/// rows is not listed run by run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteRun {
    /// Index into [`SavePlan::specs`].
    pub tensor: usize,
    /// Index into [`SavePlan::files`].
    pub file: usize,
    /// Absolute file offsets; their total length is the local bytes'.
    pub runs: Runs,
}

/// What one rank holds of one tensor when saving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankPart {
    /// Index into [`SavePlan::specs`].
    pub tensor: usize,
    /// Shape of the local part the rank must hold.
    pub shape: Vec<usize>,
    /// Its byte length.
    pub len: u64,
}

#[cfg(unix)]
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(windows)]
fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_write(buf, offset) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = buf.get(n..).unwrap_or_default();
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl SavePlan {
    /// One file `path` holding `specs` (the full tensors) and `metadata`.
    pub fn single(
        path: impl Into<PathBuf>,
        specs: Vec<TensorSpec>,
        metadata: Option<&BTreeMap<String, String>>,
    ) -> Result<Self, ParallelError> {
        let lay = Layout::plan(&specs, metadata)?;
        let base = lay.header_bytes().len() as u64;
        let place = lay
            .offsets()
            .iter()
            .map(|r| (0, base + r.start as u64))
            .collect();
        Ok(SavePlan {
            specs,
            files: vec![OutFile {
                path: path.into(),
                layout: lay,
            }],
            place,
            index: None,
        })
    }

    /// Files in directory `dir` named as `save_pretrained` names them:
    /// tensors (in the order given) assigned to shards by the Hugging Face
    /// greedy rule with `max_shard_size` bytes, `model-0000i-of-0000N.safetensors`
    /// plus `model.safetensors.index.json`, or a single `model.safetensors`
    /// when one shard suffices.
    pub fn sharded(
        dir: &Path,
        specs: Vec<TensorSpec>,
        metadata: Option<&BTreeMap<String, String>>,
        max_shard_size: u64,
    ) -> Result<Self, ParallelError> {
        let mut sizes = Vec::with_capacity(specs.len());
        for s in &specs {
            sizes.push(tensorseal_format::byte_size(&s.name, s.dtype, &s.shape)? as u64);
        }
        let groups = plan_shards(&sizes, max_shard_size);
        let n = groups.len();
        let mut files = Vec::with_capacity(n);
        let mut place = vec![(0usize, 0u64); specs.len()];
        let mut weight_map = BTreeMap::new();
        for (fi, group) in groups.iter().enumerate() {
            let name = if n <= 1 {
                "model.safetensors".to_owned()
            } else {
                shard_name(fi, n)
            };
            let sub: Vec<TensorSpec> = group
                .iter()
                .filter_map(|&i| specs.get(i).cloned())
                .collect();
            let lay = Layout::plan(&sub, metadata)?;
            let base = lay.header_bytes().len() as u64;
            for (k, &i) in group.iter().enumerate() {
                let start = lay.offsets().get(k).map_or(0, |o| o.start as u64);
                if let Some(p) = place.get_mut(i) {
                    *p = (fi, base + start);
                }
                if let Some(s) = specs.get(i) {
                    weight_map.insert(s.name.clone(), name.clone());
                }
            }
            files.push(OutFile {
                path: dir.join(&name),
                layout: lay,
            });
        }
        let index = (n > 1).then(|| {
            (
                dir.join("model.safetensors.index.json"),
                index_json(sizes.iter().sum(), &weight_map),
            )
        });
        Ok(SavePlan {
            specs,
            files,
            place,
            index,
        })
    }

    /// Creates every file (truncating), sizes it, writes its header, and
    /// writes the index. Rank 0 calls this before any rank writes.
    pub fn create_files(&self) -> Result<(), ParallelError> {
        for f in &self.files {
            let file = File::create(&f.path).map_err(|e| ParallelError::io(&f.path, e))?;
            file.set_len(f.layout.file_len() as u64)
                .map_err(|e| ParallelError::io(&f.path, e))?;
            write_all_at(&file, f.layout.header_bytes(), 0)
                .map_err(|e| ParallelError::io(&f.path, e))?;
        }
        if let Some((path, text)) = &self.index {
            std::fs::write(path, text).map_err(|e| ParallelError::io(path, e))?;
        }
        Ok(())
    }

    fn assignments(
        &self,
        plan: &Plan,
        rank: usize,
        world_size: usize,
    ) -> Result<Vec<Assignment>, ParallelError> {
        let list: Vec<(&str, &[usize])> = self
            .specs
            .iter()
            .map(|s| (s.name.as_str(), s.shape.as_slice()))
            .collect();
        plan.assign(&list, rank, world_size, |i, name, _, _, _| {
            Err(ParallelError::plan(format!(
                "rule of {name:?} is callable {i}; saving needs a plan of patterns"
            )))
        })
    }

    /// What `rank` must hold of each tensor, and the writes it performs.
    ///
    /// Fails if some tensor would not be covered by the ranks' parts (a
    /// tensor every rank skips, say), since its bytes would be missing.
    pub fn rank_writes(
        &self,
        plan: &Plan,
        rank: usize,
        world_size: usize,
    ) -> Result<(Vec<RankPart>, Vec<WriteRun>), ParallelError> {
        let all: Vec<Vec<Assignment>> = (0..world_size)
            .map(|r| self.assignments(plan, r, world_size))
            .collect::<Result<_, _>>()?;
        let mine = all
            .get(rank)
            .ok_or(ParallelError::BadRank { rank, world_size })?;
        let mut parts = Vec::new();
        let mut writes = Vec::new();
        for (i, spec) in self.specs.iter().enumerate() {
            // Coverage: distinct parts must tile the tensor.
            let mut distinct: Vec<Assignment> = Vec::new();
            for a in all.iter().filter_map(|v| v.get(i)) {
                if *a != Assignment::Skip && !distinct.contains(a) {
                    distinct.push(*a);
                }
            }
            covered(&spec.name, &spec.shape, &distinct)?;
            let Some(&a) = mine.get(i) else { continue };
            let Some(sel) = select(&spec.name, spec.dtype, &spec.shape, a)? else {
                continue;
            };
            parts.push(RankPart {
                tensor: i,
                shape: sel.shape.clone(),
                len: sel.len,
            });
            let lower_holds = all.iter().take(rank).any(|v| v.get(i) == Some(&a));
            if lower_holds {
                continue;
            }
            if sel.runs.is_empty() {
                continue;
            }
            let (file, base) = self.place.get(i).copied().unwrap_or_default();
            let runs = sel
                .runs
                .shifted(base)
                .ok_or_else(|| ParallelError::Overflow {
                    tensor: spec.name.clone(),
                    shape: spec.shape.clone(),
                })?;
            writes.push(WriteRun {
                tensor: i,
                file,
                runs,
            });
        }
        Ok((parts, writes))
    }

    /// Performs `writes` with positioned writes, one per run, in parallel;
    /// `local(i)` gives the rank's bytes of tensor `i`, exactly as many as
    /// its runs hold. Returns the bytes written.
    ///
    /// Runs are written exactly, never as a covering range: the gaps
    /// between them hold other ranks' bytes, written concurrently.
    pub fn write_rank<'a, F>(&self, writes: &[WriteRun], local: F) -> Result<u64, ParallelError>
    where
        F: Fn(usize) -> Option<&'a [u8]> + Sync,
    {
        let used: HashSet<usize> = writes.iter().map(|w| w.file).collect();
        let mut handles: Vec<Option<File>> = Vec::with_capacity(self.files.len());
        for (i, f) in self.files.iter().enumerate() {
            handles.push(if used.contains(&i) {
                Some(
                    OpenOptions::new()
                        .write(true)
                        .open(&f.path)
                        .map_err(|e| ParallelError::io(&f.path, e))?,
                )
            } else {
                None
            });
        }
        writes.par_iter().try_for_each(|w| {
            let name = self.specs.get(w.tensor).map_or("?", |s| s.name.as_str());
            let bytes = local(w.tensor).ok_or_else(|| ParallelError::BadLocal {
                tensor: name.to_owned(),
                reason: "this rank holds a part of it but gave no bytes".into(),
            })?;
            if bytes.len() as u64 != w.runs.total() {
                return Err(ParallelError::BadLocal {
                    tensor: name.to_owned(),
                    reason: format!(
                        "local bytes are {} long, {} planned",
                        bytes.len(),
                        w.runs.total()
                    ),
                });
            }
            let (Some(Some(file)), Some(out)) = (handles.get(w.file), self.files.get(w.file))
            else {
                return Err(ParallelError::plan(format!("write names file {}", w.file)));
            };
            if w.runs.is_empty() {
                return Ok(());
            }
            // At most bytes.len(), so it fits a usize; bytes splits into
            // exactly w.runs.count() pieces of it.
            let len = w.runs.run_len() as usize;
            bytes.par_chunks(len).enumerate().try_for_each(|(k, src)| {
                let r = w
                    .runs
                    .get(k as u64)
                    .ok_or_else(|| ParallelError::plan(format!("tensor {name:?}: no run {k}")))?;
                write_all_at(file, src, r.offset).map_err(|e| ParallelError::io(&out.path, e))
            })
        })?;
        Ok(writes
            .iter()
            .fold(0u64, |n, w| n.saturating_add(w.runs.total())))
    }
}

/// Checks that the distinct non-skip parts of a tensor tile it.
fn covered(name: &str, shape: &[usize], parts: &[Assignment]) -> Result<(), ParallelError> {
    if parts.contains(&Assignment::Whole) {
        return Ok(());
    }
    let mut blocks: Vec<(usize, usize, usize)> = parts
        .iter()
        .filter_map(|a| match *a {
            Assignment::Block { dim, start, stop } => Some((dim, start, stop)),
            _ => None,
        })
        .collect();
    blocks.sort_unstable_by_key(|b| (b.0, b.1, b.2));
    let missing = || {
        ParallelError::BadLocal {
        tensor: name.to_owned(),
        reason: "the ranks' parts do not cover the whole tensor (skipped by every rank, or inconsistent blocks)".into(),
    }
    };
    let Some(&(dim, _, _)) = blocks.first() else {
        return Err(missing());
    };
    let mut at = 0;
    for &(d, s, e) in &blocks {
        if d != dim {
            return Err(missing());
        }
        if s == e {
            continue;
        }
        if s != at {
            return Err(missing());
        }
        at = e;
    }
    if at != shape.get(dim).copied().unwrap_or(0) {
        return Err(missing());
    }
    Ok(())
}

/// Full specs from every rank's local `(name, dtype, shape)` lists (index =
/// rank): a sharded dimension's full size is the sum over the
/// tensor-parallel ranks of one stage. Order: first appearance, rank by rank.
pub fn full_specs(
    plan: &Plan,
    locals: &[Vec<TensorSpec>],
) -> Result<Vec<TensorSpec>, ParallelError> {
    let world = locals.len();
    let mut order: Vec<String> = Vec::new();
    let mut by_name: BTreeMap<String, Vec<(usize, &TensorSpec)>> = BTreeMap::new();
    for (r, list) in locals.iter().enumerate() {
        for s in list {
            let e = by_name.entry(s.name.clone()).or_default();
            if e.is_empty() {
                order.push(s.name.clone());
            }
            e.push((r, s));
        }
    }
    let mut out = Vec::with_capacity(order.len());
    for name in order {
        let held = by_name.get(&name).map(Vec::as_slice).unwrap_or_default();
        let Some(&(_, first)) = held.first() else {
            continue;
        };
        let mut spec = first.clone();
        if held
            .iter()
            .any(|(_, s)| s.dtype != first.dtype || s.shape.len() != first.shape.len())
        {
            return Err(ParallelError::BadLocal {
                tensor: name,
                reason: "ranks hold parts of different dtypes or ranks".into(),
            });
        }
        if let Rule::Shard(d) = plan.rule_for(&name) {
            let ndim = first.shape.len() as i64;
            let dim = if d < 0 { d + ndim } else { d };
            let dim = usize::try_from(dim)
                .ok()
                .filter(|&x| x < first.shape.len())
                .ok_or_else(|| ParallelError::BadDim {
                    tensor: name.clone(),
                    shape: first.shape.clone(),
                    dim: d,
                })?;
            // One part per tensor-parallel rank, taken from the first stage
            // holding the tensor.
            let (stage0, _, _, _) = plan.topology(held.first().map_or(0, |h| h.0), world)?;
            let mut total = 0usize;
            for &(r, s) in held {
                let (stage, _, _, _) = plan.topology(r, world)?;
                if stage == stage0 {
                    total = total.saturating_add(s.shape.get(dim).copied().unwrap_or(0));
                }
            }
            if let Some(x) = spec.shape.get_mut(dim) {
                *x = total;
            }
        }
        out.push(spec);
    }
    Ok(out)
}
