//! Laying out and writing safetensors bytes, byte-identical to the
//! reference writer (tensors sorted by dtype, largest alignment first, then
//! name; header padded with spaces to a multiple of 8 bytes).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tensorseal_format::{Dtype, FormatError, METADATA_KEY};

/// One tensor to write.
pub struct Spec {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

/// Where every tensor goes.
pub struct Layout {
    /// Prefix and padded header JSON.
    pub header: Vec<u8>,
    /// Indices into the specs, in file order.
    pub order: Vec<usize>,
    /// Byte length of each spec's data (indexed like the specs).
    pub byte_lens: Vec<usize>,
    /// Total length of the data buffer.
    pub data_len: usize,
}

impl Layout {
    /// Total file length.
    pub fn total_len(&self) -> usize {
        self.header.len() + self.data_len
    }
}

fn invalid(tensor: &str, reason: impl Into<String>) -> FormatError {
    FormatError::InvalidWrite {
        tensor: tensor.to_owned(),
        reason: reason.into(),
    }
}

/// Byte length of a tensor, checking for overflow and partial bytes.
pub fn byte_len(spec: &Spec) -> Result<usize, FormatError> {
    let elements = spec
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| FormatError::SizeOverflow {
            tensor: spec.name.clone(),
            shape: spec.shape.iter().map(|&d| d as u64).collect(),
        })?;
    let bits = (elements as u128) * (spec.dtype.bits() as u128);
    if bits % 8 != 0 {
        return Err(FormatError::PartialByte {
            tensor: spec.name.clone(),
            dtype: spec.dtype,
            elements: elements as u64,
            bits,
        });
    }
    usize::try_from(bits / 8).map_err(|_| FormatError::SizeOverflow {
        tensor: spec.name.clone(),
        shape: spec.shape.iter().map(|&d| d as u64).collect(),
    })
}

/// Validates the specs and computes the header and file order.
pub fn layout(specs: &[Spec], metadata: Option<&[(String, String)]>) -> Result<Layout, FormatError> {
    let mut byte_lens = Vec::with_capacity(specs.len());
    for spec in specs {
        if spec.name.is_empty() {
            return Err(FormatError::EmptyName);
        }
        if spec.name.contains('\0') {
            return Err(FormatError::NameContainsNul {
                name: spec.name.clone(),
            });
        }
        if spec.name == METADATA_KEY {
            return Err(invalid(&spec.name, "the name is reserved for metadata"));
        }
        byte_lens.push(byte_len(spec)?);
    }
    let mut order: Vec<usize> = (0..specs.len()).collect();
    order.sort_by(|&a, &b| {
        specs[b]
            .dtype
            .cmp(&specs[a].dtype)
            .then_with(|| specs[a].name.cmp(&specs[b].name))
    });
    for w in order.windows(2) {
        if specs[w[0]].name == specs[w[1]].name {
            return Err(FormatError::DuplicateKey {
                key: specs[w[0]].name.clone(),
            });
        }
    }

    let json_str = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut json = String::from("{");
    if let Some(meta) = metadata {
        json.push_str(&json_str(METADATA_KEY));
        json.push_str(":{");
        for (i, (k, v)) in meta.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(&json_str(k));
            json.push(':');
            json.push_str(&json_str(v));
        }
        json.push('}');
        if !order.is_empty() {
            json.push(',');
        }
    }
    let mut offset = 0usize;
    for (i, &idx) in order.iter().enumerate() {
        let spec = &specs[idx];
        if i > 0 {
            json.push(',');
        }
        let end = offset
            .checked_add(byte_lens[idx])
            .ok_or_else(|| invalid(&spec.name, "total size overflows"))?;
        let shape: Vec<String> = spec.shape.iter().map(|d| d.to_string()).collect();
        json.push_str(&format!(
            "{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            json_str(&spec.name),
            spec.dtype.as_str(),
            shape.join(","),
            offset,
            end
        ));
        offset = end;
    }
    json.push('}');
    let pad = (8 - json.len() % 8) % 8;
    json.extend(std::iter::repeat_n(' ', pad));
    let mut header = Vec::with_capacity(8 + json.len());
    header.extend_from_slice(&(json.len() as u64).to_le_bytes());
    header.extend_from_slice(json.as_bytes());
    Ok(Layout {
        header,
        order,
        byte_lens,
        data_len: offset,
    })
}

/// Removes the temporary file on drop unless disarmed.
struct TempGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A file written under a temporary name and renamed over the target only
/// when complete, so readers never see a half-written file.
pub struct AtomicFile {
    tmp: TempGuard,
    target: PathBuf,
    out: BufWriter<File>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl AtomicFile {
    /// Creates the temporary file next to `target`.
    pub fn create(target: &Path) -> Result<AtomicFile, FormatError> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "tensors".into());
        let mut last = None;
        for _ in 0..16 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = dir.join(format!(".{base}.{}.{n}.tmp", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(f) => {
                    return Ok(AtomicFile {
                        tmp: TempGuard {
                            path: tmp,
                            armed: true,
                        },
                        target: target.to_path_buf(),
                        out: BufWriter::with_capacity(1 << 20, f),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(FormatError::io(target, e)),
            }
        }
        Err(FormatError::io(
            target,
            last.unwrap_or_else(|| io::Error::other("no temporary name")),
        ))
    }

    /// The writer for the file's bytes.
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        &mut self.out
    }

    /// Flushes and renames the temporary file over the target.
    pub fn commit(self) -> Result<(), FormatError> {
        let AtomicFile {
            mut tmp,
            target,
            out,
        } = self;
        let file = out
            .into_inner()
            .map_err(|e| FormatError::io(&target, e.into_error()))?;
        drop(file);
        std::fs::rename(&tmp.path, &target).map_err(|e| FormatError::io(&target, e))?;
        tmp.armed = false;
        Ok(())
    }
}
