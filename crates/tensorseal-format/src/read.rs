//! Readers: over bytes in memory ([`SafeTensors`]), over a memory map
//! ([`MmapFile`]) and over positioned reads ([`PreadFile`]).
//!
//! All three validate the whole header and the data buffer length when they
//! open, and implement [`ReadTensors`], which reads whole tensors or slices,
//! touching only the bytes asked for.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::header::{read_header_len, FilePrefix, Header, TensorInfo};
use crate::slice::{self, SliceArg, SlicePlan};
use crate::view::{OwnedTensor, TensorView};
use crate::FormatError;

/// The reading interface shared by [`SafeTensors`], [`MmapFile`] and
/// [`PreadFile`]: the same names and signatures for looking tensors up,
/// listing them, reading the metadata, and reading a tensor's bytes (whole or
/// sliced, into a new buffer or the caller's).
///
/// The in-memory readers ([`SafeTensors`], [`MmapFile`]) also hand out
/// zero-copy [`TensorView`]s with their inherent `tensor` and `iter`.
///
/// ```
/// use tensorseal_format::{serialize_to_file, Dtype, MmapFile, PreadFile, ReadTensors};
/// use tensorseal_format::{SafeTensors, SliceArg, TensorView, WriteOptions};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("m.safetensors");
/// let data: Vec<u8> = (0..6).collect();
/// let meta = [("format".to_string(), "pt".to_string())].into();
/// let opts = WriteOptions::new().with_metadata(meta);
/// serialize_to_file([("x", TensorView::new(Dtype::U8, vec![2, 3], &data)?)], &path, &opts)?;
///
/// let bytes = std::fs::read(&path)?;
/// let readers: [Box<dyn ReadTensors>; 3] = [
///     Box::new(SafeTensors::deserialize(&bytes)?),
///     Box::new(MmapFile::open(&path)?),
///     Box::new(PreadFile::open(&path)?),
/// ];
/// for r in &readers {
///     assert_eq!(r.names(), ["x"]);
///     assert_eq!(r.metadata().unwrap()["format"], "pt");
///     assert_eq!(r.info("x")?.shape, [2, 3]);
///     assert_eq!(r.read_tensor("x")?.data, data);
///     // x[1, :2]
///     let s = r.read_slice("x", &[SliceArg::Index(1), SliceArg::range(0, 2)])?;
///     assert_eq!((s.shape, s.data), (vec![2], vec![3, 4]));
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait ReadTensors {
    /// The validated header.
    fn header(&self) -> &Header;

    /// Offset of the data buffer within the file.
    fn data_start(&self) -> usize;

    /// Reads `buf.len()` bytes at `offset` within the data buffer.
    fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), FormatError>;

    /// The `__metadata__` map, if the file has one.
    fn metadata(&self) -> Option<&BTreeMap<String, String>> {
        self.header().metadata()
    }

    /// Tensor names in file order.
    fn names(&self) -> Vec<&str> {
        self.header().names().collect()
    }

    /// Number of tensors.
    fn len(&self) -> usize {
        self.header().len()
    }

    /// Whether the file holds no tensor.
    fn is_empty(&self) -> bool {
        self.header().is_empty()
    }

    /// Dtype, shape and data offsets of tensor `name`.
    fn info(&self, name: &str) -> Result<&TensorInfo, FormatError> {
        self.header().tensor(name)
    }

    /// Reads the whole tensor `name` into `buf` (exactly its byte length).
    fn read_tensor_into(&self, name: &str, buf: &mut [u8]) -> Result<(), FormatError> {
        let info = self.header().tensor(name)?;
        if buf.len() != info.byte_len() {
            return Err(FormatError::InvalidSlice {
                tensor: name.to_owned(),
                reason: format!(
                    "destination holds {} bytes, the tensor has {}",
                    buf.len(),
                    info.byte_len()
                ),
            });
        }
        self.read_at(info.data_offsets.0, buf)
    }

    /// Reads the whole tensor `name` into a new buffer.
    fn read_tensor(&self, name: &str) -> Result<OwnedTensor, FormatError> {
        let info = self.header().tensor(name)?;
        // The length was validated against the actual file size.
        let mut data = vec![0u8; info.byte_len()];
        self.read_at(info.data_offsets.0, &mut data)?;
        Ok(OwnedTensor {
            dtype: info.dtype,
            shape: info.shape.clone(),
            data,
        })
    }

    /// Plans a slice of tensor `name`.
    fn plan_slice(&self, name: &str, args: &[SliceArg]) -> Result<SlicePlan, FormatError> {
        slice::plan(name, self.header().tensor(name)?, args)
    }

    /// Reads a slice of tensor `name` into `dst` (exactly the plan's byte length).
    fn read_slice_into(
        &self,
        name: &str,
        plan: &SlicePlan,
        dst: &mut [u8],
    ) -> Result<(), FormatError> {
        let info = self.header().tensor(name)?;
        let (start, end) = info.data_offsets;
        plan.fill(dst, |off, buf| {
            match off
                .checked_add(buf.len())
                .and_then(|e| e.checked_add(start))
            {
                Some(e) if e <= end => {}
                _ => {
                    return Err(FormatError::InvalidSlice {
                        tensor: name.to_owned(),
                        reason: format!("run {off}+{} exceeds the tensor", buf.len()),
                    })
                }
            }
            self.read_at(start + off, buf)
        })
    }

    /// Reads a slice of tensor `name` into a new tensor.
    fn read_slice(&self, name: &str, args: &[SliceArg]) -> Result<OwnedTensor, FormatError> {
        let info = self.header().tensor(name)?;
        let plan = slice::plan(name, info, args)?;
        let mut data = vec![0u8; plan.byte_len()];
        self.read_slice_into(name, &plan, &mut data)?;
        Ok(OwnedTensor {
            dtype: info.dtype,
            shape: plan.shape().to_vec(),
            data,
        })
    }
}

fn view_in<'a>(data: &'a [u8], info: &TensorInfo) -> Result<TensorView<'a>, FormatError> {
    let (s, e) = info.data_offsets;
    let bytes = data.get(s..e).ok_or(FormatError::BufferLengthMismatch {
        expected: e as u64,
        found: data.len() as u64,
    })?;
    Ok(TensorView::new_unchecked(
        info.dtype,
        info.shape.clone(),
        bytes,
    ))
}

/// Every tensor of `header` as a view into `data`, in file order.
///
/// `data` must be the data buffer `header` was validated against (both
/// readers check this before handing out a reader), so every range lies
/// inside it; an out-of-range entry would yield an empty view, never a panic.
fn views_in<'h, 'd: 'h>(
    header: &'h Header,
    data: &'d [u8],
) -> impl Iterator<Item = (&'h str, TensorView<'d>)> + 'h {
    header.tensors().iter().map(move |(n, info)| {
        let (s, e) = info.data_offsets;
        let bytes = data.get(s..e).unwrap_or_default();
        (
            n.as_str(),
            TensorView::new_unchecked(info.dtype, info.shape.clone(), bytes),
        )
    })
}

fn read_in(data: &[u8], offset: usize, buf: &mut [u8]) -> Result<(), FormatError> {
    let src = offset
        .checked_add(buf.len())
        .and_then(|end| data.get(offset..end))
        .ok_or(FormatError::BufferLengthMismatch {
            expected: offset.saturating_add(buf.len()) as u64,
            found: data.len() as u64,
        })?;
    buf.copy_from_slice(src);
    Ok(())
}

/// A whole safetensors file in memory, validated, with zero-copy views.
#[derive(Debug, Clone)]
pub struct SafeTensors<'a> {
    header: Header,
    bytes: &'a [u8],
    data_start: usize,
}

impl<'a> SafeTensors<'a> {
    /// Parses and validates a whole file held in `bytes`.
    pub fn deserialize(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let FilePrefix { header, data_start } =
            Header::parse_file_prefix(bytes).map_err(|e| crate::sniff::explain(e, bytes))?;
        Ok(SafeTensors {
            header,
            bytes,
            data_start,
        })
    }

    /// A view of tensor `name`.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'a>, FormatError> {
        view_in(self.data(), self.header.tensor(name)?)
    }

    /// Tensors in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, TensorView<'a>)> + '_ {
        views_in(&self.header, self.data())
    }

    /// The data buffer (everything after the header).
    pub fn data(&self) -> &'a [u8] {
        self.bytes.get(self.data_start..).unwrap_or_default()
    }

    /// The whole file.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

impl ReadTensors for SafeTensors<'_> {
    fn header(&self) -> &Header {
        &self.header
    }
    fn data_start(&self) -> usize {
        self.data_start
    }
    fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), FormatError> {
        read_in(self.data(), offset, buf)
    }
}

/// Reads exactly `buf.len()` bytes of `file` at `offset` (a positioned
/// read: on unix the handle's file position is left alone, so several
/// threads may share the handle; on Windows `seek_read` moves it).
#[cfg(unix)]
pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

/// Reads exactly `buf.len()` bytes of `file` at `offset` (`seek_read`,
/// which also moves the handle's file position).
#[cfg(windows)]
pub fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A file whose header was read and validated, and nothing else.
struct OpenedHeader {
    /// The open file.
    file: File,
    /// Its length when opened.
    file_len: u64,
    /// The validated header.
    header: Header,
    /// Offset of the data buffer.
    data_start: usize,
}

/// Opens `path` and reads and validates its header with positioned reads,
/// without reading any tensor data. A file whose header length is
/// implausible is named if it is another known format
/// ([`FormatError::NotSafetensors`]).
fn read_header_from_file(path: &Path) -> Result<OpenedHeader, FormatError> {
    // Never blocks: FIFOs, devices and directories are refused by type.
    let file = crate::open::open_regular(path).map_err(|e| FormatError::io(path, e))?;
    let meta = file.metadata().map_err(|e| FormatError::io(path, e))?;
    let file_len = meta.len();
    let mut prefix = [0u8; 8];
    if file_len < 8 {
        return Err(FormatError::FileTooSmall { len: file_len });
    }
    read_exact_at(&file, &mut prefix, 0).map_err(|e| FormatError::io(path, e))?;
    // Bounded by MAX_HEADER_LEN and by the file length.
    let n = match read_header_len(&prefix, file_len) {
        Ok(n) => n,
        Err(e) => {
            let mut first = vec![0u8; file_len.min(crate::sniff::SNIFF_LEN as u64) as usize];
            read_exact_at(&file, &mut first, 0).map_err(|e| FormatError::io(path, e))?;
            return Err(crate::sniff::explain(e, &first));
        }
    };
    let mut json = vec![0u8; n];
    read_exact_at(&file, &mut json, 8).map_err(|e| FormatError::io(path, e))?;
    let header = Header::parse(&json)?;
    let data_start = 8 + n;
    header.check_data_len(file_len - data_start as u64)?;
    Ok(OpenedHeader {
        file,
        file_len,
        header,
        data_start,
    })
}

/// A file read with positioned reads (`pread`); it never maps memory, for
/// filesystems where mmap is unavailable or unwanted.
#[derive(Debug)]
pub struct PreadFile {
    file: File,
    path: PathBuf,
    header: Header,
    data_start: usize,
    file_len: u64,
}

impl PreadFile {
    /// Opens `path` and validates its header (only the header is read).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FormatError> {
        let path = path.as_ref();
        let OpenedHeader {
            file,
            file_len,
            header,
            data_start,
        } = read_header_from_file(path)?;
        Ok(PreadFile {
            file,
            path: path.to_owned(),
            header,
            data_start,
            file_len,
        })
    }

    /// Length of the file when it was opened.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file handle.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The validated header, keeping nothing else (the file is closed).
    pub fn into_header(self) -> Header {
        self.header
    }
}

impl ReadTensors for PreadFile {
    fn header(&self) -> &Header {
        &self.header
    }
    fn data_start(&self) -> usize {
        self.data_start
    }
    fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), FormatError> {
        let data_len = self.header.data_len();
        match offset.checked_add(buf.len()) {
            Some(end) if end <= data_len => {}
            _ => {
                return Err(FormatError::BufferLengthMismatch {
                    expected: offset.saturating_add(buf.len()) as u64,
                    found: data_len as u64,
                })
            }
        }
        read_exact_at(&self.file, buf, (self.data_start + offset) as u64)
            .map_err(|e| FormatError::io(&self.path, e))
    }
}

/// A file mapped into memory, opened lazily: opening reads only the header
/// (with positioned reads) and maps the file without touching its data pages.
#[derive(Debug)]
pub struct MmapFile {
    map: memmap2::Mmap,
    path: PathBuf,
    header: Header,
    data_start: usize,
}

impl MmapFile {
    /// Opens and validates `path`; tensor data is paged in only when used.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FormatError> {
        let path = path.as_ref();
        let OpenedHeader {
            file,
            file_len,
            header,
            data_start,
        } = read_header_from_file(path)?;
        let map = map_file(&file).map_err(|e| FormatError::io(path, e))?;
        if map.len() as u64 != file_len {
            // The file changed size between the header read and the map.
            return Err(FormatError::BufferLengthMismatch {
                expected: file_len - data_start as u64,
                found: (map.len() as u64).saturating_sub(data_start as u64),
            });
        }
        Ok(MmapFile {
            map,
            path: path.to_owned(),
            header,
            data_start,
        })
    }

    /// A zero-copy view of tensor `name`.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>, FormatError> {
        view_in(self.data(), self.header.tensor(name)?)
    }

    /// Tensors in file order, as zero-copy views.
    pub fn iter(&self) -> impl Iterator<Item = (&str, TensorView<'_>)> + '_ {
        views_in(&self.header, self.data())
    }

    /// The data buffer.
    pub fn data(&self) -> &[u8] {
        self.map.get(self.data_start..).unwrap_or_default()
    }

    /// The whole file.
    pub fn as_bytes(&self) -> &[u8] {
        &self.map
    }

    /// Length of the file when it was opened.
    pub fn file_len(&self) -> u64 {
        self.map.len() as u64
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ReadTensors for MmapFile {
    fn header(&self) -> &Header {
        &self.header
    }
    fn data_start(&self) -> usize {
        self.data_start
    }
    fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), FormatError> {
        read_in(self.data(), offset, buf)
    }
}

#[allow(unsafe_code)]
fn map_file(file: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the map is read-only and private to this process. Rust's
    // aliasing rules would be broken if another process modified or truncated
    // the file while it is mapped: a write changes bytes under a `&[u8]`, a
    // truncation makes touching the lost pages raise SIGBUS. The reference
    // implementation has the same caveat; callers that cannot rule this out
    // (shared, mutable storage) should use `PreadFile`, which never maps.
    unsafe { memmap2::MmapOptions::new().map(file) }
}
