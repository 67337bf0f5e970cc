//! A small test and debugging helper over the library, used by the Python
//! interop tests (tests/python/format). Not part of the `tensorseal` CLI.
//!
//! ```text
//! format_tool dump FILE [memory|mmap|pread]       tensors with hex data, as JSON
//! format_tool slice FILE NAME SPEC [reader]       one slice as JSON {shape, hex}
//!     SPEC: comma-separated numpy-style items: `1`, `-1`, `1:3`, `::-2`, `...`
//! format_tool write SPEC.json OUT                 write a file from JSON
//!     {"metadata": {..} | null, "tensors": [{"name","dtype","shape","hex"}]}
//! ```
//! On a format error: `kind: message` on stderr, exit code 1.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde_json::{json, Value};
use tensorseal_format::{
    serialize_to_file, Dtype, FormatError, MmapFile, OwnedTensor, PreadFile, ReadTensors,
    SafeTensors, SliceArg, WriteOptions,
};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("odd hex length".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

fn parse_spec(spec: &str) -> Result<Vec<SliceArg>, String> {
    if spec.trim().is_empty() {
        return Ok(Vec::new());
    }
    spec.split(',')
        .map(|item| {
            let item = item.trim();
            if item == "..." {
                return Ok(SliceArg::Ellipsis);
            }
            if !item.contains(':') {
                return item
                    .parse()
                    .map(SliceArg::Index)
                    .map_err(|e| format!("{item}: {e}"));
            }
            let parts: Vec<&str> = item.split(':').collect();
            let num = |s: &str| -> Result<Option<i64>, String> {
                if s.is_empty() {
                    Ok(None)
                } else {
                    s.parse().map(Some).map_err(|e| format!("{s}: {e}"))
                }
            };
            Ok(SliceArg::Range {
                start: num(parts[0])?,
                stop: num(parts.get(1).copied().unwrap_or(""))?,
                step: num(parts.get(2).copied().unwrap_or(""))?.unwrap_or(1),
            })
        })
        .collect()
}

enum Reader {
    Memory(Vec<u8>),
    Mmap(MmapFile),
    Pread(PreadFile),
}

fn open(path: &str, reader: &str) -> Result<Reader, String> {
    let fe = |e: FormatError| format!("{}: {e}", e.kind());
    Ok(match reader {
        "memory" => {
            let bytes = std::fs::read(path).map_err(|e| format!("io: {e}"))?;
            SafeTensors::deserialize(&bytes).map_err(fe)?;
            Reader::Memory(bytes)
        }
        "mmap" => Reader::Mmap(MmapFile::open(path).map_err(fe)?),
        "pread" => Reader::Pread(PreadFile::open(path).map_err(fe)?),
        other => return Err(format!("usage: unknown reader {other}")),
    })
}

fn with_reader<T>(
    r: &Reader,
    f: impl FnOnce(&dyn ReadTensors) -> Result<T, FormatError>,
) -> Result<T, String> {
    let fe = |e: FormatError| format!("{}: {e}", e.kind());
    match r {
        Reader::Memory(bytes) => {
            let st = SafeTensors::deserialize(bytes).map_err(fe)?;
            f(&st).map_err(fe)
        }
        Reader::Mmap(m) => f(m).map_err(fe),
        Reader::Pread(p) => f(p).map_err(fe),
    }
}

fn run(args: &[String]) -> Result<String, String> {
    let arg = |i: usize| {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| "usage: see the module documentation".to_string())
    };
    match arg(0)? {
        "dump" => {
            let r = open(arg(1)?, args.get(2).map_or("mmap", String::as_str))?;
            with_reader(&r, |rt| {
                let h = rt.header();
                let mut tensors = Vec::new();
                for (name, info) in h.tensors() {
                    let t = rt.read_tensor(name)?;
                    tensors.push(json!({
                        "name": name,
                        "dtype": info.dtype.as_str(),
                        "shape": info.shape,
                        "data_offsets": [info.data_offsets.0, info.data_offsets.1],
                        "hex": hex(&t.data),
                    }));
                }
                Ok(json!({"metadata": h.metadata(), "tensors": tensors}).to_string())
            })
        }
        "slice" => {
            let r = open(arg(1)?, args.get(4).map_or("mmap", String::as_str))?;
            let name = arg(2)?.to_owned();
            let spec = parse_spec(arg(3)?)?;
            with_reader(&r, |rt| {
                let t: OwnedTensor = rt.read_slice(&name, &spec)?;
                Ok(
                    json!({"dtype": t.dtype.as_str(), "shape": t.shape, "hex": hex(&t.data)})
                        .to_string(),
                )
            })
        }
        "write" => {
            let text = std::fs::read_to_string(arg(1)?).map_err(|e| format!("io: {e}"))?;
            let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            let metadata: Option<BTreeMap<String, String>> =
                serde_json::from_value(v["metadata"].clone()).map_err(|e| e.to_string())?;
            let mut owned = Vec::new();
            for t in v["tensors"].as_array().ok_or("tensors: not a list")? {
                let dtype: Dtype = t["dtype"]
                    .as_str()
                    .ok_or("dtype")?
                    .parse()
                    .map_err(|e| format!("{e}"))?;
                let shape: Vec<usize> =
                    serde_json::from_value(t["shape"].clone()).map_err(|e| e.to_string())?;
                let data = unhex(t["hex"].as_str().ok_or("hex")?)?;
                let name = t["name"].as_str().ok_or("name")?.to_owned();
                owned.push((name, OwnedTensor { dtype, shape, data }));
            }
            // Any tensor type implementing `View` is written as is.
            let opts = WriteOptions::new().with_metadata_opt(metadata);
            serialize_to_file(owned, arg(2)?, &opts).map_err(|e| format!("{}: {e}", e.kind()))?;
            Ok(String::new())
        }
        other => Err(format!("usage: unknown command {other}")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(if e.starts_with("usage") { 2 } else { 1 })
        }
    }
}
