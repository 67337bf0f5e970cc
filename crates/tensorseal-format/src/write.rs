//! Writing safetensors files, byte-identical to the reference writer.
//!
//! Layout rules (those of `safetensors` 0.8): tensors are laid out sorted by
//! dtype in descending enum order, then by name (byte order); the header is
//! compact JSON with `__metadata__` first, then the tensors in layout order,
//! each as `{"dtype":…,"shape":[…],"data_offsets":[…,…]}`; the header is padded
//! with spaces to a multiple of 8 bytes. With several metadata entries ours
//! sorts the keys (the reference's order is that of a hash map: random).
//!
//! Entry points, all configured by one [`WriteOptions`]:
//!
//! - [`serialize`] and [`serialize_to_file`] take `(name, tensor)` pairs
//!   whose tensors implement [`View`] (as the `safetensors` crate's
//!   functions of the same names do);
//! - [`FileWriter`] streams each tensor's bytes from the caller, in layout
//!   order, for data that is not in memory (conversions, merges).
//!
//! Files are written through an [`AtomicFile`]: a temporary file in the
//! target directory, renamed over the target only when complete, so a killed
//! writer never leaves a partial file at the target path. [`Durability`]
//! says whether the file (and its directory) are also fsynced first.
//!
//! ```
//! use std::collections::BTreeMap;
//! use tensorseal_format::{serialize, Dtype, ReadTensors, SafeTensors, TensorView, WriteOptions};
//!
//! let data = [1u8, 0, 2, 0];
//! let x = TensorView::new(Dtype::U16, vec![2], &data)?;
//! let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
//! let bytes = serialize([("x", x)], &WriteOptions::new().with_metadata(meta))?;
//! let file = SafeTensors::deserialize(&bytes)?;
//! assert_eq!(file.metadata().unwrap()["format"], "pt");
//! # Ok::<(), tensorseal_format::FormatError>(())
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::header::{byte_size, METADATA_KEY};
use crate::view::View;
use crate::{Dtype, FormatError};

/// How a file is written: its `__metadata__` and its [`Durability`].
///
/// ```
/// use tensorseal_format::{Durability, WriteOptions};
/// let opts = WriteOptions::new()
///     .with_metadata([("format".to_string(), "pt".to_string())].into())
///     .with_durability(Durability::NoSync);
/// assert_eq!(opts.durability(), Durability::NoSync);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    metadata: Option<BTreeMap<String, String>>,
    durability: Durability,
}

impl WriteOptions {
    /// No metadata, [`Durability::Sync`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `metadata` as the `__metadata__` map (keys sorted). Without
    /// it, the header has no `__metadata__` entry at all.
    pub fn with_metadata(mut self, metadata: BTreeMap<String, String>) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Sets the metadata map, or removes it with `None`.
    pub fn with_metadata_opt(mut self, metadata: Option<BTreeMap<String, String>>) -> Self {
        self.metadata = metadata;
        self
    }

    /// How far a file write goes before it returns (ignored by
    /// [`serialize`], which writes to memory).
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The metadata map, if any.
    pub fn metadata(&self) -> Option<&BTreeMap<String, String>> {
        self.metadata.as_ref()
    }

    /// The durability of file writes.
    pub fn durability(&self) -> Durability {
        self.durability
    }
}

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
    offsets: Vec<Range<usize>>,
    data_len: usize,
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

impl Layout {
    /// Plans the layout of a file holding `specs` and `metadata`: checks
    /// the names (non-empty, no NUL, not `__metadata__`, unique) and sizes,
    /// and builds the header.
    pub fn plan(
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
        let mut offsets = vec![0..0; specs.len()];
        let mut offset = 0usize;
        for &i in &order {
            let s = &specs[i];
            let end = offset
                .checked_add(sizes[i])
                .ok_or_else(|| invalid(&s.name, "total size overflows"))?;
            offsets[i] = offset..end;
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
        if padded as u64 > crate::MAX_HEADER_LEN {
            return Err(FormatError::HeaderTooLarge {
                len: padded as u64,
                limit: crate::MAX_HEADER_LEN,
            });
        }
        let mut header = Vec::with_capacity(8 + padded);
        header.extend_from_slice(&(padded as u64).to_le_bytes());
        header.extend_from_slice(json.as_bytes());
        header.resize(8 + padded, b' ');
        Ok(Layout {
            header,
            order,
            offsets,
            data_len: offset,
        })
    }

    /// The 8-byte length prefix followed by the padded JSON header.
    pub fn header_bytes(&self) -> &[u8] {
        &self.header
    }

    /// Indices into the spec list, in the order their bytes are written.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// The byte range of each spec within the data buffer, indexed like the
    /// spec list.
    pub fn offsets(&self) -> &[Range<usize>] {
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

/// The specs of `(name, view)` pairs, each view's `data_len` checked.
fn specs_of<S: AsRef<str>, V: View>(tensors: &[(S, V)]) -> Result<Vec<TensorSpec>, FormatError> {
    tensors
        .iter()
        .map(|(n, v)| {
            let name = n.as_ref();
            let expected = byte_size(name, v.dtype(), v.shape())?;
            if v.data_len() != expected {
                return Err(FormatError::SizeMismatch {
                    tensor: name.to_owned(),
                    dtype: v.dtype(),
                    shape: v.shape().iter().map(|&d| d as u64).collect(),
                    expected: expected as u64,
                    found: v.data_len() as u64,
                });
            }
            Ok(TensorSpec {
                name: name.to_owned(),
                dtype: v.dtype(),
                shape: v.shape().to_vec(),
            })
        })
        .collect()
}

/// Serialises `(name, tensor)` pairs and `opts`' metadata into a new
/// in-memory file.
///
/// ```
/// use tensorseal_format::{serialize, Dtype, OwnedTensor, SafeTensors, WriteOptions};
///
/// let w = OwnedTensor { dtype: Dtype::F32, shape: vec![2], data: vec![0; 8] };
/// let bytes = serialize([("w", &w)], &WriteOptions::new())?;
/// assert_eq!(SafeTensors::deserialize(&bytes)?.tensor("w")?.shape(), &[2]);
/// # Ok::<(), tensorseal_format::FormatError>(())
/// ```
pub fn serialize<S, V, I>(tensors: I, opts: &WriteOptions) -> Result<Vec<u8>, FormatError>
where
    S: AsRef<str>,
    V: View,
    I: IntoIterator<Item = (S, V)>,
{
    let tensors: Vec<(S, V)> = tensors.into_iter().collect();
    let specs = specs_of(&tensors)?;
    let layout = Layout::plan(&specs, opts.metadata())?;
    let mut out = Vec::with_capacity(layout.file_len());
    out.extend_from_slice(layout.header_bytes());
    for &i in layout.order() {
        out.extend_from_slice(&tensors[i].1.data());
    }
    Ok(out)
}

/// Serialises `(name, tensor)` pairs and `opts`' metadata into the file at
/// `path`, atomically, with `opts`' [`Durability`].
///
/// ```
/// use tensorseal_format::{serialize_to_file, Dtype, Durability, MmapFile, TensorView, WriteOptions};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("model.safetensors");
/// let bias = [0u8; 12];
/// let views = vec![("bias".to_string(), TensorView::new(Dtype::F32, vec![3], &bias)?)];
/// serialize_to_file(views, &path, &WriteOptions::new().with_durability(Durability::NoSync))?;
/// assert_eq!(MmapFile::open(&path)?.tensor("bias")?.data(), &bias);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn serialize_to_file<S, V, I>(
    tensors: I,
    path: impl AsRef<Path>,
    opts: &WriteOptions,
) -> Result<(), FormatError>
where
    S: AsRef<str>,
    V: View,
    I: IntoIterator<Item = (S, V)>,
{
    let tensors: Vec<(S, V)> = tensors.into_iter().collect();
    let specs = specs_of(&tensors)?;
    FileWriter::create(path, &specs, opts)?
        .fill_and_commit(|i, out| out.write_all(&tensors[i].1.data()))
}

/// A file being written tensor by tensor, with bytes streamed from the
/// caller: for data that is not in memory as a whole.
///
/// [`FileWriter::create`] plans the [`Layout`] and writes the header to an
/// [`AtomicFile`]; [`FileWriter::write_tensor`] is then called once per
/// tensor, in [`Layout::order`]; [`FileWriter::commit`] renames the complete
/// file into place. Dropped before the commit (an error), it leaves nothing
/// at the target path.
///
/// ```
/// use std::io::Write;
/// use tensorseal_format::{Dtype, FileWriter, PreadFile, ReadTensors, TensorSpec, WriteOptions};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("big.safetensors");
/// let specs = [TensorSpec { name: "zeros".into(), dtype: Dtype::U8, shape: vec![1 << 20] }];
/// let mut w = FileWriter::create(&path, &specs, &WriteOptions::new())?;
/// for i in w.layout().order().to_vec() {
///     // Stream the tensor in pieces; exactly its byte length is required.
///     let range = w.write_tensor(i, |out| {
///         (0..16).try_for_each(|_| out.write_all(&[0u8; 1 << 16]))
///     })?;
///     // What was written can be read back before the commit.
///     let mut check = [1u8; 4];
///     tensorseal_format::read_exact_at(w.flushed_file()?, &mut check, range.start)?;
///     assert_eq!(check, [0; 4]);
/// }
/// w.commit()?;
/// assert_eq!(PreadFile::open(&path)?.read_tensor("zeros")?.data.len(), 1 << 20);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FileWriter {
    layout: Layout,
    names: Vec<String>,
    out: AtomicFile,
    next: usize,
}

impl FileWriter {
    /// Plans the layout of `specs` with `opts`' metadata, creates the
    /// temporary file next to `path` (committed with `opts`' durability) and
    /// writes the header.
    pub fn create(
        path: impl AsRef<Path>,
        specs: &[TensorSpec],
        opts: &WriteOptions,
    ) -> Result<Self, FormatError> {
        let layout = Layout::plan(specs, opts.metadata())?;
        let mut out = AtomicFile::create_with(path.as_ref(), opts.durability())?;
        out.write_all(layout.header_bytes())
            .map_err(|e| FormatError::io(path.as_ref(), e))?;
        Ok(FileWriter {
            layout,
            names: specs.iter().map(|s| s.name.clone()).collect(),
            out,
            next: 0,
        })
    }

    /// The planned layout (its [`Layout::order`] is the order in which
    /// [`FileWriter::write_tensor`] takes the tensors).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The path the file is committed to.
    pub fn target(&self) -> &Path {
        self.out.target()
    }

    /// Writes the bytes of spec `index` (the next one in layout order) with
    /// `fill`, which must write exactly the tensor's byte length. Returns the
    /// tensor's absolute byte range in the file.
    pub fn write_tensor<F>(&mut self, index: usize, fill: F) -> Result<Range<u64>, FormatError>
    where
        F: FnOnce(&mut dyn Write) -> io::Result<()>,
    {
        let expected = self.layout.order.get(self.next).copied();
        if expected != Some(index) {
            let name = self.names.get(index).map_or("<unknown>", String::as_str);
            return Err(invalid(
                name,
                match expected {
                    Some(e) => format!("tensor {index} written out of layout order ({e} is next)"),
                    None => "all tensors were already written".to_string(),
                },
            ));
        }
        let range = self.layout.offsets[index].clone();
        let len = range.len() as u64;
        let path = self.out_path();
        let mut counting = CountingWriter {
            inner: &mut self.out,
            count: 0,
            limit: len,
        };
        fill(&mut counting).map_err(|e| FormatError::io(&path, e))?;
        if counting.count != len {
            return Err(invalid(
                &self.names[index],
                format!(
                    "{} bytes were written, the tensor has {len}",
                    counting.count
                ),
            ));
        }
        self.next += 1;
        let base = self.layout.header.len() as u64;
        Ok(base + range.start as u64..base + range.end as u64)
    }

    fn out_path(&self) -> PathBuf {
        self.out.target().to_owned()
    }

    /// Flushes what was written and returns the temporary file (opened for
    /// reading too), so that tensors can be read back with positioned reads
    /// ([`crate::read_exact_at`]) before the commit.
    pub fn flushed_file(&mut self) -> Result<&File, FormatError> {
        let path = self.out_path();
        self.out.flush().map_err(|e| FormatError::io(&path, e))?;
        self.out.file().map_err(|e| FormatError::io(&path, e))
    }

    /// Writes every (remaining) tensor in layout order, each with
    /// `fill(spec_index, writer)`, then commits: the streaming write in one
    /// call, when nothing needs to happen between tensors.
    pub fn fill_and_commit<F>(mut self, mut fill: F) -> Result<(), FormatError>
    where
        F: FnMut(usize, &mut dyn Write) -> io::Result<()>,
    {
        while let Some(&i) = self.layout.order.get(self.next) {
            self.write_tensor(i, |w| fill(i, w))?;
        }
        self.commit()
    }

    /// Renames the complete file over the target (after fsyncs, per the
    /// durability). Fails, leaving nothing at the target, unless every
    /// tensor was written.
    pub fn commit(self) -> Result<(), FormatError> {
        if let Some(&missing) = self.layout.order.get(self.next) {
            return Err(invalid(
                &self.names[missing],
                "the file was committed before this tensor was written",
            ));
        }
        self.out.commit()
    }
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
