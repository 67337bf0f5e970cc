//! safetensors -> torch zip checkpoint that `torch.load(weights_only=True)`
//! accepts. The pickle is written by hand with allow-listed globals only
//! (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2/_v3`, storage
//! classes, dtypes), members are stored (not compressed) and their data
//! aligned to 64 bytes as torch does.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use tensorseal_format::index::{open_path, Checkpoint as StCheckpoint};
use tensorseal_format::{AtomicFile, Dtype, Durability, PreadFile, ReadTensors};

use crate::dtypes::torch_names;
use crate::error::ConvertError;
use crate::recognise;
use crate::report::Report;
use crate::sources::{Checkpoint, Format};
use crate::stream::Streamer;

/// Size of the reads that copy tensor bytes.
const COPY_CHUNK: usize = 8 << 20;

/// A minimal protocol-2 pickle writer.
struct Pickler {
    out: Vec<u8>,
}

impl Pickler {
    fn op(&mut self, b: u8) {
        self.out.push(b);
    }
    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out.extend_from_slice(module.as_bytes());
        self.out.push(b'\n');
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'\n');
    }
    fn str(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }
    fn int(&mut self, v: u64) {
        if v < 256 {
            self.out.extend_from_slice(&[b'K', v as u8]);
        } else if v < 65536 {
            self.out.push(b'M');
            self.out.extend_from_slice(&(v as u16).to_le_bytes());
        } else if v < (1 << 31) {
            self.out.push(b'J');
            self.out.extend_from_slice(&(v as u32).to_le_bytes());
        } else {
            // LONG1: little-endian two's complement, minimal length.
            let mut b = v.to_le_bytes().to_vec();
            while b.len() > 1 && b[b.len() - 1] == 0 && b[b.len() - 2] & 0x80 == 0 {
                b.pop();
            }
            if b.last().is_some_and(|x| x & 0x80 != 0) {
                b.push(0);
            }
            self.out.extend_from_slice(&[0x8a, b.len() as u8]);
            self.out.extend_from_slice(&b);
        }
    }
    fn int_tuple(&mut self, v: &[u64]) {
        match v.len() {
            0 => self.op(b')'),
            1..=3 => {
                for &x in v {
                    self.int(x);
                }
                self.op(0x84 + v.len() as u8);
            }
            _ => {
                self.op(b'(');
                for &x in v {
                    self.int(x);
                }
                self.op(b't');
            }
        }
    }
}

struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    key: usize,
}

/// Builds `data.pkl` for `entries` (storage `key`s index `data/<key>`).
fn state_dict_pickle(entries: &[Entry], storage_bytes: &[usize]) -> Result<Vec<u8>, String> {
    let mut p = Pickler { out: vec![0x80, 2] };
    p.global("collections", "OrderedDict");
    p.op(b')');
    p.op(b'R');
    for chunk in entries.chunks(1000) {
        p.op(b'(');
        for e in chunk {
            let (dname, storage) = torch_names(e.dtype).ok_or_else(|| {
                format!(
                    "tensor `{}`: dtype {} has no torch equivalent",
                    e.name, e.dtype
                )
            })?;
            let es = e.dtype.byte_size().unwrap_or(1);
            p.str(&e.name);
            p.global(
                "torch._utils",
                if storage.is_some() {
                    "_rebuild_tensor_v2"
                } else {
                    "_rebuild_tensor_v3"
                },
            );
            p.op(b'(');
            // Persistent id: ('storage', type, key, 'cpu', numel)
            p.op(b'(');
            p.str("storage");
            let bytes = storage_bytes.get(e.key).copied().unwrap_or(0);
            match storage {
                Some(cls) => {
                    p.global("torch", cls);
                    p.str(&e.key.to_string());
                    p.str("cpu");
                    p.int((bytes / es) as u64);
                }
                None => {
                    p.global("torch.storage", "UntypedStorage");
                    p.str(&e.key.to_string());
                    p.str("cpu");
                    p.int(bytes as u64);
                }
            }
            p.op(b't');
            p.op(b'Q');
            p.int(0);
            let shape: Vec<u64> = e.shape.iter().map(|&d| d as u64).collect();
            let mut stride = vec![0u64; shape.len()];
            let mut acc = 1u64;
            for i in (0..shape.len()).rev() {
                stride[i] = acc;
                acc = acc.saturating_mul(shape[i].max(1));
            }
            p.int_tuple(&shape);
            p.int_tuple(&stride);
            p.op(0x89); // requires_grad = False
            p.global("collections", "OrderedDict");
            p.op(b')');
            p.op(b'R');
            if storage.is_none() {
                p.global("torch", dname);
            }
            p.op(b't');
            p.op(b'R');
        }
        p.op(b'u');
    }
    p.op(b'.');
    Ok(p.out)
}

/// Converts safetensors (file, index or directory) to a torch zip
/// checkpoint at `dst`. Tensors recorded as aliases in the metadata
/// (`alias -> kept`, as written by [`crate::to_safetensors`] and Hugging
/// Face's converter) share the kept tensor's storage again.
pub fn to_torch(
    src: &Path,
    dst: &Path,
    verify: bool,
    overwrite: bool,
    durability: Durability,
) -> Result<Report, ConvertError> {
    let files: Vec<PathBuf> = match open_path(src)? {
        StCheckpoint::Single(p) => vec![p],
        StCheckpoint::Sharded(ix) => ix.shard_files().iter().map(|f| ix.dir().join(f)).collect(),
    };
    if dst.exists() && !overwrite {
        return Err(ConvertError::io(
            dst,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists (use --force to replace it)",
            ),
        ));
    }
    let maps: Vec<PreadFile> = files
        .iter()
        .map(PreadFile::open)
        .collect::<Result<_, _>>()?;
    let mut entries = Vec::new();
    let mut sources: Vec<(usize, String)> = Vec::new(); // storage key -> (file, tensor)
    let mut storage_bytes = Vec::new();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    for (fi, m) in maps.iter().enumerate() {
        for (name, info) in m.header().tensors() {
            let key = sources.len();
            sources.push((fi, name.clone()));
            storage_bytes.push(info.byte_len());
            by_name.insert(name.clone(), entries.len());
            entries.push(Entry {
                name: name.clone(),
                dtype: info.dtype,
                shape: info.shape.clone(),
                key,
            });
        }
    }
    // Restore aliases recorded in metadata.
    let mut aliases = Vec::new();
    for m in &maps {
        if let Some(meta) = m.metadata() {
            for (alias, kept) in meta {
                if by_name.contains_key(alias) {
                    continue;
                }
                if let Some(&k) = by_name.get(kept) {
                    let e = &entries[k];
                    aliases.push(Entry {
                        name: alias.clone(),
                        dtype: e.dtype,
                        shape: e.shape.clone(),
                        key: e.key,
                    });
                }
            }
        }
    }
    let alias_pairs: Vec<(String, String)> = aliases
        .iter()
        .map(|a| (a.name.clone(), sources[a.key].1.clone()))
        .collect();
    entries.extend(aliases);
    let pkl = state_dict_pickle(&entries, &storage_bytes)
        .map_err(|why| ConvertError::format(src, why))?;

    let root = dst
        .file_stem()
        .map(|s| {
            s.to_string_lossy()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect::<String>()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "archive".to_owned());
    let ioerr = |e: std::io::Error| ConvertError::io(dst, e);
    let zerr = |e: zip::result::ZipError| ConvertError::format(dst, format!("writing zip: {e}"));
    // Dropped on any error below, the temporary file is removed.
    let out = AtomicFile::create_with(dst, durability)?;
    let mut z = zip::ZipWriter::new(out);
    let small = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .with_alignment(64);
    let put = |z: &mut zip::ZipWriter<AtomicFile>, name: &str, data: &[u8]| {
        z.start_file(format!("{root}/{name}"), small)
            .map_err(zerr)?;
        z.write_all(data).map_err(ioerr)
    };
    put(&mut z, "data.pkl", &pkl)?;
    put(&mut z, ".format_version", b"1")?;
    put(&mut z, ".storage_alignment", b"64")?;
    put(&mut z, "byteorder", b"little")?;
    let mut total = 0u64;
    let mut buf = Vec::new();
    for (key, (fi, name)) in sources.iter().enumerate() {
        let m = &maps[*fi];
        let (start, end) = m.header().tensor(name)?.data_offsets;
        let len = end - start;
        total += len as u64;
        let opts = small.large_file(len as u64 >= u32::MAX as u64);
        z.start_file(format!("{root}/data/{key}"), opts)
            .map_err(zerr)?;
        let mut done = 0;
        while done < len {
            let n = COPY_CHUNK.min(len - done);
            buf.resize(n, 0);
            m.read_at(start + done, &mut buf)?;
            z.write_all(&buf).map_err(ioerr)?;
            done += n;
        }
    }
    put(&mut z, "version", b"3\n")?;
    z.finish().map_err(zerr)?.commit()?;
    let mut report = Report {
        inputs: files.clone(),
        format: Some(Format::TorchZip),
        tensors: entries.len(),
        aliases: alias_pairs,
        outputs: vec![dst.to_owned()],
        total_bytes: total,
        ..Report::default()
    };
    if verify {
        // Read our own output back with the non-executing reader and compare.
        let ck = Checkpoint::open(dst)?;
        let mut found = Vec::new();
        let mut extras = serde_json::Map::new();
        let mut inline = Vec::new();
        recognise::collect(
            ck.root(),
            ck.big_endian(),
            &mut found,
            &mut extras,
            &mut inline,
        );
        if found.len() != entries.len() {
            return Err(ConvertError::Verify {
                path: dst.to_owned(),
                name: "*".into(),
                why: format!("holds {} tensors, expected {}", found.len(), entries.len()),
            });
        }
        let mut streamer = Streamer::new();
        for (name, t) in found {
            let t = t.map_err(|why| ConvertError::Verify {
                path: dst.to_owned(),
                name: name.clone(),
                why,
            })?;
            let k = entries
                .iter()
                .find(|e| e.name == name)
                .map(|e| e.key)
                .ok_or_else(|| ConvertError::Verify {
                    path: dst.to_owned(),
                    name: name.clone(),
                    why: "was not written".into(),
                })?;
            let (fi, sname) = &sources[k];
            let m = &maps[*fi];
            let info = m.header().tensor(sname)?;
            if info.dtype != t.dtype || info.shape != t.shape {
                return Err(ConvertError::Verify {
                    path: dst.to_owned(),
                    name,
                    why: format!(
                        "is {} {:?}, expected {} {:?}",
                        t.dtype, t.shape, info.dtype, info.shape
                    ),
                });
            }
            let (start, end) = info.data_offsets;
            let mut pos = start;
            let mut same = true;
            let mut back = Vec::new();
            streamer.emit(0, &ck, &name, &t, None, &mut |b| {
                if same && pos + b.len() <= end {
                    back.resize(b.len(), 0);
                    same = m.read_at(pos, &mut back).is_ok() && back == b;
                } else {
                    same = false;
                }
                pos += b.len();
                Ok(())
            })?;
            if !same || pos != end {
                return Err(ConvertError::Verify {
                    path: dst.to_owned(),
                    name,
                    why: "bytes differ".into(),
                });
            }
        }
        report.verified = true;
    }
    Ok(report)
}
