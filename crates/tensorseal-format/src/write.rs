//! Writing safetensors files, byte-identical to the reference writer.
//!
//! Layout rules (those of `safetensors` 0.8): tensors are laid out sorted by
//! dtype in descending enum order, then by name (byte order); the header is
//! compact JSON with `__metadata__` first, then the tensors in layout order,
//! each as `{"dtype":…,"shape":[…],"data_offsets":[…,…]}`; the header is padded
//! with spaces to a multiple of 8 bytes. With several metadata entries ours
//! sorts the keys (the reference's order is that of a hash map: random).
//!
//! [`write_file`] streams tensor bytes from a callback into an [`AtomicFile`]:
//! a temporary file in the target directory, renamed over the target only
//! when complete, so a killed writer never leaves a partial file at the
//! target path. [`Durability`] says whether the file (and its directory) are
//! also fsynced before the call returns.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::header::{byte_size, METADATA_KEY};
use crate::view::TensorView;
use crate::{Dtype, FormatError};

/// What the writer needs to know about one tensor before its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Tensor name (non-empty, no NUL, not `__metadata__`, unique).
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
}

/// The planned layout of a file: header bytes, write order, data offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    header: Vec<u8>,
    order: Vec<usize>,
    offsets: Vec<(usize, usize)>,
    data_len: usize,
}

impl Layout {
    /// The 8-byte length prefix followed by the padded JSON header.
    pub fn header_bytes(&self) -> &[u8] {
        &self.header
    }

    /// Indices into the spec list, in the order their bytes are written.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Data offsets `(start, end)` of each spec, indexed like the spec list.
    pub fn offsets(&self) -> &[(usize, usize)] {
        &self.offsets
    }

    /// Length of the data buffer.
    pub fn data_len(&self) -> usize {
        self.data_len
    }

    /// Length of the whole file.
    pub fn file_len(&self) -> usize {
        self.header.len() + self.data_len
    }
}

fn invalid(name: &str, reason: impl Into<String>) -> FormatError {
    FormatError::InvalidWrite {
        tensor: name.to_owned(),
        reason: reason.into(),
    }
}

fn json_str(s: &str) -> String {
    // Serialising a string cannot fail.
    serde_json::to_string(s).unwrap_or_default()
}

/// Plans the layout of a file holding `specs` and `metadata`.
pub fn layout(
    specs: &[TensorSpec],
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<Layout, FormatError> {
    let mut seen = HashSet::with_capacity(specs.len());
    let mut sizes = Vec::with_capacity(specs.len());
    for s in specs {
        if s.name.is_empty() {
            return Err(FormatError::EmptyName);
        }
        if s.name.contains('\0') {
            return Err(FormatError::NameContainsNul {
                name: s.name.clone(),
            });
        }
        if s.name == METADATA_KEY {
            return Err(invalid(&s.name, "the name is reserved for metadata"));
        }
        if !seen.insert(s.name.as_str()) {
            return Err(FormatError::DuplicateKey {
                key: s.name.clone(),
            });
        }
        sizes.push(byte_size(&s.name, s.dtype, &s.shape)?);
    }
    let mut order: Vec<usize> = (0..specs.len()).collect();
    order.sort_by(|&a, &b| {
        let (l, r) = (&specs[a], &specs[b]);
        r.dtype.cmp(&l.dtype).then_with(|| l.name.cmp(&r.name))
    });

    let mut json = String::with_capacity(64 + specs.len() * 96);
    json.push('{');
    let mut first = true;
    if let Some(meta) = metadata {
        json.push_str("\"__metadata__\":{");
        for (i, (k, v)) in meta.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(&json_str(k));
            json.push(':');
            json.push_str(&json_str(v));
        }
        json.push('}');
        first = false;
    }
    let mut offsets = vec![(0usize, 0usize); specs.len()];
    let mut offset = 0usize;
    for &i in &order {
        let s = &specs[i];
        let end = offset
            .checked_add(sizes[i])
            .ok_or_else(|| invalid(&s.name, "total size overflows"))?;
        offsets[i] = (offset, end);
        if !first {
            json.push(',');
        }
        first = false;
        json.push_str(&json_str(&s.name));
        json.push_str(":{\"dtype\":\"");
        json.push_str(s.dtype.as_str());
        json.push_str("\",\"shape\":[");
        for (j, d) in s.shape.iter().enumerate() {
            if j > 0 {
                json.push(',');
            }
            json.push_str(&d.to_string());
        }
        json.push_str("],\"data_offsets\":[");
        json.push_str(&offset.to_string());
        json.push(',');
        json.push_str(&end.to_string());
        json.push_str("]}");
        offset = end;
    }
    json.push('}');
    let padded = json.len().div_ceil(8) * 8;
    let mut header = Vec::with_capacity(8 + padded);
    header.extend_from_slice(&(padded as u64).to_le_bytes());
    header.extend_from_slice(json.as_bytes());
    header.resize(8 + padded, b' ');
    if padded as u64 > crate::MAX_HEADER_LEN {
        return Err(FormatError::HeaderTooLarge {
            len: padded as u64,
            limit: crate::MAX_HEADER_LEN,
        });
    }
    Ok(Layout {
        header,
        order,
        offsets,
        data_len: offset,
    })
}

/// Serialises tensors and metadata into a new in-memory file.
pub fn serialize<S: AsRef<str>>(
    tensors: &[(S, TensorView<'_>)],
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<Vec<u8>, FormatError> {
    let specs: Vec<TensorSpec> = tensors
        .iter()
        .map(|(n, v)| TensorSpec {
            name: n.as_ref().to_owned(),
            dtype: v.dtype(),
            shape: v.shape().to_vec(),
        })
        .collect();
    let layout = layout(&specs, metadata)?;
    let mut out = Vec::with_capacity(layout.file_len());
    out.extend_from_slice(layout.header_bytes());
    for &i in layout.order() {
        out.extend_from_slice(tensors[i].1.data());
    }
    Ok(out)
}

/// Serialises tensors and metadata into the file at `path`, atomically.
pub fn serialize_to_file<S: AsRef<str>>(
    tensors: &[(S, TensorView<'_>)],
    metadata: Option<&BTreeMap<String, String>>,
    path: impl AsRef<Path>,
) -> Result<(), FormatError> {
    let specs: Vec<TensorSpec> = tensors
        .iter()
        .map(|(n, v)| TensorSpec {
            name: n.as_ref().to_owned(),
            dtype: v.dtype(),
            shape: v.shape().to_vec(),
        })
        .collect();
    write_file(path, &specs, metadata, |i, w| {
        w.write_all(tensors[i].1.data())
    })
}

/// Writes a file at `path` atomically and durably ([`Durability::Sync`]),
/// streaming each tensor's bytes from `fill(spec_index, writer)`, called
/// once per tensor in layout order. Each call must write exactly the
/// tensor's byte length, or the write fails and nothing appears at `path`.
pub fn write_file<F>(
    path: impl AsRef<Path>,
    specs: &[TensorSpec],
    metadata: Option<&BTreeMap<String, String>>,
    fill: F,
) -> Result<(), FormatError>
where
    F: FnMut(usize, &mut dyn Write) -> io::Result<()>,
{
    write_file_with(path, specs, metadata, Durability::Sync, fill)
}

/// [`write_file`] with a chosen [`Durability`].
pub fn write_file_with<F>(
    path: impl AsRef<Path>,
    specs: &[TensorSpec],
    metadata: Option<&BTreeMap<String, String>>,
    durability: Durability,
    fill: F,
) -> Result<(), FormatError>
where
    F: FnMut(usize, &mut dyn Write) -> io::Result<()>,
{
    write_impl(path.as_ref(), specs, metadata, durability, fill, None)
}

/// Called after each tensor by [`write_file_observed`].
type After<'a> = &'a mut dyn FnMut(usize, &File, std::ops::Range<u64>) -> io::Result<()>;

/// [`write_file_with`], also calling `after(spec_index, file, range)` once
/// each tensor's bytes have been handed to the OS (flushed), with the file
/// being written and the tensor's absolute byte range in it, before the next
/// tensor is filled. Reading that range back through `file` with positioned
/// reads (the temporary file is opened for reading and writing) sees
/// exactly what was written, so `after` can verify the output before it is
/// renamed into place. An error from `after` aborts the write like an error
/// from `fill`: nothing appears at `path`. The file is renamed only after
/// the last `after` call has returned.
pub fn write_file_observed<F, A>(
    path: impl AsRef<Path>,
    specs: &[TensorSpec],
    metadata: Option<&BTreeMap<String, String>>,
    durability: Durability,
    fill: F,
    mut after: A,
) -> Result<(), FormatError>
where
    F: FnMut(usize, &mut dyn Write) -> io::Result<()>,
    A: FnMut(usize, &File, std::ops::Range<u64>) -> io::Result<()>,
{
    write_impl(
        path.as_ref(),
        specs,
        metadata,
        durability,
        fill,
        Some(&mut after),
    )
}

fn write_impl<F>(
    path: &Path,
    specs: &[TensorSpec],
    metadata: Option<&BTreeMap<String, String>>,
    durability: Durability,
    mut fill: F,
    mut after: Option<After<'_>>,
) -> Result<(), FormatError>
where
    F: FnMut(usize, &mut dyn Write) -> io::Result<()>,
{
    let layout = layout(specs, metadata)?;
    let mut out = AtomicFile::create_with(path, durability)?;
    let io_err = |e| FormatError::io(path, e);
    out.write_all(layout.header_bytes()).map_err(io_err)?;
    for &i in layout.order() {
        let (s, e) = layout.offsets()[i];
        let mut counting = CountingWriter {
            inner: &mut out,
            count: 0,
            limit: (e - s) as u64,
        };
        fill(i, &mut counting).map_err(|e| FormatError::io(path, e))?;
        if counting.count != (e - s) as u64 {
            return Err(invalid(
                &specs[i].name,
                format!(
                    "{} bytes were written, the tensor has {}",
                    counting.count,
                    e - s
                ),
            ));
        }
        if let Some(after) = after.as_mut() {
            // Only when observed: flushing after every tensor would cost a
            // write per tensor for files with many small ones.
            out.flush().map_err(io_err)?;
            let base = layout.header_bytes().len() as u64;
            let file = out.file().map_err(io_err)?;
            after(i, file, base + s as u64..base + e as u64).map_err(io_err)?;
        }
    }
    out.commit()
}

struct CountingWriter<'w, W: Write> {
    inner: &'w mut W,
    count: u64,
    limit: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.count + buf.len() as u64 > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "tensor data exceeds its declared size of {} bytes",
                    self.limit
                ),
            ));
        }
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How far [`AtomicFile::commit`] goes before it returns.
///
/// Both levels are atomic for readers: the target path shows either the old
/// file or the complete new one, never a partial file. They differ after a
/// crash of the whole machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync the file before the rename and the directory after it: once
    /// `commit` returns, the new file survives a power loss. Costs the time
    /// to write the data to the disk.
    #[default]
    Sync,
    /// Rename without fsync and let the OS write the data back later, like
    /// `cp` and the reference `safetensors` writer. After a power loss in
    /// the following seconds the target may be missing, empty or truncated
    /// (which every reader rejects: the header gives the data's length).
    NoSync,
}

/// A file written under a temporary name in the target's directory, then
/// renamed over the target by [`AtomicFile::commit`] (with fsyncs, per its
/// [`Durability`]). Dropped without a commit (an error, a panic), the
/// temporary file is removed.
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    out: Option<BufWriter<File>>,
    durability: Durability,
}

impl AtomicFile {
    /// Creates the temporary file next to `target`; `commit` fsyncs
    /// ([`Durability::Sync`]).
    pub fn create(target: impl AsRef<Path>) -> Result<Self, FormatError> {
        Self::create_with(target, Durability::Sync)
    }

    /// Creates the temporary file next to `target`, to be committed with the
    /// given durability.
    pub fn create_with(
        target: impl AsRef<Path>,
        durability: Durability,
    ) -> Result<Self, FormatError> {
        let target = target.as_ref().to_owned();
        if target.as_os_str().is_empty() {
            // As `open("")`: there is no such file (not "invalid input").
            return Err(FormatError::io(
                &target,
                io::Error::from(io::ErrorKind::NotFound),
            ));
        }
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let base = target
            .file_name()
            .ok_or_else(|| {
                FormatError::io(
                    &target,
                    io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
                )
            })?
            .to_string_lossy()
            .into_owned();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut last_err = None;
        for _ in 0..16 {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let temp = dir.join(format!(
                ".{base}.tmp-{}-{nanos:08x}-{n}",
                std::process::id()
            ));
            // Readable too, so that observers can read back what was written.
            match File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&temp)
            {
                Ok(f) => {
                    return Ok(AtomicFile {
                        target,
                        temp,
                        out: Some(BufWriter::with_capacity(1 << 20, f)),
                        durability,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
                // Quote the path the caller asked for: the temporary name is
                // an internal detail (a missing directory or a permission
                // problem is the target's).
                Err(e) => return Err(FormatError::io(&target, e)),
            }
        }
        Err(FormatError::io(
            &target,
            last_err.unwrap_or_else(|| io::Error::other("no temporary name available")),
        ))
    }

    /// The final path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temporary path being written.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The file being written (its buffer may hold bytes not yet in it:
    /// flush first to read back everything written).
    fn file(&self) -> io::Result<&File> {
        self.out
            .as_ref()
            .map(BufWriter::get_ref)
            .ok_or_else(|| io::Error::other("file already committed"))
    }

    /// The durability `commit` will give.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Flushes and renames over the target; with [`Durability::Sync`], also
    /// fsyncs the file before the rename and the directory after it.
    pub fn commit(mut self) -> Result<(), FormatError> {
        let out = self
            .out
            .take()
            .ok_or_else(|| FormatError::io(&self.target, io::Error::other("already committed")))?;
        let file = out
            .into_inner()
            .map_err(|e| FormatError::io(&self.temp, e.into_error()))?;
        let sync = self.durability == Durability::Sync;
        if sync {
            file.sync_all()
                .map_err(|e| FormatError::io(&self.temp, e))?;
        }
        drop(file);
        std::fs::rename(&self.temp, &self.target).map_err(|e| FormatError::io(&self.target, e))?;
        #[cfg(unix)]
        if let Some(dir) = self.target.parent().filter(|_| sync) {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.out {
            Some(o) => o.write(buf),
            None => Err(io::Error::other("file already committed")),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.out {
            Some(o) => o.write_all(buf),
            None => Err(io::Error::other("file already committed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }
}

/// Seeking (for writers that patch earlier bytes, such as zip archives)
/// flushes the buffer first.
impl io::Seek for AtomicFile {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        match &mut self.out {
            Some(o) => o.seek(pos),
            None => Err(io::Error::other("file already committed")),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}
