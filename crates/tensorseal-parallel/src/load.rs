//! Opening a checkpoint and reading a rank's bytes with positioned reads.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use tensorseal_format::index::{open_path, Checkpoint as Resolved};
use tensorseal_format::Dtype;
use tensorseal_format::{read_exact_at, PreadFile, ReadTensors};

use crate::plan::{Assignment, Plan, Rule};
use crate::runs::{select, Runs};
use crate::ParallelError;

/// Largest piece one read task handles, so that big runs spread over threads.
const CHUNK: usize = 16 << 20;

/// Threads of the read pool: reads of small runs wait on storage latency,
/// not on the CPU, so more of them than cores keep the device busy.
const IO_THREADS: usize = 8;

/// Runs shorter than this are announced to the kernel (`WILLNEED`) before
/// they are read, so that their pages are fetched concurrently.
const SMALL_RUN: u64 = 1 << 20;

fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let n = std::env::var("TENSORSEAL_IO_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| (1..=256).contains(&n))
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .max(IO_THREADS)
            });
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("tensorseal-io-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Asks the kernel to start reading the pages of `runs` (small runs of a
/// strided block): each run's pages only, adjacent page ranges merged, so
/// storage reads stay within one page per run of the share. The runs are
/// expanded one at a time, never listed.
#[cfg(target_os = "linux")]
fn will_need(file: &File, runs: Runs) {
    const PAGE: u64 = 4096;
    if runs.run_len() >= SMALL_RUN {
        return;
    }
    let mut pending: Option<(u64, u64)> = None;
    let flush = |range: (u64, u64)| {
        let _ = rustix::fs::fadvise(
            file,
            range.0,
            std::num::NonZeroU64::new(range.1 - range.0),
            rustix::fs::Advice::WillNeed,
        );
    };
    for r in runs.iter() {
        let start = r.offset / PAGE * PAGE;
        // The end of a run fits in a u64 (a `Runs` invariant); rounding it
        // up to a page saturates rather than wraps.
        let end = (r.offset + r.len).div_ceil(PAGE).saturating_mul(PAGE);
        pending = match pending {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some(p) => {
                flush(p);
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some(p) = pending {
        flush(p);
    }
}

#[cfg(not(target_os = "linux"))]
fn will_need(_file: &File, _runs: Runs) {}

/// Turns off the kernel's readahead for our descriptor: a rank reads
/// exactly its runs (big ones as 16 MiB positioned reads), and readahead
/// (8 MiB windows on common virtual disks) would read past each run's end,
/// bytes some other rank keeps.
#[cfg(target_os = "linux")]
fn no_readahead(file: &File) {
    let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::Random);
}

#[cfg(not(target_os = "linux"))]
fn no_readahead(_file: &File) {}

/// Alignment of each tensor in a buffer laid out by [`LoadPlan`].
pub const ALIGN: usize = 64;

/// One file of a checkpoint.
#[derive(Debug)]
pub struct SourceFile {
    /// Its path.
    pub path: PathBuf,
    /// The open file.
    pub file: File,
    /// Offset of its data buffer.
    pub data_start: u64,
}

/// One tensor of a checkpoint.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Full shape.
    pub shape: Vec<usize>,
    /// Index into [`Checkpoint::files`].
    pub file: usize,
    /// Absolute offset of its first byte in that file.
    pub offset: u64,
}

/// A checkpoint whose headers were read and validated: one file, or the
/// shards of an index (each checked against it). Counts the bytes read.
#[derive(Debug)]
pub struct Checkpoint {
    files: Vec<SourceFile>,
    tensors: Vec<TensorEntry>,
    header_bytes: u64,
    data_bytes: AtomicU64,
    read_gap: u64,
}

impl Checkpoint {
    /// Opens a `.safetensors` file, a `*.safetensors.index.json`, or a
    /// directory holding either (see `tensorseal_format::index::open_path`).
    /// Reads only headers (and the index).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ParallelError> {
        let path = path.as_ref();
        let mut files = Vec::new();
        let mut tensors = Vec::new();
        let mut header_bytes = 0u64;
        let mut add =
            |path: PathBuf, file: File, header: &tensorseal_format::Header, data_start: usize| {
                let idx = files.len();
                for (name, info) in header.tensors() {
                    tensors.push(TensorEntry {
                        name: name.clone(),
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        file: idx,
                        offset: (data_start + info.data_offsets.0) as u64,
                    });
                }
                files.push(SourceFile {
                    path,
                    file,
                    data_start: data_start as u64,
                });
            };
        let mut take = |reader: PreadFile| -> Result<(), ParallelError> {
            let file = reader
                .file()
                .try_clone()
                .map_err(|e| ParallelError::io(reader.path(), e))?;
            header_bytes += reader.data_start() as u64;
            add(
                reader.path().to_owned(),
                file,
                reader.header(),
                reader.data_start(),
            );
            Ok(())
        };
        match open_path(path)? {
            Resolved::Single(p) => {
                take(PreadFile::open(&p).map_err(|e| e.in_file(&p))?)?;
            }
            Resolved::Sharded(index) => {
                let index_len = std::fs::metadata(index.path())
                    .map(|m| m.len())
                    .unwrap_or(0);
                for shard in index.validate()? {
                    take(shard.reader)?;
                }
                header_bytes += index_len;
            }
        }
        Ok(Checkpoint {
            files,
            tensors,
            header_bytes,
            data_bytes: AtomicU64::new(0),
            read_gap: 0,
        })
    }

    /// Reads through gaps of at most `gap` bytes between the runs of a
    /// strided block (one read per span of up to 16 MiB instead of one per
    /// run): more bytes, far fewer I/O operations, for ranks that share a
    /// machine (and so a page cache). 0 (the default) reads runs exactly.
    pub fn with_read_gap(mut self, gap: u64) -> Self {
        self.read_gap = gap;
        self
    }

    /// The files, in order (shards sorted by name).
    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }

    /// Every tensor, file by file in file order.
    pub fn tensors(&self) -> &[TensorEntry] {
        &self.tensors
    }

    /// Bytes of headers and index read when opening.
    pub fn header_bytes(&self) -> u64 {
        self.header_bytes
    }

    /// Tensor bytes read so far by [`Checkpoint::read`] and friends.
    pub fn data_bytes_read(&self) -> u64 {
        self.data_bytes.load(Ordering::Relaxed)
    }

    /// Decides every tensor for `rank` of `world_size` (see [`Plan::assign`]).
    pub fn assign<F>(
        &self,
        plan: &Plan,
        rank: usize,
        world_size: usize,
        callable: F,
    ) -> Result<Vec<Assignment>, ParallelError>
    where
        F: FnMut(usize, &str, &[usize], usize, usize) -> Result<Rule, ParallelError>,
    {
        let list: Vec<(&str, &[usize])> = self
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t.shape.as_slice()))
            .collect();
        plan.assign(&list, rank, world_size, callable)
    }

    /// Plans the reads of one assignment per tensor (as [`Checkpoint::assign`]
    /// returns them). Tensors are laid out in one buffer, each at a multiple
    /// of [`ALIGN`].
    pub fn plan(&self, assignments: &[Assignment]) -> Result<LoadPlan, ParallelError> {
        if assignments.len() != self.tensors.len() {
            return Err(ParallelError::plan(format!(
                "{} assignments for {} tensors",
                assignments.len(),
                self.tensors.len()
            )));
        }
        let mut tensors = Vec::new();
        let mut at = 0usize;
        for (i, (t, a)) in self.tensors.iter().zip(assignments).enumerate() {
            let Some(sel) = select(&t.name, t.dtype, &t.shape, *a)? else {
                continue;
            };
            let len = usize::try_from(sel.len).map_err(|_| ParallelError::Overflow {
                tensor: t.name.clone(),
                shape: t.shape.clone(),
            })?;
            let start = at.next_multiple_of(ALIGN);
            at = start + len;
            tensors.push(TensorLoad {
                index: i,
                name: t.name.clone(),
                dtype: t.dtype,
                shape: sel.shape,
                assignment: *a,
                file: t.file,
                runs: sel
                    .runs
                    .shifted(t.offset)
                    .ok_or_else(|| ParallelError::Overflow {
                        tensor: t.name.clone(),
                        shape: t.shape.clone(),
                    })?,
                start,
                len,
            });
        }
        Ok(LoadPlan {
            tensors,
            total_len: at,
        })
    }

    /// Reads every tensor of `plan` into `buf` (at least
    /// [`LoadPlan::total_len`] bytes) at the planned offsets.
    pub fn read(&self, plan: &LoadPlan, buf: &mut [u8]) -> Result<(), ParallelError> {
        if buf.len() < plan.total_len {
            return Err(ParallelError::BufferSize {
                tensor: "<all>".into(),
                expected: plan.total_len,
                found: buf.len(),
            });
        }
        let mut parts = Vec::with_capacity(plan.tensors.len());
        let mut rest = buf;
        let mut at = 0usize;
        for t in &plan.tensors {
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(t.start - at);
            let (mine, tail) = tail.split_at_mut(t.len);
            parts.push(mine);
            rest = tail;
            at = t.start + t.len;
        }
        self.read_each(plan, &mut parts)
    }

    /// Reads tensor `i` of `plan` into `bufs[i]`, each exactly
    /// [`TensorLoad::len`] bytes (caller-provided memory).
    ///
    /// Runs are read with positioned reads of at most 16 MiB, in parallel.
    /// With a read gap ([`Checkpoint::with_read_gap`]), small runs no
    /// further apart than the gap are read as covering spans of at most
    /// 16 MiB into scratch memory and gathered. Either way the reads are
    /// produced from each tensor's strided [`Runs`] as they are performed:
    /// nothing is allocated per run.
    pub fn read_each(&self, plan: &LoadPlan, bufs: &mut [&mut [u8]]) -> Result<(), ParallelError> {
        if bufs.len() != plan.tensors.len() {
            return Err(ParallelError::plan(format!(
                "{} buffers for {} tensors",
                bufs.len(),
                plan.tensors.len()
            )));
        }
        for (t, buf) in plan.tensors.iter().zip(bufs.iter()) {
            if buf.len() != t.len {
                return Err(ParallelError::BufferSize {
                    tensor: t.name.clone(),
                    expected: t.len,
                    found: buf.len(),
                });
            }
            if t.runs.total() != t.len as u64 {
                return Err(ParallelError::plan(format!(
                    "tensor {:?}: runs hold {} bytes, {} planned",
                    t.name,
                    t.runs.total(),
                    t.len
                )));
            }
            if self.files.get(t.file).is_none() {
                return Err(ParallelError::plan(format!(
                    "tensor {:?}: plan names file {}, not in this checkpoint",
                    t.name, t.file
                )));
            }
        }
        for src in &self.files {
            no_readahead(&src.file);
        }
        if self.read_gap == 0 {
            for t in &plan.tensors {
                if t.runs.count() > 1 {
                    if let Some(src) = self.files.get(t.file) {
                        will_need(&src.file, t.runs);
                    }
                }
            }
        }
        let mut run = || {
            plan.tensors
                .par_iter()
                .zip(bufs.par_iter_mut())
                .try_for_each(|(t, buf)| self.read_tensor(t, buf))
        };
        match pool() {
            Some(p) => p.install(run),
            None => run(),
        }
    }

    /// Reads the runs of `t` into `buf` (`t.len` bytes, checked), in
    /// parallel: the tasks are slices of `buf` (rayon splits them lazily),
    /// one per run or per span of runs, each run's position computed from
    /// its index.
    fn read_tensor(&self, t: &TensorLoad, buf: &mut [u8]) -> Result<(), ParallelError> {
        let src = self.files.get(t.file).ok_or_else(|| {
            ParallelError::plan(format!(
                "tensor {:?}: plan names file {}, not in this checkpoint",
                t.name, t.file
            ))
        })?;
        let runs = t.runs;
        if runs.is_empty() {
            return Ok(());
        }
        // Runs hold t.len bytes (checked), so one run's length fits a usize
        // and buf splits into exactly runs.count() pieces of it.
        let len = usize::try_from(runs.run_len()).map_err(|_| ParallelError::Overflow {
            tensor: t.name.clone(),
            shape: t.shape.clone(),
        })?;
        let missing = |k: usize| {
            ParallelError::plan(format!(
                "tensor {:?}: no run {k} of {}",
                t.name,
                runs.count()
            ))
        };
        let io = |e| ParallelError::io(&src.path, e);
        let chunk = CHUNK as u64;
        let small = runs.count() > 1 && runs.run_len() < chunk;
        if small && self.read_gap > 0 && runs.stride() - runs.run_len() <= self.read_gap {
            // Runs per span: the most whose covering range is <= CHUNK.
            let per = (chunk - runs.run_len()) / runs.stride() + 1;
            if per > 1 {
                // per * len <= (per - 1) * stride + len <= CHUNK.
                let piece = per as usize * len;
                return buf
                    .par_chunks_mut(piece)
                    .enumerate()
                    .try_for_each(|(i, dst)| {
                        let first = i.saturating_mul(per as usize);
                        let n = dst.len() / len;
                        let (Some(a), Some(b)) = (
                            runs.get(first as u64),
                            runs.get((first + n.saturating_sub(1)) as u64),
                        ) else {
                            return Err(missing(first));
                        };
                        // At most CHUNK bytes: bounded scratch memory.
                        let span = b.offset + b.len - a.offset;
                        let mut scratch = vec![0u8; span as usize];
                        read_exact_at(&src.file, &mut scratch, a.offset).map_err(io)?;
                        self.data_bytes.fetch_add(span, Ordering::Relaxed);
                        let stride = runs.stride() as usize;
                        for (k, piece) in dst.chunks_mut(len).enumerate() {
                            let at = k * stride;
                            let from = scratch.get(at..at + len).ok_or_else(|| {
                                ParallelError::plan(format!(
                                    "tensor {:?}: span piece {at}+{len} outside {span}",
                                    t.name
                                ))
                            })?;
                            piece.copy_from_slice(from);
                        }
                        Ok(())
                    });
            }
        }
        buf.par_chunks_mut(len)
            .enumerate()
            .try_for_each(|(k, dst)| {
                let r = runs.get(k as u64).ok_or_else(|| missing(k))?;
                if dst.len() <= CHUNK {
                    read_exact_at(&src.file, dst, r.offset).map_err(io)?;
                    self.data_bytes
                        .fetch_add(dst.len() as u64, Ordering::Relaxed);
                    return Ok(());
                }
                // A big run: pieces of CHUNK, read in parallel.
                dst.par_chunks_mut(CHUNK)
                    .enumerate()
                    .try_for_each(|(j, piece)| {
                        let off = r.offset + (j * CHUNK) as u64;
                        read_exact_at(&src.file, piece, off).map_err(io)?;
                        self.data_bytes
                            .fetch_add(piece.len() as u64, Ordering::Relaxed);
                        Ok(())
                    })
            })
    }

    /// Plans and reads `rank`'s share into one fresh buffer.
    pub fn load(
        &self,
        plan: &Plan,
        rank: usize,
        world_size: usize,
    ) -> Result<(LoadPlan, Vec<u8>), ParallelError> {
        let assignments = self.assign(plan, rank, world_size, |i, name, _, _, _| {
            Err(ParallelError::plan(format!(
                "rule of {name:?} is callable {i}, which only the Python API can run"
            )))
        })?;
        let lp = self.plan(&assignments)?;
        let mut buf = vec![0u8; lp.total_len];
        self.read(&lp, &mut buf)?;
        Ok((lp, buf))
    }
}

/// The planned reads of one tensor.
#[derive(Debug, Clone)]
pub struct TensorLoad {
    /// Index into [`Checkpoint::tensors`].
    pub index: usize,
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape of the rank's part.
    pub shape: Vec<usize>,
    /// What was assigned.
    pub assignment: Assignment,
    /// Index into [`Checkpoint::files`].
    pub file: usize,
    /// Absolute file offsets, ascending and coalesced, as one strided
    /// group (expanded on demand: see [`Runs::iter`]).
    pub runs: Runs,
    /// Offset in the combined buffer.
    pub start: usize,
    /// Byte length.
    pub len: usize,
}

/// The planned reads of one rank.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// The tensors the rank loads, in checkpoint order.
    pub tensors: Vec<TensorLoad>,
    /// Length of a buffer holding them all.
    pub total_len: usize,
}

impl LoadPlan {
    /// Sum of the tensors' bytes.
    pub fn data_len(&self) -> u64 {
        self.tensors.iter().map(|t| t.len as u64).sum()
    }

    /// Number of runs (counted, not listed; saturates at `usize::MAX`).
    pub fn run_count(&self) -> usize {
        self.tensors.iter().fold(0usize, |n, t| {
            n.saturating_add(usize::try_from(t.runs.count()).unwrap_or(usize::MAX))
        })
    }
}
