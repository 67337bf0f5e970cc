//! Inputs, the first step of the pipeline: which checkpoint files a source
//! path names (a file, a `pytorch_model.bin.index.json` and its shards, or a
//! model directory), and, once the tensors are planned, whether the index
//! describes the shards exactly. Indexes are read by the format crate's
//! [`ShardedIndex`], the same strict reader as for safetensors indexes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tensorseal_format::index::ShardedIndex;

use crate::error::ConvertError;

/// Name of the index of a sharded torch checkpoint.
const TORCH_INDEX: &str = "pytorch_model.bin.index.json";

/// The checkpoint files of `src`: the file itself, or in a directory
/// `pytorch_model.bin.index.json`'s shards, else `pytorch_model.bin`, else a
/// single `*.bin`/`*.pt`/`*.pth`/`*.ckpt`/`*.npz`.
pub fn resolve_inputs(src: &Path) -> Result<Vec<PathBuf>, ConvertError> {
    let meta = std::fs::metadata(src).map_err(|e| ConvertError::io(src, e))?;
    if !meta.is_dir() {
        if is_index_name(src) {
            return shards_of_index(src);
        }
        return Ok(vec![src.to_owned()]);
    }
    let index = src.join(TORCH_INDEX);
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

fn is_index_name(p: &Path) -> bool {
    p.to_string_lossy().ends_with(".index.json")
}

/// The shards an index names, distinct and sorted by file name.
fn shards_of_index(index: &Path) -> Result<Vec<PathBuf>, ConvertError> {
    let ix = ShardedIndex::open(index)?;
    let files = ix.shard_files();
    if files.is_empty() {
        return Err(ConvertError::format(index, "index names no shards"));
    }
    Ok(files.into_iter().map(|f| ix.dir().join(f)).collect())
}

/// The `pytorch_model.bin.index.json` that [`resolve_inputs`] takes the
/// shards of, if it does.
pub(crate) fn index_of(src: &Path) -> Option<PathBuf> {
    if src.is_dir() {
        let ix = src.join(TORCH_INDEX);
        return ix.is_file().then_some(ix);
    }
    is_index_name(src).then(|| src.to_owned())
}

/// The index and the shards must agree exactly. transformers loads every
/// tensor of every shard the index names, and takes the weight_map's keys as
/// the checkpoint's keys: a listed tensor that its shard does not hold would
/// silently be left out (transformers leaves that weight as initialised), and
/// a tensor a shard holds that the index does not list (or lists under
/// another shard) makes the index a false description of the checkpoint.
/// Both are refused, naming the tensor and the shards. `tensors` are the
/// planned `(name, input)` pairs. Names are the ones
/// convert writes (aliases of one storage included), so `--select` or
/// `--flatten` that rename tensors make the index disagree too.
pub(crate) fn check_index(
    index: &Path,
    inputs: &[PathBuf],
    tensors: &[(&str, usize)],
    aliases: &[(String, String)],
) -> Result<(), ConvertError> {
    let ix = ShardedIndex::open(index)?;
    let mut provided: HashMap<&str, usize> = HashMap::new();
    for &(name, input) in tensors {
        provided.insert(name, input);
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
    for (name, file) in ix.weight_map() {
        let want = ix.dir().join(file);
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
        .filter(|(n, _)| ix.shard_of(n).is_none())
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
