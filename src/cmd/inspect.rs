//! `tensorseal inspect`: metadata, tensor table and totals of a file, a
//! sharded checkpoint's index, or a directory holding either.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};
use tensorseal_format::index::{open_path, Checkpoint};
use tensorseal_format::{Dtype, Header, PreadFile};

use super::{format_failure, write_stdout, CmdResult, EXIT_OK};

/// Arguments of `inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// A .safetensors file, a *.safetensors.index.json, or a directory holding either.
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

struct Row<'a> {
    name: &'a str,
    dtype: Dtype,
    shape: &'a [usize],
    offsets: (usize, usize),
    file: Option<&'a str>,
}

#[derive(Default)]
struct Totals {
    tensors: u64,
    parameters: u128,
    bytes: u64,
}

impl Totals {
    fn add(&mut self, r: &Row) {
        self.tensors += 1;
        self.parameters += r.shape.iter().map(|&d| d as u128).product::<u128>();
        self.bytes += (r.offsets.1 - r.offsets.0) as u64;
    }
    fn json(&self) -> Value {
        json!({"tensors": self.tensors, "parameters": self.parameters as u64, "bytes": self.bytes})
    }
}

pub fn run(args: Args) -> CmdResult {
    if let (Some(plan), Some(world)) = (&args.plan, args.world_size) {
        return super::parallel::inspect(&args.path, plan, world, args.json);
    }
    let path = args.path.display().to_string();
    let checkpoint = open_path(&args.path).map_err(format_failure)?;
    let mut doc = serde_json::Map::new();
    doc.insert("path".into(), path.clone().into());
    let files: Vec<(Option<String>, Header, Option<u64>, usize)> = match checkpoint {
        Checkpoint::Single(p) => {
            let f = PreadFile::open(&p).map_err(|e| format_failure(e.in_file(&p)))?;
            doc.insert("format".into(), "safetensors".into());
            doc.insert("file_len".into(), f.file_len().into());
            doc.insert("header_len".into(), (f.data_start() - 8).into());
            doc.insert("data_start".into(), f.data_start().into());
            vec![(None, f.header().clone(), Some(f.file_len()), f.data_start())]
        }
        Checkpoint::Sharded(index) => {
            let shards = index.validate().map_err(format_failure)?;
            doc.insert("format".into(), "sharded".into());
            doc.insert("index".into(), index.path().display().to_string().into());
            doc.insert(
                "index_metadata".into(),
                Value::Object(index.metadata().clone()),
            );
            shards
                .into_iter()
                .map(|s| (Some(s.file), s.header, Some(s.file_len), s.data_start))
                .collect()
        }
    };

    // Metadata: the file's, or for shards the union (first shard wins).
    let mut metadata: Option<BTreeMap<String, String>> = None;
    for (_, h, _, _) in &files {
        if let Some(m) = h.metadata() {
            let acc = metadata.get_or_insert_with(BTreeMap::new);
            for (k, v) in m {
                acc.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    let rows: Vec<Row> = files
        .iter()
        .flat_map(|(file, h, _, _)| {
            h.tensors().iter().map(move |(n, t)| Row {
                name: n,
                dtype: t.dtype,
                shape: &t.shape,
                offsets: t.data_offsets,
                file: file.as_deref(),
            })
        })
        .collect();
    let mut total = Totals::default();
    let mut by_dtype: BTreeMap<Dtype, Totals> = BTreeMap::new();
    for r in &rows {
        total.add(r);
        by_dtype.entry(r.dtype).or_default().add(r);
    }

    let out = if args.json {
        doc.insert(
            "metadata".into(),
            metadata.as_ref().map_or(Value::Null, |m| json!(m)),
        );
        if files.first().is_some_and(|f| f.0.is_some()) {
            doc.insert(
                "shards".into(),
                files
                    .iter()
                    .map(|(f, h, len, _)| {
                        json!({
                            "file": f,
                            "file_len": len,
                            "tensors": h.len(),
                            "data_len": h.data_len(),
                            "metadata": h.metadata(),
                        })
                    })
                    .collect(),
            );
        }
        doc.insert(
            "tensors".into(),
            rows.iter()
                .map(|r| {
                    let mut t = json!({
                        "name": r.name,
                        "dtype": r.dtype.as_str(),
                        "shape": r.shape,
                        "data_offsets": [r.offsets.0, r.offsets.1],
                    });
                    if let (Some(f), Some(o)) = (r.file, t.as_object_mut()) {
                        o.insert("file".into(), f.into());
                    }
                    t
                })
                .collect(),
        );
        let mut totals = total.json();
        let per: serde_json::Map<String, Value> = by_dtype
            .iter()
            .map(|(d, t)| (d.as_str().to_owned(), t.json()))
            .collect();
        if let Some(o) = totals.as_object_mut() {
            o.insert("by_dtype".into(), Value::Object(per));
        }
        doc.insert("totals".into(), totals);
        let mut s = serde_json::to_string_pretty(&Value::Object(doc)).unwrap_or_default();
        s.push('\n');
        s
    } else {
        human(&doc, metadata.as_ref(), &rows, &total, &by_dtype)
    };
    write_stdout(&out)?;
    Ok(EXIT_OK)
}

fn group(n: u128) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn shape_str(shape: &[usize]) -> String {
    let inner: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", inner.join(", "))
}

fn human(
    doc: &serde_json::Map<String, Value>,
    metadata: Option<&BTreeMap<String, String>>,
    rows: &[Row],
    total: &Totals,
    by_dtype: &BTreeMap<Dtype, Totals>,
) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let field = |k: &str| doc.get(k).and_then(Value::as_u64).unwrap_or(0) as u128;
    let path = doc.get("path").and_then(Value::as_str).unwrap_or("");
    if doc.get("format").and_then(Value::as_str) == Some("sharded") {
        let index = doc.get("index").and_then(Value::as_str).unwrap_or("");
        let _ = writeln!(o, "index: {index}");
        if let Some(ts) = doc
            .get("index_metadata")
            .and_then(|m| m.get("total_size"))
            .and_then(Value::as_u64)
        {
            let _ = writeln!(o, "total_size (from index): {}", group(ts as u128));
        }
    } else {
        let _ = writeln!(
            o,
            "file: {path} ({} bytes; header {} bytes; data starts at {})",
            group(field("file_len")),
            group(field("header_len")),
            group(field("data_start"))
        );
    }
    match metadata {
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
    let sharded = rows.iter().any(|r| r.file.is_some());
    let mut table: Vec<Vec<String>> = Vec::with_capacity(rows.len() + 1);
    let mut head = vec!["name", "dtype", "shape", "bytes", "offsets"];
    if sharded {
        head.push("file");
    }
    table.push(head.into_iter().map(String::from).collect());
    for r in rows {
        let mut row = vec![
            r.name.escape_debug().to_string(),
            r.dtype.as_str().to_owned(),
            shape_str(r.shape),
            group((r.offsets.1 - r.offsets.0) as u128),
            format!("[{}, {})", r.offsets.0, r.offsets.1),
        ];
        if let Some(f) = r.file {
            row.push(f.to_owned());
        }
        table.push(row);
    }
    let ncol = table[0].len();
    let widths: Vec<usize> = (0..ncol)
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &table {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
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
    let _ = writeln!(
        o,
        "total: {} {}, {} parameters, {} bytes",
        group(total.tensors as u128),
        if total.tensors == 1 {
            "tensor"
        } else {
            "tensors"
        },
        group(total.parameters),
        group(total.bytes as u128)
    );
    for (d, t) in by_dtype {
        let _ = writeln!(
            o,
            "  {:<12} {} {}, {} parameters, {} bytes",
            d.as_str(),
            group(t.tensors as u128),
            if t.tensors == 1 { "tensor" } else { "tensors" },
            group(t.parameters),
            group(t.bytes as u128)
        );
    }
    o
}
