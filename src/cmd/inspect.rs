//! `tensorseal inspect`: metadata, tensor table and totals of a file, a
//! sharded checkpoint's index, or a directory holding either. The text and
//! the JSON are two renderings of one [`Inspect`] document.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tensorseal_format::index::{open_path, Checkpoint};
use tensorseal_format::{Dtype, PreadFile, ReadTensors};

use super::{bytes, group, plural, write_json, write_stdout, CmdResult, Failure, EXIT_OK};

/// Arguments of `inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// A .safetensors file, a *.safetensors.index.json, or a directory
    /// holding either (model.safetensors first, then
    /// model.safetensors.index.json, as transformers looks for them).
    pub path: PathBuf,
    /// Print one JSON document instead of a table (schema in docs/inspect-json.md).
    #[arg(long)]
    pub json: bool,
    /// A sharding plan (JSON, see README "Tensor- and pipeline-parallel"):
    /// print each rank's tensor count, bytes and read runs instead.
    #[arg(long, value_name = "PLAN.json", requires = "world_size")]
    pub plan: Option<PathBuf>,
    /// Number of ranks, with --plan.
    #[arg(long, value_name = "N", requires = "plan")]
    pub world_size: Option<usize>,
}

/// Everything `inspect` shows (docs/inspect-json.md).
#[derive(Serialize)]
struct Inspect {
    schema: &'static str,
    /// The PATH argument as given.
    path: String,
    /// The file PATH resolved to: itself, or the checkpoint file in a directory.
    resolved: String,
    /// `safetensors` or `sharded`.
    format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_len: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    header_len: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_start: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index_metadata: Option<serde_json::Map<String, serde_json::Value>>,
    metadata: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shards: Option<Vec<ShardDoc>>,
    tensors: Vec<TensorDoc>,
    totals: Totals,
    /// Quantized layers (docs/quant.md), when any is recognised.
    #[serde(skip_serializing_if = "Option::is_none")]
    quantization: Option<serde_json::Value>,
    /// Logical sparse tensors (docs/sparse.md), when the file has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    sparse: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct ShardDoc {
    file: String,
    file_len: u64,
    tensors: usize,
    data_len: usize,
    metadata: Option<BTreeMap<String, String>>,
}

#[derive(Serialize)]
struct TensorDoc {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
}

impl TensorDoc {
    fn bytes(&self) -> u64 {
        self.data_offsets[1].saturating_sub(self.data_offsets[0]) as u64
    }
    fn parameters(&self) -> u128 {
        self.shape.iter().map(|&d| d as u128).product()
    }
}

#[derive(Serialize, Default)]
struct Count {
    tensors: u64,
    parameters: u64,
    bytes: u64,
}

#[derive(Serialize, Default)]
struct Totals {
    tensors: u64,
    parameters: u64,
    bytes: u64,
    /// Per dtype, in dtype order (by element size, then name).
    by_dtype: serde_json::Map<String, serde_json::Value>,
}

/// The checkpoint at `path`. A directory is resolved as `transformers`
/// does: `model.safetensors`, then `model.safetensors.index.json`; only when
/// neither exists, the single `.safetensors` file or index it holds.
fn resolve(path: &Path) -> Result<Checkpoint, Failure> {
    if path.is_dir() {
        for name in ["model.safetensors", "model.safetensors.index.json"] {
            let p = path.join(name);
            if std::fs::symlink_metadata(&p).is_ok() {
                return Ok(open_path(&p)?);
            }
        }
    }
    Ok(open_path(path)?)
}

fn build(path: &Path) -> Result<Inspect, Failure> {
    let mut doc = Inspect {
        schema: "tensorseal-inspect/1",
        path: path.display().to_string(),
        resolved: String::new(),
        format: "safetensors",
        file_len: None,
        header_len: None,
        data_start: None,
        index: None,
        index_metadata: None,
        metadata: None,
        shards: None,
        tensors: Vec::new(),
        totals: Totals::default(),
        quantization: None,
        sparse: None,
    };
    // (shard file name, header) in order.
    let headers = match resolve(path)? {
        Checkpoint::Single(p) => {
            let f = PreadFile::open(&p).map_err(|e| e.in_file(&p))?;
            doc.resolved = p.display().to_string();
            doc.file_len = Some(f.file_len());
            doc.header_len = Some((f.data_start() - 8) as u64);
            doc.data_start = Some(f.data_start() as u64);
            vec![(None, f.header().clone())]
        }
        Checkpoint::Sharded(index) => {
            let shards = index.validate()?;
            doc.format = "sharded";
            doc.resolved = index.path().display().to_string();
            doc.index = Some(doc.resolved.clone());
            doc.index_metadata = Some(index.metadata().clone());
            doc.shards = Some(
                shards
                    .iter()
                    .map(|s| ShardDoc {
                        file: s.file.clone(),
                        file_len: s.reader.file_len(),
                        tensors: s.reader.header().len(),
                        data_len: s.reader.header().data_len(),
                        metadata: s.reader.header().metadata().cloned(),
                    })
                    .collect(),
            );
            shards
                .into_iter()
                .map(|s| (Some(s.file), s.reader.into_header()))
                .collect()
        }
    };
    // Metadata: the file's, or for shards the union (first shard wins).
    for (_, h) in &headers {
        if let Some(m) = h.metadata() {
            let acc = doc.metadata.get_or_insert_with(BTreeMap::new);
            for (k, v) in m {
                acc.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    let mut by_dtype: BTreeMap<Dtype, Count> = BTreeMap::new();
    for (file, h) in &headers {
        for (name, t) in h.tensors() {
            let row = TensorDoc {
                name: name.clone(),
                dtype: t.dtype.as_str(),
                shape: t.shape.clone(),
                data_offsets: [t.data_offsets.0, t.data_offsets.1],
                file: file.clone(),
            };
            let c = by_dtype.entry(t.dtype).or_default();
            c.tensors += 1;
            c.parameters = c.parameters.saturating_add(row.parameters() as u64);
            c.bytes += row.bytes();
            doc.totals.tensors += 1;
            doc.totals.parameters = doc
                .totals
                .parameters
                .saturating_add(row.parameters() as u64);
            doc.totals.bytes += row.bytes();
            doc.tensors.push(row);
        }
    }
    doc.totals.by_dtype = by_dtype
        .into_iter()
        .map(|(d, c)| {
            let v = serde_json::to_value(c).unwrap_or_default();
            (d.as_str().to_owned(), v)
        })
        .collect();
    Ok(doc)
}

pub fn run(args: Args) -> CmdResult {
    if let (Some(plan), Some(world)) = (&args.plan, args.world_size) {
        return super::parallel::inspect(&args.path, plan, world, args.json);
    }
    let mut doc = build(&args.path)?;
    // Quantized layers and sparse tensors; a problem there (a bad config)
    // is a warning, not a failed inspect.
    let single = (doc.index.is_none()).then(|| PathBuf::from(&doc.resolved));
    let source = doc
        .index
        .clone()
        .map_or_else(|| PathBuf::from(&doc.resolved), PathBuf::from);
    let (quant, sparse, extra) = super::quant::inspect_sections(&source, single.as_deref())
        .unwrap_or_else(|f| {
            eprintln!("warning: {:#}", f.error);
            (
                serde_json::Value::Null,
                serde_json::Value::Null,
                String::new(),
            )
        });
    doc.quantization = (!quant.is_null()).then_some(quant);
    doc.sparse = (!sparse.is_null()).then_some(sparse);
    if args.json {
        write_json(doc.schema, &doc)?;
    } else {
        write_stdout(&(text(&doc) + &extra))?;
    }
    Ok(EXIT_OK)
}

fn shape_str(shape: &[usize]) -> String {
    let inner: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", inner.join(", "))
}

/// The table rendering of `doc`.
fn text(doc: &Inspect) -> String {
    let mut o = String::new();
    if let Some(index) = &doc.index {
        let _ = writeln!(o, "index: {index}");
        if let Some(ts) = doc
            .index_metadata
            .as_ref()
            .and_then(|m| m.get("total_size"))
            .and_then(serde_json::Value::as_u64)
        {
            let _ = writeln!(o, "total_size (from index): {}", bytes(ts));
        }
    } else {
        let _ = writeln!(o, "file: {}", doc.resolved);
        let _ = writeln!(
            o,
            "size: {}; header {}; data starts at {}",
            bytes(doc.file_len.unwrap_or(0)),
            bytes(doc.header_len.unwrap_or(0)),
            group(doc.data_start.unwrap_or(0) as u128)
        );
    }
    match &doc.metadata {
        None => o.push_str("metadata: none\n"),
        Some(m) if m.is_empty() => o.push_str("metadata: {}\n"),
        Some(m) => {
            o.push_str("metadata:\n");
            for (k, v) in m {
                let _ = writeln!(o, "  {}: {}", k.escape_debug(), v.escape_debug());
            }
        }
    }
    o.push('\n');
    let sharded = doc.shards.is_some();
    let mut table: Vec<Vec<String>> = Vec::with_capacity(doc.tensors.len() + 1);
    let mut head = vec!["name", "dtype", "shape", "bytes", "offsets"];
    if sharded {
        head.push("file");
    }
    table.push(head.into_iter().map(String::from).collect());
    for r in &doc.tensors {
        let mut row = vec![
            r.name.escape_debug().to_string(),
            r.dtype.to_owned(),
            shape_str(&r.shape),
            group(r.bytes() as u128),
            format!("[{}, {})", r.data_offsets[0], r.data_offsets[1]),
        ];
        if let Some(f) = &r.file {
            row.push(f.clone());
        }
        table.push(row);
    }
    let ncol = table.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..ncol)
        .map(|c| {
            table
                .iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &table {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths.get(c).copied().unwrap_or(0) - cell.chars().count();
            if c == 3 {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if c + 1 < ncol {
                    line.push_str(&" ".repeat(pad));
                }
            }
            if c + 1 < ncol {
                line.push_str("  ");
            }
        }
        o.push_str(line.trim_end());
        o.push('\n');
    }
    o.push('\n');
    let t = &doc.totals;
    let _ = writeln!(
        o,
        "total: {}, {}, {}",
        plural(t.tensors, "tensor"),
        plural(t.parameters, "parameter"),
        bytes(t.bytes)
    );
    for (d, c) in &t.by_dtype {
        let get = |k: &str| c.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let _ = writeln!(
            o,
            "  {:<12} {}, {}, {}",
            d,
            plural(get("tensors"), "tensor"),
            plural(get("parameters"), "parameter"),
            bytes(get("bytes"))
        );
    }
    o
}
