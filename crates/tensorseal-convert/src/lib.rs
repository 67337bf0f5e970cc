//! Convert pickle checkpoints to safetensors without running them, and back.
//!
//! Inputs: torch zip checkpoints (any root folder, stored or deflated
//! members, `byteorder` record), legacy pre-1.6 torch files, NumPy `.npy` and
//! `.npz`, and Hugging Face model directories (`pytorch_model.bin` or shards
//! with `pytorch_model.bin.index.json`). Every pickle is read by
//! [`tensorseal_pickle::load`]: plain data only, globals limited to the
//! weights allow-list, nothing imported or called.
//!
//! Tensors are streamed one at a time from the mapped input to the output
//! (contiguous views copied straight, others materialised in logical order
//! in 1 MiB pieces), so memory stays far below the checkpoint size.
//! [`to_torch`] writes the reverse: a torch zip checkpoint that
//! `torch.load(path, weights_only=True)` accepts.
//!
//! After writing, the output is checked as [`Verify`] says: by default each
//! tensor is hashed (XXH3-128) from the copy buffer while it is written, and
//! only the output is read back ([`verify_checksums`]); [`Verify::Full`]
//! re-reads the input too and compares every byte ([`verify_against_input`]).
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod keys;
pub mod npy;
mod source;
pub mod tensor;
mod torch_write;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tensorseal_format::shard::{index_json, plan_shards, shard_name};
use tensorseal_format::{
    read_exact_at, AtomicFile, Dtype, Durability, FileWriter, FormatError, PreadFile, ReadTensors,
    TensorSpec, WriteOptions,
};
use xxhash_rust::xxh3::Xxh3;

pub use error::ConvertError;
pub use source::{Checkpoint, Format, LEGACY_MAGIC};
pub use tensor::{TensorRef, DEFAULT_KEYS};
pub use torch_write::to_torch;

/// Options of [`to_safetensors`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Dotted path of the subtree to convert (`--select`).
    pub select: Option<String>,
    /// Keep every tensor of the whole object under its dotted path instead of
    /// picking the model weights (`--flatten`).
    pub flatten: bool,
    /// Shard the output (directory outputs only).
    pub max_shard_size: Option<u64>,
    /// How to check the output after writing it.
    pub verify: Verify,
    /// Replace an existing output.
    pub overwrite: bool,
    /// Whether every file written is fsynced before returning (outputs are
    /// always written atomically).
    pub durability: Durability,
    /// Most tensor bytes the output may hold (`--max-output-size`), checked
    /// before anything is written. `None`: [`default_max_output_size`] of
    /// the inputs.
    pub max_output_size: Option<u64>,
    /// Set (by a signal handler, say) to stop the conversion: writing stops
    /// within one piece (1 MiB), the temporary file is removed and
    /// [`ConvertError::Interrupted`] returned.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// Floor of [`default_max_output_size`]: 256 MiB.
pub const OUTPUT_SIZE_FLOOR: u64 = 256 << 20;

/// The default bound on the tensor bytes written from inputs that hold
/// `input_bytes` of data ([`Checkpoint::data_bytes`] summed): twice that,
/// plus [`OUTPUT_SIZE_FLOOR`].
///
/// Tensors that do not overlap never need more bytes than their storages
/// hold, so an ordinary checkpoint converts well within the input size;
/// twice leaves room for overlapping views that torch materialises
/// (slices saved separately, a few expanded buffers), and the floor for
/// small files with expanded (stride-0) tensors. A stride-0 view can make
/// a few bytes of input stand for terabytes of output: those are refused
/// unless `--max-output-size` allows them.
pub fn default_max_output_size(input_bytes: u64) -> u64 {
    input_bytes
        .saturating_mul(2)
        .saturating_add(OUTPUT_SIZE_FLOOR)
}

/// How [`to_safetensors`] checks its output after writing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// Hash each tensor's bytes (XXH3-128) as they are copied from the input
    /// to the output, then re-read only the output: validate its header,
    /// and compare every tensor's name, dtype, shape, length and hash (and
    /// the metadata) with what was written. Proves the file on disk holds
    /// exactly the bytes read from the input during the copy.
    #[default]
    Checksum,
    /// Re-read both the input and the output and compare every byte. Also
    /// catches an input that reads back differently the second time (changed
    /// while converting, or a faulty read), at about twice the read cost.
    Full,
    /// No check after writing.
    Off,
}

impl Verify {
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Verify::Checksum => "checksum",
            Verify::Full => "full",
            Verify::Off => "none",
        }
    }
}

/// What was written for one tensor, as [`Verify::Checksum`] checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Name in the output.
    pub name: String,
    /// Its dtype.
    pub dtype: Dtype,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Bytes written.
    pub len: u64,
    /// XXH3-128 of those bytes.
    pub xxh3_128: u128,
}

/// Progress events.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    /// Conversion starts: total tensor bytes to write.
    Start {
        /// Bytes.
        total_bytes: u64,
        /// Tensors.
        tensors: usize,
    },
    /// A tensor was written.
    Tensor {
        /// Its name.
        name: &'a str,
        /// Its bytes.
        bytes: u64,
    },
    /// Verification starts.
    Verify,
}

/// One output tensor: its source and where its bytes come from.
#[derive(Debug, Clone)]
pub struct PlannedTensor {
    /// Name in the output.
    pub name: String,
    /// Index of the input file.
    pub input: usize,
    /// The view.
    pub tensor: TensorRef,
}

/// What [`to_safetensors`] did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Input files.
    pub inputs: Vec<PathBuf>,
    /// Their format.
    pub format: Option<Format>,
    /// Nested-checkpoint key chosen by default.
    pub chosen: Option<String>,
    /// Tensors written.
    pub tensors: usize,
    /// Tensors dropped as identical to another (`alias -> kept`), recorded in
    /// the metadata as Hugging Face's converter does.
    pub aliases: Vec<(String, String)>,
    /// Non-tensor values kept as JSON in metadata (`tensorseal.values`).
    pub values: usize,
    /// Files written.
    pub outputs: Vec<PathBuf>,
    /// Index file written, if sharded.
    pub index: Option<PathBuf>,
    /// Tensor bytes written.
    pub total_bytes: u64,
    /// Whether the output was re-read and compared.
    pub verified: bool,
    /// Per output file, what was written to it (filled with
    /// [`Verify::Checksum`], empty otherwise).
    pub written: Vec<Vec<Written>>,
    /// Tensors whose bytes [`Verify::Checksum`] re-read and hashed from the
    /// output before renaming it into place (on unix; elsewhere the output
    /// is re-read after the rename and this stays 0).
    pub checked_before_rename: usize,
}

/// The checkpoint files of `src`: the file itself, or in a directory
/// `pytorch_model.bin.index.json`'s shards, else `pytorch_model.bin`, else a
/// single `*.bin`/`*.pt`/`*.pth`/`*.ckpt`.
pub fn resolve_inputs(src: &Path) -> Result<Vec<PathBuf>, ConvertError> {
    let meta = std::fs::metadata(src).map_err(|e| ConvertError::io(src, e))?;
    if !meta.is_dir() {
        if src.to_string_lossy().ends_with(".index.json") {
            return shards_of_index(src);
        }
        return Ok(vec![src.to_owned()]);
    }
    let index = src.join("pytorch_model.bin.index.json");
    if index.is_file() {
        return shards_of_index(&index);
    }
    let bin = src.join("pytorch_model.bin");
    if bin.is_file() {
        return Ok(vec![bin]);
    }
    let mut found = Vec::new();
    for e in std::fs::read_dir(src).map_err(|e| ConvertError::io(src, e))? {
        let p = e.map_err(|e| ConvertError::io(src, e))?.path();
        let ext = p
            .extension()
            .map(|x| x.to_string_lossy().into_owned())
            .unwrap_or_default();
        if p.is_file() && matches!(ext.as_str(), "bin" | "pt" | "pth" | "ckpt" | "npz") {
            found.push(p);
        }
    }
    found.sort();
    match found.len() {
        1 => Ok(found),
        0 => Err(ConvertError::format(
            src,
            "no pytorch_model.bin, index or checkpoint file in the directory",
        )),
        _ => Err(ConvertError::format(
            src,
            format!(
                "several checkpoint files, name one: {}",
                found
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Most bytes of a `pytorch_model.bin.index.json` (as the safetensors index limit).
const MAX_INDEX_BYTES: u64 = 100_000_000;

/// Reads an index file: a regular file (never blocks on a FIFO or device), bounded in size.
fn read_index_file(index: &Path) -> Result<Vec<u8>, ConvertError> {
    use std::io::Read;
    let file = tensorseal_format::open_regular(index).map_err(|e| ConvertError::io(index, e))?;
    let mut text = Vec::new();
    file.take(MAX_INDEX_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| ConvertError::io(index, e))?;
    if text.len() as u64 > MAX_INDEX_BYTES {
        return Err(ConvertError::format(
            index,
            format!("index is larger than the limit of {MAX_INDEX_BYTES} bytes"),
        ));
    }
    Ok(text)
}

/// The `weight_map` of a `pytorch_model.bin.index.json`: (tensor name,
/// shard file relative to the index), in the index's order.
fn weight_map(index: &Path) -> Result<Vec<(String, String)>, ConvertError> {
    let text = read_index_file(index)?;
    let json: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| ConvertError::format(index, format!("invalid index JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ConvertError::format(index, "index has no `weight_map` object"))?;
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let f = v.as_str().ok_or_else(|| {
            ConvertError::format(index, format!("weight_map value of `{k}` is not a string"))
        })?;
        if !tensorseal_format::index::is_safe_relative(f) {
            return Err(ConvertError::format(
                index,
                format!("shard path `{f}` escapes the directory"),
            ));
        }
        out.push((k.clone(), f.to_owned()));
    }
    Ok(out)
}

fn shards_of_index(index: &Path) -> Result<Vec<PathBuf>, ConvertError> {
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files: Vec<String> = weight_map(index)?.into_iter().map(|(_, f)| f).collect();
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(ConvertError::format(index, "index names no shards"));
    }
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// The `pytorch_model.bin.index.json` that [`resolve_inputs`] takes the
/// shards of, if it does.
fn index_of(src: &Path) -> Option<PathBuf> {
    if src.is_dir() {
        let ix = src.join("pytorch_model.bin.index.json");
        return ix.is_file().then_some(ix);
    }
    src.to_string_lossy()
        .ends_with(".index.json")
        .then(|| src.to_owned())
}

/// The index and the shards must agree exactly. transformers loads every
/// tensor of every shard the index names, and takes the weight_map's keys as
/// the checkpoint's keys: a listed tensor that its shard does not hold would
/// silently be left out (transformers leaves that weight as initialised), and
/// a tensor a shard holds that the index does not list (or lists under
/// another shard) makes the index a false description of the checkpoint.
/// Both are refused, naming the tensor and the shards. Names are the ones
/// convert writes (aliases of one storage included), so `--select` or
/// `--flatten` that rename tensors make the index disagree too.
fn check_index(
    index: &Path,
    inputs: &[PathBuf],
    planned: &[PlannedTensor],
    aliases: &[(String, String)],
) -> Result<(), ConvertError> {
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut provided: HashMap<&str, usize> = HashMap::new();
    for p in planned {
        provided.insert(p.name.as_str(), p.input);
    }
    for (alias, kept) in aliases {
        if let Some(&i) = provided.get(kept.as_str()) {
            provided.insert(alias.as_str(), i);
        }
    }
    let shard_name = |i: usize| {
        inputs
            .get(i)
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let wm = weight_map(index)?;
    let mut listed: HashMap<&str, &str> = HashMap::new();
    for (name, file) in &wm {
        listed.insert(name.as_str(), file.as_str());
        let want = dir.join(file);
        let at = inputs.iter().position(|p| *p == want);
        match provided.get(name.as_str()) {
            Some(&i) if Some(i) == at => {}
            held => {
                let also = held
                    .map(|&i| format!(" (`{}` holds it)", shard_name(i)))
                    .unwrap_or_default();
                return Err(ConvertError::format(
                    index,
                    format!(
                        "weight_map lists `{name}` in `{file}`, but no shard provides it there{also}: refusing to drop or move a tensor"
                    ),
                ));
            }
        }
    }
    let mut extra: Vec<(&str, usize)> = provided
        .iter()
        .filter(|(n, _)| !listed.contains_key(*n))
        .map(|(n, i)| (*n, *i))
        .collect();
    extra.sort();
    if let Some((name, i)) = extra.first() {
        return Err(ConvertError::format(
            index,
            format!(
                "shard `{}` holds `{name}`, but the index does not list it ({} such tensors): refusing a checkpoint its index does not describe",
                shard_name(*i),
                extra.len()
            ),
        ));
    }
    Ok(())
}

/// What [`plan`] returns: the opened inputs, the output tensors, the report
/// so far and the metadata to write.
pub type Plan = (
    Vec<Checkpoint>,
    Vec<PlannedTensor>,
    Report,
    BTreeMap<String, String>,
);

/// Opens the inputs and plans the output tensors (selection, aliases).
pub fn plan(inputs: &[PathBuf], opts: &Options) -> Result<Plan, ConvertError> {
    let mut cks = Vec::new();
    let mut planned: Vec<PlannedTensor> = Vec::new();
    let mut report = Report {
        inputs: inputs.to_vec(),
        ..Report::default()
    };
    let mut extras = serde_json::Map::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, path) in inputs.iter().enumerate() {
        let mut ck = Checkpoint::open(path)?;
        report.format.get_or_insert(ck.format());
        let mut found: Vec<(String, Result<TensorRef, String>)> = Vec::new();
        match ck.format() {
            Format::Npy | Format::Npz => {
                for (n, t) in ck.npy_tensors() {
                    let n = if n.is_empty() {
                        path.file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_else(|| "array".into())
                    } else {
                        n.clone()
                    };
                    found.push((n, Ok(t.clone())));
                }
            }
            Format::TorchZip | Format::TorchLegacy => {
                let sel = tensor::select(ck.root(), opts.select.as_deref(), opts.flatten).map_err(
                    |why| ConvertError::Select {
                        path: path.clone(),
                        select: opts.select.clone().unwrap_or_default(),
                        why,
                    },
                )?;
                if report.chosen.is_none() {
                    report.chosen = sel.chosen.clone();
                }
                let mut inline = Vec::new();
                tensor::collect(
                    sel.value,
                    ck.big_endian(),
                    &mut found,
                    &mut extras,
                    &mut inline,
                );
                if found.is_empty() {
                    if let Some(t) = tensor::tensor_of(sel.value, ck.big_endian()) {
                        found.push(("tensor".into(), t));
                    }
                }
                for (key, bytes) in inline {
                    ck.add_inline(key, bytes);
                }
                if ck.big_endian() {
                    check_swap_units(path, &found)?;
                }
            }
        }
        for (name, t) in found {
            let name = if name.is_empty() {
                "tensor".to_owned()
            } else {
                name
            };
            let t = t.map_err(|why| ConvertError::Tensor {
                path: path.clone(),
                name: name.clone(),
                why,
            })?;
            if t.byte_len().is_none() {
                return Err(ConvertError::Tensor {
                    path: path.clone(),
                    name,
                    why: format!("shape {:?} of {} overflows", t.shape, t.dtype),
                });
            }
            if names.insert(name.clone(), i).is_some() {
                return Err(ConvertError::Tensor {
                    path: path.clone(),
                    name,
                    why: "appears twice (in two shards or two paths)".into(),
                });
            }
            planned.push(PlannedTensor {
                name,
                input: i,
                tensor: t,
            });
        }
        cks.push(ck);
    }
    if planned.is_empty() {
        return Err(ConvertError::format(
            inputs
                .first()
                .map(PathBuf::as_path)
                .unwrap_or(Path::new("")),
            "no tensors found (use --select or --flatten for nested checkpoints)",
        ));
    }
    // Identical views of one storage: keep the first name in sorted order.
    let mut groups: HashMap<(usize, TensorRef), Vec<usize>> = HashMap::new();
    for (i, p) in planned.iter().enumerate() {
        groups
            .entry((p.input, p.tensor.clone()))
            .or_default()
            .push(i);
    }
    let mut drop = vec![false; planned.len()];
    let mut aliases = Vec::new();
    for idx in groups.values() {
        if idx.len() < 2 {
            continue;
        }
        let mut sorted = idx.clone();
        sorted.sort_by(|&a, &b| planned[a].name.cmp(&planned[b].name));
        let keep = sorted[0];
        for &d in &sorted[1..] {
            drop[d] = true;
            aliases.push((planned[d].name.clone(), planned[keep].name.clone()));
        }
    }
    aliases.sort();
    let mut keep_iter = drop.iter();
    planned.retain(|_| !keep_iter.next().copied().unwrap_or(false));
    let mut meta = BTreeMap::new();
    meta.insert("format".to_owned(), "pt".to_owned());
    for (a, k) in &aliases {
        meta.insert(a.clone(), k.clone());
    }
    if !extras.is_empty() {
        report.values = extras.len();
        meta.insert(
            "tensorseal.values".to_owned(),
            serde_json::Value::Object(extras).to_string(),
        );
    }
    report.aliases = aliases;
    report.tensors = planned.len();
    Ok((cks, planned, report, meta))
}

/// In a big-endian torch zip, torch swaps each storage once, in the units of
/// the first tensor that loads it; a storage viewed with two different swap
/// units cannot be converted faithfully.
fn check_swap_units(
    path: &Path,
    found: &[(String, Result<TensorRef, String>)],
) -> Result<(), ConvertError> {
    let mut units: HashMap<String, (usize, &str)> = HashMap::new();
    for (name, t) in found {
        let Ok(t) = t else { continue };
        if !t.big_endian || t.storage.starts_with("numpy:") {
            continue;
        }
        let Some(u) = tensor::swap_unit(t.dtype) else {
            continue;
        };
        let (first, other) = *units
            .entry(t.storage.to_ascii_lowercase())
            .or_insert((u, name.as_str()));
        if first != u {
            return Err(ConvertError::Tensor {
                path: path.to_owned(),
                name: name.clone(),
                why: format!(
                    "big-endian storage `{}` is also viewed by `{other}` with {first}-byte elements, here {u}-byte: torch swaps it once, so one of them cannot be converted faithfully",
                    t.storage
                ),
            });
        }
    }
    Ok(())
}

/// Writes `specs` with the format crate's streaming writer, calling `after`
/// once each tensor's bytes are in the file (flushed), before the next one.
fn write_observed<F, A>(
    path: &Path,
    specs: &[TensorSpec],
    opts: &WriteOptions,
    mut fill: F,
    mut after: A,
) -> Result<(), FormatError>
where
    F: FnMut(usize, &mut dyn Write) -> std::io::Result<()>,
    A: FnMut(usize, &std::fs::File, std::ops::Range<u64>) -> std::io::Result<()>,
{
    let mut w = FileWriter::create(path, specs, opts)?;
    for i in w.layout().order().to_vec() {
        let range = w.write_tensor(i, |out| fill(i, out))?;
        after(i, w.flushed_file()?, range).map_err(|e| FormatError::io(path, e))?;
    }
    w.commit()
}

fn spec(p: &PlannedTensor) -> TensorSpec {
    TensorSpec {
        name: p.name.clone(),
        dtype: p.tensor.dtype,
        shape: p.tensor.shape.clone(),
    }
}

/// Converts `src` (a checkpoint file, index or model directory) to `dst` (a
/// `.safetensors` file, or a directory for `model.safetensors` or shards
/// with `model.safetensors.index.json`).
pub fn to_safetensors(
    src: &Path,
    dst: &Path,
    opts: &Options,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Report, ConvertError> {
    let inputs = resolve_inputs(src)?;
    let (cks, planned, mut report, meta) = plan(&inputs, opts)?;
    if let Some(ix) = index_of(src) {
        check_index(&ix, &inputs, &planned, &report.aliases)?;
    }
    // The output size, bounded before any byte (or directory) is written.
    let mut total: u64 = 0;
    for p in &planned {
        total = p
            .tensor
            .byte_len()
            .and_then(|n| u64::try_from(n).ok())
            .and_then(|n| total.checked_add(n))
            .ok_or_else(|| ConvertError::format(src, "the total output size overflows 64 bits"))?;
    }
    let limit = opts.max_output_size.unwrap_or_else(|| {
        default_max_output_size(
            cks.iter()
                .map(Checkpoint::data_bytes)
                .fold(0u64, u64::saturating_add),
        )
    });
    if total > limit {
        let largest = planned
            .iter()
            .max_by_key(|p| p.tensor.byte_len().unwrap_or(0))
            .map(|p| {
                format!(
                    "; the largest is `{}` ({} bytes, size {:?}, stride {:?})",
                    p.name,
                    p.tensor.byte_len().unwrap_or(0),
                    p.tensor.shape,
                    p.tensor.stride
                )
            })
            .unwrap_or_default();
        return Err(ConvertError::OutputTooLarge {
            path: src.to_owned(),
            total,
            limit,
            default: opts.max_output_size.is_none(),
            detail: largest,
        });
    }
    let cancelled = || {
        opts.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    };
    if cancelled() {
        return Err(ConvertError::Interrupted);
    }
    let to_file = dst.extension().is_some_and(|e| e == "safetensors") || dst.is_file();
    // Output groups: tensor indices per file.
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
    } else if inputs.len() > 1 {
        (0..inputs.len())
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
    let index_path =
        (!to_file && groups.len() > 1).then(|| dst.join("model.safetensors.index.json"));
    if !opts.overwrite {
        for f in files.iter().chain(index_path.iter()) {
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
    progress(Progress::Start {
        total_bytes: total,
        tensors: planned.len(),
    });
    let mut weight_map = BTreeMap::new();
    let hashing = opts.verify == Verify::Checksum;
    let mut written: Vec<Vec<Written>> = Vec::new();
    let mut file_meta: Vec<BTreeMap<String, String>> = Vec::new();
    for (g, file) in groups.iter().zip(&files) {
        let specs: Vec<TensorSpec> = g.iter().map(|&i| spec(&planned[i])).collect();
        let names_here: std::collections::HashSet<&str> =
            g.iter().map(|&i| planned[i].name.as_str()).collect();
        let mut fmeta = meta.clone();
        if groups.len() > 1 {
            // An alias belongs to the shard holding the kept tensor.
            fmeta.retain(|k, v| {
                !report.aliases.iter().any(|(a, _)| a == k) || names_here.contains(v.as_str())
            });
        }
        let mut err: Option<ConvertError> = None;
        let mut check_err: Option<ConvertError> = None;
        let mut checked = 0usize;
        let here: RefCell<Vec<Written>> = RefCell::new(Vec::new());
        // Checksum mode: once the last tensor is in the file, and before the
        // file is renamed into place, every tensor is re-read from it and its
        // hash compared (on several threads); a mismatch aborts the write, so
        // nothing unverified appears at the target.
        let mut ranges: Vec<std::ops::Range<u64>> = Vec::new();
        let check_before_rename = hashing && CHECK_BEFORE_RENAME;
        let wopts = WriteOptions::new()
            .with_metadata(fmeta.clone())
            .with_durability(opts.durability);
        let res = write_observed(
            file,
            &specs,
            &wopts,
            |si, w| {
                let p = &planned[g[si]];
                let ck = &cks[p.input];
                // The hash covers exactly the bytes handed to the writer.
                let mut hasher = hashing.then(Xxh3::new);
                let mut len = 0u64;
                let copied = tensor::emit(ck, &p.name, &p.tensor, hasher.as_mut(), &mut |b| {
                    if cancelled() {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::Interrupted,
                            "conversion interrupted",
                        ));
                    }
                    len += b.len() as u64;
                    w.write_all(b)
                });
                let copied = match copied {
                    Err(_) if cancelled() => Err(ConvertError::Interrupted),
                    other => other,
                };
                match copied {
                    Ok(()) => {
                        if let Some(h) = hasher {
                            here.borrow_mut().push(Written {
                                name: p.name.clone(),
                                dtype: p.tensor.dtype,
                                shape: p.tensor.shape.clone(),
                                len,
                                xxh3_128: h.digest128(),
                            });
                        }
                        progress(Progress::Tensor {
                            name: &p.name,
                            bytes: p.tensor.byte_len().unwrap_or(0) as u64,
                        });
                        Ok(())
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        err = Some(e);
                        Err(std::io::Error::other(msg))
                    }
                }
            },
            |_, out, range| {
                if cancelled() {
                    check_err = Some(ConvertError::Interrupted);
                    return Err(std::io::Error::other("conversion interrupted"));
                }
                if !check_before_rename {
                    return Ok(());
                }
                ranges.push(range);
                if ranges.len() < g.len() {
                    return Ok(());
                }
                let here = here.borrow();
                let jobs: Vec<_> = ranges.iter().cloned().zip(here.iter()).collect();
                match check_ranges(file, out, &jobs) {
                    // A signal during the check still stops the rename.
                    Ok(_) if cancelled() => {
                        check_err = Some(ConvertError::Interrupted);
                        Err(std::io::Error::other("conversion interrupted"))
                    }
                    Ok(n) => {
                        checked = n;
                        Ok(())
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        check_err = Some(e);
                        Err(std::io::Error::other(msg))
                    }
                }
            },
        );
        if let Some(e) = err.or(check_err) {
            return Err(e);
        }
        res?;
        report.checked_before_rename += checked;
        let here = here.into_inner();
        written.push(here);
        file_meta.push(fmeta);
        let fname = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for &i in g {
            weight_map.insert(planned[i].name.clone(), fname.clone());
        }
    }
    if let Some(ix) = &index_path {
        if cancelled() {
            return Err(ConvertError::Interrupted);
        }
        let json = index_json(total, &weight_map);
        let mut f = AtomicFile::create_with(ix, opts.durability)?;
        f.write_all(json.as_bytes())
            .map_err(|e| ConvertError::io(ix, e))?;
        f.commit()?;
    }
    match opts.verify {
        Verify::Off => {}
        Verify::Checksum => {
            progress(Progress::Verify);
            // Each tensor's hash was checked against the file before the
            // rename (unix); now the header, as read back from the final
            // path, and elsewhere the hashes too.
            for ((w, m), file) in written.iter().zip(&file_meta).zip(&files) {
                verify_output(file, w, Some(m), !CHECK_BEFORE_RENAME)?;
            }
            report.verified = true;
        }
        Verify::Full => {
            progress(Progress::Verify);
            for (g, file) in groups.iter().zip(&files) {
                verify_against_input(
                    file,
                    g.iter().map(|&i| (&planned[i], &cks[planned[i].input])),
                )?;
            }
            report.verified = true;
        }
    }
    if hashing {
        report.written = written;
    }
    report.outputs = files;
    report.index = index_path;
    report.total_bytes = total;
    Ok(report)
}

/// Size of the reads that hash the output back.
const VERIFY_CHUNK: usize = 8 << 20;

/// Most threads that hash the output back.
const VERIFY_THREADS: usize = 4;

/// [`Verify::Checksum`]: reads `file` back (positioned reads, header
/// validated by the core parser) and checks that it holds exactly the
/// `written` tensors, each with the same dtype, shape, length and XXH3-128
/// of its bytes, and, when given, exactly `metadata`. The input is not read.
pub fn verify_checksums(
    file: &Path,
    written: &[Written],
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<(), ConvertError> {
    verify_output(file, written, metadata, true)
}

/// Re-reads each `(range, written)` of `out` and compares its length and
/// XXH3-128 with what was written, on up to `VERIFY_THREADS` threads, each
/// taking the next unchecked tensor. The error reported is that of the
/// first bad tensor in `jobs` order, whatever the timing. Returns the number
/// of tensors checked.
fn check_ranges(
    file: &Path,
    out: &std::fs::File,
    jobs: &[(std::ops::Range<u64>, &Written)],
) -> Result<usize, ConvertError> {
    let check = |range: &std::ops::Range<u64>,
                 w: &Written,
                 buf: &mut Vec<u8>|
     -> Result<(), ConvertError> {
        let verr = |why: String| ConvertError::Verify {
            path: file.to_owned(),
            name: w.name.clone(),
            why,
        };
        let len = range.end.saturating_sub(range.start);
        if len != w.len {
            return Err(verr(format!("has {len} bytes, {} were written", w.len)));
        }
        let mut h = Xxh3::new();
        let mut pos = range.start;
        while pos < range.end {
            let n = (range.end - pos).min(VERIFY_CHUNK as u64) as usize;
            buf.resize(n, 0);
            read_exact_at(out, buf, pos).map_err(|e| ConvertError::io(file, e))?;
            h.update(buf);
            pos += n as u64;
        }
        let got = h.digest128();
        if got != w.xxh3_128 {
            return Err(verr(format!(
                "bytes differ from those written (XXH3-128 {got:032x}, expected {:032x})",
                w.xxh3_128
            )));
        }
        Ok(())
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, VERIFY_THREADS)
        .min(jobs.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let first_err: std::sync::Mutex<Option<(usize, ConvertError)>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((range, w)) = jobs.get(i) else {
                        break;
                    };
                    if let Err(e) = check(range, w, &mut buf) {
                        if let Ok(mut slot) = first_err.lock() {
                            if slot.as_ref().is_none_or(|(j, _)| i < *j) {
                                *slot = Some((i, e));
                            }
                        }
                    }
                }
            });
        }
    });
    match first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some((_, e)) => Err(e),
        None => Ok(jobs.len()),
    }
}

/// Whether checksum verification re-reads the tensors from the file before
/// it is renamed into place, through the writer's handle (unix, where
/// positioned reads leave the writer's file position alone), or from the
/// final path after the rename (elsewhere).
const CHECK_BEFORE_RENAME: bool = cfg!(unix);

/// [`verify_checksums`], optionally without re-hashing the tensors' bytes
/// (when they were checked before the rename).
fn verify_output(
    file: &Path,
    written: &[Written],
    metadata: Option<&BTreeMap<String, String>>,
    rehash: bool,
) -> Result<(), ConvertError> {
    let out = PreadFile::open(file)?;
    let verr = |name: &str, why: String| ConvertError::Verify {
        path: file.to_owned(),
        name: name.to_owned(),
        why,
    };
    let base = out.data_start() as u64;
    let mut jobs = Vec::with_capacity(written.len());
    for w in written {
        let info = expect_entry(&out, file, &w.name, w.dtype, &w.shape)?;
        let (start, end) = info.data_offsets;
        let len = end.saturating_sub(start);
        if len as u64 != w.len {
            return Err(verr(
                &w.name,
                format!("has {len} bytes, {} were written", w.len),
            ));
        }
        jobs.push((base + start as u64..base + end as u64, w));
    }
    expect_count(&out, file, written.len())?;
    if let Some(m) = metadata {
        let empty = BTreeMap::new();
        if out.metadata().unwrap_or(&empty) != m {
            return Err(verr("*", "metadata differs from what was written".into()));
        }
    }
    if rehash {
        check_ranges(file, out.file(), &jobs)?;
    }
    Ok(())
}

/// [`Verify::Full`]: re-reads `file` and the inputs and compares each
/// tensor's dtype, shape and every byte with the source.
pub fn verify_against_input<'a>(
    file: &Path,
    tensors: impl Iterator<Item = (&'a PlannedTensor, &'a Checkpoint)>,
) -> Result<(), ConvertError> {
    // Positioned reads, not a map: resident memory stays bounded.
    let out = PreadFile::open(file)?;
    let verr = |name: &str, why: String| ConvertError::Verify {
        path: file.to_owned(),
        name: name.to_owned(),
        why,
    };
    let mut count = 0;
    let mut back: Vec<u8> = Vec::new();
    for (p, ck) in tensors {
        count += 1;
        let info = expect_entry(&out, file, &p.name, p.tensor.dtype, &p.tensor.shape)?;
        let (start, end) = info.data_offsets;
        let mut pos = start;
        let mut failure: Option<ConvertError> = None;
        tensor::emit(ck, &p.name, &p.tensor, None, &mut |b| {
            if failure.is_some() {
                return Ok(());
            }
            if pos + b.len() > end {
                failure = Some(verr(&p.name, "is longer in the input".into()));
                return Ok(());
            }
            back.resize(b.len(), 0);
            if let Err(e) = out.read_at(pos, &mut back) {
                failure = Some(e.into());
            } else if back != b {
                failure = Some(verr(
                    &p.name,
                    format!("differs from the input near byte {}", pos - start),
                ));
            }
            pos += b.len();
            Ok(())
        })?;
        if let Some(f) = failure {
            return Err(f);
        }
        if pos != end {
            return Err(verr(
                &p.name,
                format!("has {} bytes, the input {}", end - start, pos - start),
            ));
        }
    }
    expect_count(&out, file, count)
}

/// The output's header entry for `name`, which must exist with this dtype
/// and shape.
fn expect_entry<'h>(
    out: &'h PreadFile,
    file: &Path,
    name: &str,
    dtype: Dtype,
    shape: &[usize],
) -> Result<&'h tensorseal_format::TensorInfo, ConvertError> {
    let verr = |why: String| ConvertError::Verify {
        path: file.to_owned(),
        name: name.to_owned(),
        why,
    };
    let info = out
        .header()
        .get(name)
        .ok_or_else(|| verr("is missing from the output".into()))?;
    if info.dtype != dtype || info.shape != shape {
        return Err(verr(format!(
            "is {} {:?}, expected {} {:?}",
            info.dtype, info.shape, dtype, shape
        )));
    }
    Ok(info)
}

/// The output must hold exactly `expected` tensors.
fn expect_count(out: &PreadFile, file: &Path, expected: usize) -> Result<(), ConvertError> {
    if expected != out.header().len() {
        return Err(ConvertError::Verify {
            path: file.to_owned(),
            name: "*".to_owned(),
            why: format!(
                "file holds {} tensors, expected {expected}",
                out.header().len()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(bytes: &[u8]) -> Written {
        Written {
            name: format!("w{}", bytes.len()),
            dtype: Dtype::U8,
            shape: vec![bytes.len()],
            len: bytes.len() as u64,
            xxh3_128: xxhash_rust::xxh3::xxh3_128(bytes),
        }
    }

    #[test]
    fn check_ranges_counts_matches_and_names_the_first_mismatch_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o");
        let data: Vec<u8> = (0..(20 << 20) + 5)
            .map(|i: u32| ((i * 13) >> 3) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let out = std::fs::File::open(&path).unwrap();
        let n = data.len() as u64;
        let good = [written(&data), written(&data[10..20]), written(&data[..0])];
        let jobs = vec![(0..n, &good[0]), (10..20, &good[1]), (7..7, &good[2])];
        assert_eq!(check_ranges(&path, &out, &jobs).unwrap(), 3);

        // Several bad tensors: always the first in order, named, with both hashes.
        let mut other = data.clone();
        other[(17 << 20) + 1] ^= 1;
        let bad_big = Written {
            name: "big".into(),
            ..written(&other)
        };
        let bad_small = Written {
            name: "small".into(),
            ..written(b"0123456789")
        };
        let jobs = vec![(10..20, &good[1]), (0..n, &bad_big), (100..110, &bad_small)];
        for _ in 0..10 {
            match check_ranges(&path, &out, &jobs).unwrap_err() {
                ConvertError::Verify { name, why, .. } => {
                    assert_eq!(name, "big");
                    assert!(why.contains("XXH3-128"), "{why}");
                }
                e => panic!("{e:?}"),
            }
        }

        // A range of the wrong length.
        let jobs = vec![(0..n - 1, &good[0])];
        assert!(matches!(
            check_ranges(&path, &out, &jobs),
            Err(ConvertError::Verify { .. })
        ));
    }
}
