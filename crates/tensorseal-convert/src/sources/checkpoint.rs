//! An opened checkpoint, whatever its source: the mapped file, the object
//! pickle (torch formats) and where each storage's bytes are. Sources build
//! it; the later steps read tensors' bytes through it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use tensorseal_pickle::{Limits, Value};

use super::packed::Packed;
use crate::error::ConvertError;
use crate::view::TensorRef;

/// The container format of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `torch.save` zip archive (torch >= 1.6).
    TorchZip,
    /// Legacy `torch.save` stream (magic number, pickles, raw storages).
    TorchLegacy,
    /// NumPy `.npy`.
    Npy,
    /// NumPy `.npz` (zip of `.npy`).
    Npz,
}

impl Format {
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Format::TorchZip => "torch zip",
            Format::TorchLegacy => "torch legacy",
            Format::Npy => "npy",
            Format::Npz => "npz",
        }
    }
}

/// Where a storage's bytes are.
#[derive(Debug, Clone)]
pub(crate) enum StorageData {
    /// A byte range of the mapped file (stored zip members, legacy storages).
    Mapped(Range<usize>),
    /// A compressed zip member, decompressed as a stream when needed (never whole).
    Compressed(Packed),
    /// Bytes held in the pickle itself (NumPy arrays inside a checkpoint).
    Inline(Vec<u8>),
}
/// An opened checkpoint file.
pub struct Checkpoint {
    pub(super) path: PathBuf,
    pub(super) map: memmap2::Mmap,
    /// The same file, for positioned reads of contiguous tensors (page cache
    /// only: the process's resident memory does not grow with the file).
    pub(super) file: Option<File>,
    pub(super) format: Format,
    pub(super) root: Value,
    pub(super) storages: HashMap<String, StorageData>,
    pub(super) big_endian: bool,
    /// NumPy files: their tensors, found without a pickle.
    pub(super) npy_tensors: Vec<(String, TensorRef)>,
}

pub(super) fn map_file(path: &Path) -> Result<memmap2::Mmap, ConvertError> {
    // Never blocks: FIFOs, devices and directories are refused by type.
    let file = tensorseal_format::open_regular(path).map_err(|e| ConvertError::io(path, e))?;
    // SAFETY: the map is read-only and private. If another process truncates
    // or rewrites the checkpoint while it is converted, reads may fault or
    // see changed bytes; the verification pass compares the output with the
    // input again. This is the same contract as `tensorseal_format::MmapFile`.
    #[allow(unsafe_code)]
    let map =
        unsafe { memmap2::MmapOptions::new().map(&file) }.map_err(|e| ConvertError::io(path, e))?;
    Ok(map)
}

/// The limits every pickle of a checkpoint is read with.
pub(super) fn pickle_limits() -> Limits {
    Limits::default()
}

impl Checkpoint {
    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The object pickle (torch formats), as plain data.
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// Whether storages are big-endian (swapped on output).
    pub fn big_endian(&self) -> bool {
        self.big_endian
    }

    pub(crate) fn npy_tensors(&self) -> &[(String, TensorRef)] {
        &self.npy_tensors
    }

    /// Registers bytes found in the pickle as storage `key`.
    pub(crate) fn add_inline(&mut self, key: String, bytes: Vec<u8>) {
        self.storages.insert(key, StorageData::Inline(bytes));
    }

    /// Where a storage lies in the file, when it is stored uncompressed.
    pub(crate) fn storage_range(&self, key: &str) -> Option<Range<usize>> {
        match self.entry(key) {
            Some(StorageData::Mapped(r)) => Some(r.clone()),
            _ => None,
        }
    }

    /// The storage named `key`: torch zips look `data/<key>` up ignoring
    /// ASCII case, so their keys are matched lowercased.
    fn entry(&self, key: &str) -> Option<&StorageData> {
        match self.storages.get(key) {
            Some(d) => Some(d),
            None if self.format == Format::TorchZip => self.storages.get(&key.to_ascii_lowercase()),
            None => None,
        }
    }

    /// Bytes of tensor data the input holds: the file's length plus the
    /// inflated size of its compressed storages and the bytes of arrays
    /// held in its pickle. [`crate::Options::max_output_size`]'s default is
    /// relative to it.
    pub fn data_bytes(&self) -> u64 {
        let mut n = self.map.len() as u64;
        for d in self.storages.values() {
            n = n.saturating_add(match d {
                StorageData::Mapped(_) => 0,
                StorageData::Compressed(p) => p.size,
                StorageData::Inline(b) => b.len() as u64,
            });
        }
        n
    }

    /// Whether [`Checkpoint::read_at`] reads (positioned reads on unix);
    /// otherwise callers use the map.
    pub(crate) fn can_read_at(&self) -> bool {
        cfg!(unix) && self.file.is_some()
    }

    /// Reads `buf.len()` bytes at file offset `at` with a positioned read.
    pub(crate) fn read_at(&self, at: usize, buf: &mut [u8]) -> Result<bool, ConvertError> {
        #[cfg(unix)]
        if let Some(f) = &self.file {
            tensorseal_format::read_exact_at(f, buf, at as u64)
                .map_err(|e| ConvertError::io(&self.path, e))?;
            return Ok(true);
        }
        let _ = (at, buf);
        Ok(false)
    }

    /// The bytes of a storage (borrowed from the map, or inflated).
    pub(crate) fn storage(&self, key: &str) -> Result<Cow<'_, [u8]>, ConvertError> {
        match self.entry(key) {
            Some(StorageData::Mapped(r)) => {
                self.map.get(r.clone()).map(Cow::Borrowed).ok_or_else(|| {
                    ConvertError::format(&self.path, format!("storage `{key}` outside the file"))
                })
            }
            Some(StorageData::Inline(b)) => Ok(Cow::Borrowed(b)),
            Some(StorageData::Compressed(p)) => {
                Ok(Cow::Owned(p.prefix(&self.path, &self.map, p.size)?))
            }
            None => Err(self.missing(key)),
        }
    }

    fn missing(&self, key: &str) -> ConvertError {
        ConvertError::format(
            &self.path,
            format!("storage `{key}` is referenced but not in the file"),
        )
    }

    /// The size of a storage in bytes, without decompressing it (a compressed member's
    /// declared size: reading checks it).
    pub(crate) fn storage_len(&self, key: &str) -> Result<usize, ConvertError> {
        match self.storages.get(key) {
            Some(StorageData::Mapped(r)) => Ok(r.len()),
            Some(StorageData::Inline(b)) => Ok(b.len()),
            Some(StorageData::Compressed(p)) => usize::try_from(p.size).map_err(|_| {
                ConvertError::format(
                    &self.path,
                    format!("storage `{key}` of {} bytes is too large", p.size),
                )
            }),
            None => Err(self.missing(key)),
        }
    }

    /// Whether a storage is a compressed member (streamed, see [`Checkpoint::stream_storage`]).
    pub(crate) fn is_compressed(&self, key: &str) -> bool {
        matches!(self.storages.get(key), Some(StorageData::Compressed(_)))
    }

    /// Decompresses bytes `from..from + len` of a compressed storage through a buffer of
    /// at most a MiB, handing them to `sink`; nothing after the range is decompressed.
    pub(crate) fn stream_storage(
        &self,
        key: &str,
        from: usize,
        len: usize,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), ConvertError>,
    ) -> Result<(), ConvertError> {
        match self.storages.get(key) {
            Some(StorageData::Compressed(p)) => {
                p.stream(&self.path, &self.map, from as u64, len as u64, sink)
            }
            Some(_) => {
                let s = self.storage(key)?;
                let bytes = s.get(from..from.saturating_add(len)).ok_or_else(|| {
                    ConvertError::format(
                        &self.path,
                        format!("storage `{key}`: range out of bounds"),
                    )
                })?;
                sink(bytes)
            }
            None => Err(self.missing(key)),
        }
    }

    /// The first `len` bytes of a storage: a compressed member is decompressed only that
    /// far (a strided view needs random access up to its last element).
    pub(crate) fn storage_upto(
        &self,
        key: &str,
        len: usize,
    ) -> Result<Cow<'_, [u8]>, ConvertError> {
        match self.storages.get(key) {
            Some(StorageData::Compressed(p)) => {
                Ok(Cow::Owned(p.prefix(&self.path, &self.map, len as u64)?))
            }
            _ => self.storage(key),
        }
    }
}
