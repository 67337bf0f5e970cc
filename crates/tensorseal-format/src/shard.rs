//! Splitting a file into Hugging Face-style shards and merging them back,
//! streaming with a fixed-size buffer (memory stays bounded whatever the
//! checkpoint size).
//!
//! Shard assignment follows `huggingface_hub`'s greedy rule, tensors in file
//! order: a tensor larger than the limit gets a shard of its own; otherwise a
//! new shard starts when the tensor would push the current one past the
//! limit. Shards are named `model-00001-of-0000N.safetensors`; the index
//! `model.safetensors.index.json` holds `metadata.total_size` (the sum of the
//! tensors' byte sizes) and the `weight_map`, written like `transformers`
//! does (2-space indent, sorted keys, ASCII-escaped, trailing newline). As in
//! `save_pretrained`, a checkpoint that fits one shard is written as
//! `model.safetensors` without an index.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::index::{open_path, Checkpoint};
use crate::read::{read_exact_at, PreadFile, ReadTensors};
use crate::write::{AtomicFile, Durability, FileWriter, TensorSpec, WriteOptions};
use crate::FormatError;

/// Size of the copy buffer.
const COPY_BUF: usize = 8 << 20;

/// Parses a size such as `5GB`, `500MB`, `10GiB`, `1.5GB` or `1000000`
/// (bytes), as Hugging Face does: KB/MB/GB/TB are powers of 10, KiB/MiB/GiB/TiB
/// powers of 2; case-insensitive; a lowercase `b` suffix alone (`5Gb`) means
/// bits, as in `transformers`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit_trim = unit.trim();
    let mult: f64 = match unit_trim.to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "KB" | "K" => 1e3,
        "MB" | "M" => 1e6,
        "GB" | "G" => 1e9,
        "TB" | "T" => 1e12,
        "KIB" => 1024.0,
        "MIB" => 1024.0 * 1024.0,
        "GIB" => 1024.0 * 1024.0 * 1024.0,
        "TIB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("unknown size unit {unit_trim:?} in {s:?}")),
    };
    let bits = unit_trim.len() == 2 && unit_trim.ends_with('b') && !unit_trim.starts_with('b');
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (examples: 5GB, 500MB, 10GiB)"))?;
    let mut v = n * mult;
    if bits {
        v /= 8.0;
    }
    if !v.is_finite() || v < 1.0 || v > u64::MAX as f64 {
        return Err(format!("size {s:?} is out of range"));
    }
    Ok(v as u64)
}

/// Assigns tensors (given by byte size, in order) to shards with the
/// Hugging Face greedy rule; returns the tensor indices of each shard.
pub fn plan_shards(sizes: &[u64], max_shard_size: u64) -> Vec<Vec<usize>> {
    let mut shards = Vec::new();
    let mut current = Vec::new();
    let mut current_size = 0u64;
    for (i, &size) in sizes.iter().enumerate() {
        if size > max_shard_size {
            shards.push(vec![i]);
            continue;
        }
        if current_size + size > max_shard_size && !current.is_empty() {
            shards.push(std::mem::take(&mut current));
            current_size = 0;
        }
        current.push(i);
        current_size += size;
    }
    if !current.is_empty() {
        shards.push(current);
    }
    shards
}

/// Name of shard `i` (0-based) of `n`.
pub fn shard_name(i: usize, n: usize) -> String {
    format!("model-{:05}-of-{n:05}.safetensors", i + 1)
}

/// One shard file [`split`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenShard {
    /// Its path.
    pub path: PathBuf,
    /// How many tensors it holds.
    pub tensors: usize,
    /// Bytes of tensor data in it.
    pub bytes: u64,
}

/// What [`split`] wrote.
#[derive(Debug, Clone)]
pub struct SplitReport {
    /// Shard files written.
    pub shards: Vec<WrittenShard>,
    /// The index file, if more than one shard was written.
    pub index: Option<PathBuf>,
    /// Sum of the tensors' byte sizes.
    pub total_size: u64,
    /// Files in the output directory that look like shards of another split
    /// (`model-NNNNN-of-MMMMM.safetensors` not written by this one). They are
    /// left alone; callers should warn.
    pub stale: Vec<PathBuf>,
}

/// Whether `name` looks like `model-00001-of-00002.safetensors`, the name
/// [`split`] gives a shard.
pub fn is_shard_name(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix("model-")
        .and_then(|r| r.strip_suffix(".safetensors"))
    else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() == 14
        && b[..5].iter().all(u8::is_ascii_digit)
        && &b[5..9] == b"-of-"
        && b[9..].iter().all(u8::is_ascii_digit)
}

/// Copies `len` bytes at `offset` of `src` into `dst` with a fixed buffer,
/// calling `on_chunk(bytes)` after each chunk.
pub fn copy_range(
    src: &File,
    offset: u64,
    len: u64,
    dst: &mut dyn Write,
    buf: &mut [u8],
    on_chunk: &mut dyn FnMut(u64),
) -> std::io::Result<()> {
    if buf.is_empty() && len > 0 {
        return Err(std::io::Error::other("empty copy buffer"));
    }
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        let chunk = &mut buf[..n];
        read_exact_at(src, chunk, offset + done)?;
        dst.write_all(chunk)?;
        done += n as u64;
        on_chunk(n as u64);
    }
    Ok(())
}

/// A progress callback: `(bytes copied so far, total bytes)`.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Splits `input` into shards of at most `max_shard_size` bytes of tensor
/// data (a larger tensor gets its own shard) in `outdir`, streaming.
///
/// Each shard keeps the input's `__metadata__`. Files are written atomically;
/// the index is written last.
pub fn split(
    input: impl AsRef<Path>,
    outdir: impl AsRef<Path>,
    max_shard_size: u64,
) -> Result<SplitReport, FormatError> {
    split_with_progress(
        input,
        outdir,
        max_shard_size,
        Durability::Sync,
        &mut |_, _| {},
    )
}

/// [`split`] with a chosen [`Durability`] for every file written,
/// reporting progress in tensor bytes copied.
pub fn split_with_progress(
    input: impl AsRef<Path>,
    outdir: impl AsRef<Path>,
    max_shard_size: u64,
    durability: Durability,
    progress: Progress<'_>,
) -> Result<SplitReport, FormatError> {
    let input = input.as_ref();
    let outdir = outdir.as_ref();
    let reader = PreadFile::open(input)?;
    let (src, header, data_start) = (reader.file(), reader.header(), reader.data_start());
    std::fs::create_dir_all(outdir).map_err(|e| FormatError::io(outdir, e))?;
    let tensors = header.tensors();
    let sizes: Vec<u64> = tensors.iter().map(|(_, t)| t.byte_len() as u64).collect();
    let total_size: u64 = sizes.iter().sum();
    let mut plan = plan_shards(&sizes, max_shard_size.max(1));
    if plan.is_empty() {
        // No tensors: one empty shard, like save_pretrained.
        plan.push(Vec::new());
    }
    let n = plan.len();
    let mut buf = vec![0u8; COPY_BUF];
    let mut report = SplitReport {
        shards: Vec::with_capacity(n),
        index: None,
        total_size,
        stale: Vec::new(),
    };
    let mut weight_map = BTreeMap::new();
    let mut copied = 0u64;
    for (si, members) in plan.iter().enumerate() {
        let name = if n == 1 {
            "model.safetensors".to_owned()
        } else {
            shard_name(si, n)
        };
        let path = outdir.join(&name);
        let specs: Vec<TensorSpec> = members
            .iter()
            .map(|&i| {
                let (tn, info) = &tensors[i];
                TensorSpec {
                    name: tn.clone(),
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                }
            })
            .collect();
        let opts = WriteOptions::new()
            .with_metadata_opt(header.metadata().cloned())
            .with_durability(durability);
        FileWriter::create(&path, &specs, &opts)?.fill_and_commit(|j, w| {
            let info = &tensors[members[j]].1;
            copy_range(
                src,
                (data_start + info.data_offsets.0) as u64,
                info.byte_len() as u64,
                w,
                &mut buf,
                &mut |n| {
                    copied += n;
                    progress(copied, total_size);
                },
            )
        })?;
        let bytes: u64 = members.iter().map(|&i| sizes[i]).sum();
        for &i in members {
            weight_map.insert(tensors[i].0.clone(), name.clone());
        }
        report.shards.push(WrittenShard {
            path,
            tensors: members.len(),
            bytes,
        });
    }
    if n > 1 {
        let index_path = outdir.join("model.safetensors.index.json");
        let text = index_json(total_size, &weight_map);
        let mut f = AtomicFile::create_with(&index_path, durability)?;
        f.write_all(text.as_bytes())
            .map_err(|e| FormatError::io(&index_path, e))?;
        f.commit()?;
        report.index = Some(index_path);
    }
    if let Ok(entries) = std::fs::read_dir(outdir) {
        let written: Vec<&PathBuf> = report.shards.iter().map(|s| &s.path).collect();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = outdir.join(&name);
            if is_shard_name(&name) && !written.contains(&&path) {
                report.stale.push(path);
            }
        }
        report.stale.sort();
    }
    Ok(report)
}

/// The index JSON as `transformers` writes it.
pub fn index_json(total_size: u64, weight_map: &BTreeMap<String, String>) -> String {
    let mut meta = serde_json::Map::new();
    meta.insert("total_size".into(), total_size.into());
    let mut wm = serde_json::Map::new();
    for (k, v) in weight_map {
        wm.insert(k.clone(), v.clone().into());
    }
    let mut top = serde_json::Map::new();
    top.insert("metadata".into(), meta.into());
    top.insert("weight_map".into(), wm.into());
    let pretty = serde_json::to_string_pretty(&serde_json::Value::Object(top)).unwrap_or_default();
    let mut out = String::with_capacity(pretty.len() + 1);
    for c in pretty.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out.push('\n');
    out
}

/// What [`merge`] wrote.
#[derive(Debug, Clone)]
pub struct MergeReport {
    /// Number of shards read.
    pub shards: usize,
    /// Number of tensors written.
    pub tensors: usize,
    /// Bytes of tensor data written.
    pub data_bytes: u64,
}

/// Merges a sharded checkpoint (index file or directory) into one file,
/// streaming. The output's `__metadata__` is the union of the shards'
/// (the first shard, by file name, wins on conflicting values).
pub fn merge(
    index_or_dir: impl AsRef<Path>,
    out: impl AsRef<Path>,
) -> Result<MergeReport, FormatError> {
    merge_with_progress(index_or_dir, out, Durability::Sync, &mut |_, _| {})
}

/// [`merge`] with a chosen [`Durability`], reporting progress in tensor
/// bytes copied.
pub fn merge_with_progress(
    index_or_dir: impl AsRef<Path>,
    out: impl AsRef<Path>,
    durability: Durability,
    progress: Progress<'_>,
) -> Result<MergeReport, FormatError> {
    let out = out.as_ref();
    let shards = match open_path(index_or_dir.as_ref())? {
        Checkpoint::Sharded(index) => index.validate()?,
        Checkpoint::Single(path) => {
            let reader = PreadFile::open(&path).map_err(|e| e.in_file(&path))?;
            vec![crate::index::Shard {
                file: path.display().to_string(),
                reader,
            }]
        }
    };
    let mut metadata: Option<BTreeMap<String, String>> = None;
    let mut specs = Vec::new();
    let mut sources = Vec::new();
    for (si, shard) in shards.iter().enumerate() {
        let r = &shard.reader;
        if let Some(m) = r.metadata() {
            let acc = metadata.get_or_insert_with(BTreeMap::new);
            for (k, v) in m {
                acc.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        for (name, info) in r.header().tensors() {
            specs.push(TensorSpec {
                name: name.clone(),
                dtype: info.dtype,
                shape: info.shape.clone(),
            });
            sources.push((
                si,
                (r.data_start() + info.data_offsets.0) as u64,
                info.byte_len() as u64,
            ));
        }
    }
    let mut buf = vec![0u8; COPY_BUF];
    let total: u64 = sources.iter().map(|s| s.2).sum();
    let mut copied = 0u64;
    let opts = WriteOptions::new()
        .with_metadata_opt(metadata)
        .with_durability(durability);
    FileWriter::create(out, &specs, &opts)?.fill_and_commit(|i, w| {
        let (si, off, len) = sources[i];
        copy_range(shards[si].reader.file(), off, len, w, &mut buf, &mut |n| {
            copied += n;
            progress(copied, total);
        })
    })?;
    Ok(MergeReport {
        shards: shards.len(),
        tensors: specs.len(),
        data_bytes: sources.iter().map(|s| s.2).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("5GB"), Ok(5_000_000_000));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("1.5KB"), Ok(1500));
        assert_eq!(parse_size("8Kb"), Ok(1000));
        assert!(parse_size("5XB").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn shard_names() {
        assert!(is_shard_name("model-00001-of-00002.safetensors"));
        assert!(is_shard_name(&shard_name(41, 100)));
        assert!(!is_shard_name("model.safetensors"));
        assert!(!is_shard_name("model-1-of-2.safetensors"));
    }

    #[test]
    fn greedy() {
        assert_eq!(plan_shards(&[4, 4, 4], 8), vec![vec![0, 1], vec![2]]);
        // Oversized tensors get their own shard, emitted before the current one.
        assert_eq!(
            plan_shards(&[4, 20, 4, 1], 8),
            vec![vec![1], vec![0, 2], vec![3]]
        );
        assert_eq!(plan_shards(&[0, 0], 1), vec![vec![0, 1]]);
        assert!(plan_shards(&[], 1).is_empty());
    }
}
