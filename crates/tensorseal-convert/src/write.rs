//! Writing the output, between streaming and verifying: the planned tensors
//! are laid out in files (one, shards, or one per input shard), each file
//! written atomically with its tensors streamed into it, hashed on the way
//! with [`Verify::Checksum`], and re-read before the rename (unix) so that
//! nothing unverified appears at the target.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use tensorseal_format::shard::{index_json, plan_shards, shard_name};
use tensorseal_format::{AtomicFile, Layout, TensorSpec};
use xxhash_rust::xxh3::Xxh3;

use crate::error::ConvertError;
use crate::options::{Options, Verify};
use crate::plan::Plan;
use crate::report::{Progress, Written};
use crate::stream::Streamer;
use crate::verify::{check_ranges, CHECK_BEFORE_RENAME};

/// Where the planned tensors go.
pub(crate) struct Output {
    /// Per output file, the indices of its tensors in [`Plan::tensors`].
    pub groups: Vec<Vec<usize>>,
    /// The output files, one per group.
    pub files: Vec<PathBuf>,
    /// `model.safetensors.index.json`, when the output is sharded.
    pub index: Option<PathBuf>,
}

/// What writing the output did.
pub(crate) struct Wrote {
    /// Per output file, what was written to it (with [`Verify::Checksum`]).
    pub written: Vec<Vec<Written>>,
    /// Per output file, its metadata.
    pub metadata: Vec<BTreeMap<String, String>>,
    /// Tensors re-read and hashed before their file was renamed into place.
    pub checked_before_rename: usize,
}

/// Whether `opts.cancel` was set.
pub(crate) fn cancelled(opts: &Options) -> bool {
    opts.cancel
        .as_ref()
        .is_some_and(|c| c.load(Ordering::Relaxed))
}

impl Output {
    /// Lays the plan out under `dst`: a `.safetensors` file (or an existing
    /// file) gets every tensor; a directory gets `model.safetensors`, shards
    /// of at most `--max-shard-size`, or one shard per input shard. Creates
    /// the directory, and refuses existing outputs unless `--force`.
    pub(crate) fn lay_out(
        dst: &Path,
        plan: &Plan,
        inputs: usize,
        opts: &Options,
    ) -> Result<Output, ConvertError> {
        let planned = &plan.tensors;
        let to_file = dst.extension().is_some_and(|e| e == "safetensors") || dst.is_file();
        let groups: Vec<Vec<usize>> = if to_file {
            if opts.max_shard_size.is_some() {
                return Err(ConvertError::format(
                    dst,
                    "--max-shard-size needs a directory as the destination",
                ));
            }
            vec![(0..planned.len()).collect()]
        } else if let Some(max) = opts.max_shard_size {
            let sizes: Vec<u64> = planned
                .iter()
                .map(|p| p.tensor.byte_len().unwrap_or(0) as u64)
                .collect();
            plan_shards(&sizes, max)
        } else if inputs > 1 {
            (0..inputs)
                .map(|i| {
                    (0..planned.len())
                        .filter(|&t| planned[t].input == i)
                        .collect::<Vec<_>>()
                })
                .filter(|g: &Vec<usize>| !g.is_empty())
                .collect()
        } else {
            vec![(0..planned.len()).collect()]
        };
        let files: Vec<PathBuf> = if to_file {
            vec![dst.to_owned()]
        } else {
            std::fs::create_dir_all(dst).map_err(|e| ConvertError::io(dst, e))?;
            if groups.len() == 1 {
                vec![dst.join("model.safetensors")]
            } else {
                (0..groups.len())
                    .map(|i| dst.join(shard_name(i, groups.len())))
                    .collect()
            }
        };
        let index =
            (!to_file && groups.len() > 1).then(|| dst.join("model.safetensors.index.json"));
        if !opts.overwrite {
            for f in files.iter().chain(index.iter()) {
                if f.exists() {
                    return Err(ConvertError::io(
                        f,
                        std::io::Error::new(
                            std::io::ErrorKind::AlreadyExists,
                            "exists (use --force to replace it)",
                        ),
                    ));
                }
            }
        }
        Ok(Output {
            groups,
            files,
            index,
        })
    }

    /// Writes every file (and the index), streaming the tensors through
    /// `streamer`.
    pub(crate) fn write(
        &self,
        plan: &Plan,
        total: u64,
        opts: &Options,
        streamer: &mut Streamer,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Wrote, ConvertError> {
        let mut wrote = Wrote {
            written: Vec::new(),
            metadata: Vec::new(),
            checked_before_rename: 0,
        };
        let mut weight_map = BTreeMap::new();
        for (g, file) in self.groups.iter().zip(&self.files) {
            let mut meta = plan.metadata.clone();
            if self.groups.len() > 1 {
                // An alias belongs to the shard holding the kept tensor.
                let here: HashSet<&str> =
                    g.iter().map(|&i| plan.tensors[i].name.as_str()).collect();
                meta.retain(|k, v| {
                    !plan.report.aliases.iter().any(|(a, _)| a == k) || here.contains(v.as_str())
                });
            }
            let (written, checked) = write_file(file, g, &meta, plan, opts, streamer, progress)?;
            wrote.checked_before_rename += checked;
            wrote.written.push(written);
            wrote.metadata.push(meta);
            let fname = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            for &i in g {
                weight_map.insert(plan.tensors[i].name.clone(), fname.clone());
            }
        }
        if let Some(ix) = &self.index {
            if cancelled(opts) {
                return Err(ConvertError::Interrupted);
            }
            let json = index_json(total, &weight_map);
            let mut f = AtomicFile::create_with(ix, opts.durability)?;
            f.write_all(json.as_bytes())
                .map_err(|e| ConvertError::io(ix, e))?;
            f.commit()?;
        }
        Ok(wrote)
    }
}

/// Writes one output file holding the tensors `group` of `plan`, atomically:
/// on any error (a signal included) the temporary file is removed. Returns
/// what was written (hashed with [`Verify::Checksum`]) and how many tensors
/// were re-read from the file before its rename.
fn write_file(
    file: &Path,
    group: &[usize],
    meta: &BTreeMap<String, String>,
    plan: &Plan,
    opts: &Options,
    streamer: &mut Streamer,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(Vec<Written>, usize), ConvertError> {
    let hashing = opts.verify == Verify::Checksum;
    let specs: Vec<TensorSpec> = group
        .iter()
        .map(|&i| {
            let p = &plan.tensors[i];
            TensorSpec {
                name: p.name.clone(),
                dtype: p.tensor.dtype,
                shape: p.tensor.shape.clone(),
            }
        })
        .collect();
    let layout = Layout::plan(&specs, Some(meta))?;
    let io_err = |e| ConvertError::io(file, e);
    let mut out = AtomicFile::create_with(file, opts.durability)?;
    // Checksum mode: once the last tensor is in the file, and before the
    // file is renamed into place, every tensor is re-read from it (through a
    // second handle on the temporary file) and its hash compared; a mismatch
    // aborts the write, so nothing unverified appears at the target.
    let back = if hashing && CHECK_BEFORE_RENAME {
        Some(std::fs::File::open(out.temp_path()).map_err(io_err)?)
    } else {
        None
    };
    out.write_all(layout.header_bytes()).map_err(io_err)?;
    let base = layout.header_bytes().len() as u64;
    let mut written = Vec::new();
    let mut ranges = Vec::new();
    for &si in layout.order() {
        let std::ops::Range { start, end } = layout.offsets()[si].clone();
        let p = &plan.tensors[group[si]];
        let ck = &plan.checkpoints[p.input];
        // The hash covers exactly the bytes handed to the file.
        let mut hasher = hashing.then(Xxh3::new);
        let want = (end - start) as u64;
        let mut len = 0u64;
        streamer.emit(p.input, ck, &p.name, &p.tensor, hasher.as_mut(), &mut |b| {
            if cancelled(opts) {
                return Err(ConvertError::Interrupted);
            }
            len += b.len() as u64;
            if len > want {
                return Err(ConvertError::Tensor {
                    path: ck.path().to_owned(),
                    name: p.name.clone(),
                    why: format!("yields more than its {want} bytes"),
                });
            }
            out.write_all(b).map_err(io_err)
        })?;
        if len != want {
            return Err(ConvertError::Tensor {
                path: ck.path().to_owned(),
                name: p.name.clone(),
                why: format!("yields {len} bytes, its dtype and shape {want}"),
            });
        }
        if cancelled(opts) {
            return Err(ConvertError::Interrupted);
        }
        if let Some(h) = hasher {
            written.push(Written {
                name: p.name.clone(),
                dtype: p.tensor.dtype,
                shape: p.tensor.shape.clone(),
                len,
                xxh3_128: h.digest128(),
            });
        }
        progress(Progress::Tensor {
            name: &p.name,
            bytes: want,
        });
        ranges.push(base + start as u64..base + end as u64);
    }
    let mut checked = 0;
    if let Some(back) = &back {
        out.flush().map_err(io_err)?;
        let jobs: Vec<_> = ranges.into_iter().zip(written.iter()).collect();
        checked = check_ranges(file, back, &jobs)?;
        // A signal during the check still stops the rename.
        if cancelled(opts) {
            return Err(ConvertError::Interrupted);
        }
    }
    out.commit()?;
    Ok((written, checked))
}
