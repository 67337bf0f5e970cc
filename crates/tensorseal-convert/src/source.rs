//! Opening checkpoints: torch zip, legacy torch, NumPy `.npy`/`.npz`. The file
//! is mapped, never read whole; pickles are read with the strict,
//! non-executing loader; tensor bytes stay in the map until written.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Cursor, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

use tensorseal_format::Dtype;
use tensorseal_pickle::{Limits, Value};

use crate::npy;
use crate::tensor::{self, TensorRef};
use crate::ConvertError;

/// Magic number that starts a legacy (pre-1.6) torch checkpoint.
pub const LEGACY_MAGIC: u128 = 0x1950a86a20f9469cfc6c;

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

/// Where a compressed zip member's bytes are and how to decode them.
#[derive(Debug, Clone)]
pub(crate) struct Packed {
    member: String,
    /// Compressed bytes in the map.
    raw: Range<usize>,
    method: u16,
    /// Declared uncompressed size.
    size: u64,
    crc: u32,
}

/// Largest LZMA dictionary a member may declare.
const DICT_LIMIT: u64 = 256 << 20;
/// Decompression buffer: what a compressed member costs in memory.
const STREAM_CHUNK: usize = 1 << 20;

/// A reader that CRC-32s what passes through it.
struct Crc<R> {
    inner: R,
    hasher: crc32fast::Hasher,
    read: u64,
}

impl<R: Read> Read for Crc<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or(&[]));
        self.read += n as u64;
        Ok(n)
    }
}

impl Packed {
    fn open<'m>(
        &self,
        path: &Path,
        map: &'m [u8],
    ) -> Result<Crc<Box<dyn Read + 'm>>, ConvertError> {
        let raw = map.get(self.raw.clone()).ok_or_else(|| {
            ConvertError::format(
                path,
                format!("zip member `{}` outside the file", self.member),
            )
        })?;
        let r = tensorseal_codec::zip_member(self.method, raw, self.size, DICT_LIMIT)
            .map_err(|e| self.err(path, e))?;
        Ok(Crc {
            inner: r,
            hasher: crc32fast::Hasher::new(),
            read: 0,
        })
    }

    fn err(&self, path: &Path, e: tensorseal_codec::CodecError) -> ConvertError {
        ConvertError::format(path, format!("zip member `{}`: {e}", self.member))
    }

    fn io_err(&self, path: &Path, e: std::io::Error) -> ConvertError {
        self.err(path, tensorseal_codec::CodecError::from_io("zip member", e))
    }

    /// Decodes bytes `from..from + len` of the member, handing them to `sink` in pieces of
    /// at most [`STREAM_CHUNK`]; bytes before `from` go through the same buffer, bytes
    /// after the range are not decoded. When the range reaches the declared end, the
    /// stream must end there and its CRC-32 must match, as torch and zipfile require.
    fn stream(
        &self,
        path: &Path,
        map: &[u8],
        from: u64,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), ConvertError>,
    ) -> Result<(), ConvertError> {
        let end = from
            .checked_add(len)
            .filter(|&e| e <= self.size)
            .ok_or_else(|| {
                ConvertError::format(
                    path,
                    format!(
                        "bytes {from}+{len} of zip member `{}` are past its size {}",
                        self.member, self.size
                    ),
                )
            })?;
        let mut r = self.open(path, map)?;
        let skipped = tensorseal_codec::skip(&mut r, from).map_err(|e| self.io_err(path, e))?;
        let short = |got: u64| {
            ConvertError::format(
                path,
                format!(
                    "zip member `{}` decompresses to {got} bytes, fewer than the {} it declares",
                    self.member, self.size
                ),
            )
        };
        if skipped < from {
            return Err(short(skipped));
        }
        let mut buf = vec![
            0u8;
            STREAM_CHUNK
                .min(usize::try_from(len).unwrap_or(STREAM_CHUNK))
                .max(1)
        ];
        let mut left = len;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let piece = buf.get_mut(..want).unwrap_or(&mut []);
            let n = r.read(piece).map_err(|e| self.io_err(path, e))?;
            if n == 0 {
                return Err(short(r.read));
            }
            sink(piece.get(..n).unwrap_or(&[]))?;
            left -= n as u64;
        }
        if end == self.size {
            let mut probe = [0u8; 1];
            if r.read(&mut probe).map_err(|e| self.io_err(path, e))? != 0 {
                return Err(ConvertError::format(
                    path,
                    format!(
                        "zip member `{}` decompresses to more than the {} bytes it declares",
                        self.member, self.size
                    ),
                ));
            }
            let crc = r.hasher.clone().finalize();
            if crc != self.crc {
                return Err(ConvertError::format(
                    path,
                    format!(
                        "zip member `{}` has CRC-32 0x{crc:08x}, the archive records 0x{:08x}",
                        self.member, self.crc
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The first `len` bytes of the member (fewer if it is shorter).
    fn prefix(&self, path: &Path, map: &[u8], len: u64) -> Result<Vec<u8>, ConvertError> {
        let mut out = Vec::new();
        let mut r = self.open(path, map)?;
        (&mut r)
            .take(len.min(self.size))
            .read_to_end(&mut out)
            .map_err(|e| self.io_err(path, e))?;
        Ok(out)
    }
}

/// An opened checkpoint file.
pub struct Checkpoint {
    path: PathBuf,
    map: memmap2::Mmap,
    /// The same file, for positioned reads of contiguous tensors (page cache
    /// only: the process's resident memory does not grow with the file).
    file: Option<File>,
    format: Format,
    root: Value,
    storages: HashMap<String, StorageData>,
    big_endian: bool,
    /// NumPy files: their tensors, found without a pickle.
    npy_tensors: Vec<(String, TensorRef)>,
}

fn map_file(path: &Path) -> Result<memmap2::Mmap, ConvertError> {
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

fn pickle_limits() -> Limits {
    Limits::default()
}

impl Checkpoint {
    /// Opens `path`, detecting its format from its bytes (never its name).
    pub fn open(path: impl AsRef<Path>) -> Result<Checkpoint, ConvertError> {
        let path = path.as_ref();
        let mut ck = Self::open_mapped(path, map_file(path)?)?;
        ck.file =
            Some(tensorseal_format::open_regular(path).map_err(|e| ConvertError::io(path, e))?);
        Ok(ck)
    }

    fn open_mapped(path: &Path, map: memmap2::Mmap) -> Result<Checkpoint, ConvertError> {
        let bytes: &[u8] = &map;
        if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
            let zip = ZipIndex::read(path, bytes)?;
            if zip.is_torch() {
                return Self::open_torch_zip(path, map, zip);
            }
            if zip.names.iter().any(|(n, _)| n.ends_with(".npy")) {
                return Self::open_npz(path, map, zip);
            }
            return Err(ConvertError::format(
                path,
                "zip archive without a `data.pkl` (torch) or `.npy` members (npz)",
            ));
        }
        if bytes.starts_with(npy::MAGIC) {
            let (tref, _) = npy::parse(path, bytes, 0, "array")?;
            return Ok(Checkpoint {
                path: path.to_owned(),
                format: Format::Npy,
                root: Value::None,
                storages: HashMap::from([(
                    "array".to_owned(),
                    StorageData::Mapped(0..bytes.len()),
                )]),
                big_endian: false,
                npy_tensors: vec![(String::new(), tref)],
                map,
                file: None,
            });
        }
        if bytes.first() == Some(&0x80) {
            if let Ok((magic, _)) = tensorseal_pickle::load_at(bytes, 0, &pickle_limits()) {
                if is_legacy_magic(&magic) {
                    return Self::open_legacy(path, map);
                }
            }
            return Err(ConvertError::format(
                path,
                "a bare pickle, not a torch checkpoint (no zip archive, no legacy magic number); tensor data would be missing",
            ));
        }
        Err(ConvertError::format(
            path,
            "not a torch checkpoint (zip or legacy) or NumPy file",
        ))
    }

    fn open_torch_zip(
        path: &Path,
        map: memmap2::Mmap,
        zip: ZipIndex,
    ) -> Result<Checkpoint, ConvertError> {
        let prefix = zip.torch_prefix(path)?;
        let pkl_name = zip
            .find_record(path, &prefix, "data.pkl")?
            .ok_or_else(|| ConvertError::format(path, format!("no `{prefix}data.pkl` record")))?;
        let pkl = zip.read_member(path, &map, &pkl_name, 1 << 31)?;
        let root =
            tensorseal_pickle::load(&pkl, &pickle_limits()).map_err(|e| ConvertError::Pickle {
                path: path.to_owned(),
                member: pkl_name.clone(),
                source: Box::new(e),
            })?;
        // As torch: the record holds exactly `little` or `big` (no case
        // change, no whitespace), anything else is an error; without one the
        // data is read as little-endian (torch's default load endianness).
        let big_endian = match zip.find_record(path, &prefix, "byteorder")? {
            Some(name) => {
                let b = zip.read_member(path, &map, &name, 64)?;
                match b.as_ref() {
                    b"little" => false,
                    b"big" => true,
                    other => {
                        return Err(ConvertError::format(
                            path,
                            format!(
                                "byteorder record `{name}` holds {:?}, neither `little` nor `big` (torch refuses it too)",
                                String::from_utf8_lossy(other)
                            ),
                        ))
                    }
                }
            }
            None => false,
        };
        // torch finds `data/<key>` ignoring case: keys are stored lowercased
        // (no two members differ only in case, `torch_prefix` checked it).
        let mut storages = HashMap::new();
        for (name, entry) in &zip.names {
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            if rest.len() > 5 && rest.is_char_boundary(5) && rest[..5].eq_ignore_ascii_case("data/")
            {
                let key = &rest[5..];
                if !key.contains('/') {
                    storages.insert(key.to_ascii_lowercase(), entry.data(name));
                }
            }
        }
        check_zip_storage_sizes(path, &root, &storages)?;
        Ok(Checkpoint {
            path: path.to_owned(),
            map,
            file: None,
            format: Format::TorchZip,
            root,
            storages,
            big_endian,
            npy_tensors: Vec::new(),
        })
    }

    fn open_legacy(path: &Path, map: memmap2::Mmap) -> Result<Checkpoint, ConvertError> {
        let bytes: &[u8] = &map;
        let lim = pickle_limits();
        let perr = |member: &str| {
            let member = member.to_owned();
            move |e| ConvertError::Pickle {
                path: path.to_owned(),
                member: member.clone(),
                source: Box::new(e),
            }
        };
        let (_, pos) = tensorseal_pickle::load_at(bytes, 0, &lim).map_err(perr("magic number"))?;
        let (proto, pos) =
            tensorseal_pickle::load_at(bytes, pos, &lim).map_err(perr("protocol version"))?;
        if proto.as_int() != Some(1001) {
            return Err(ConvertError::format(
                path,
                format!("legacy protocol version {proto:?}, expected 1001"),
            ));
        }
        let (sys_info, pos) =
            tensorseal_pickle::load_at(bytes, pos, &lim).map_err(perr("sys_info"))?;
        // torch reads legacy storages (their element counts and their data)
        // as little-endian whatever `sys_info` says: its writer stored them
        // little-endian on every machine. So `little_endian` is ignored.
        let _ = sys_info;
        let big_endian = false;
        let (root, pos) =
            tensorseal_pickle::load_at(bytes, pos, &lim).map_err(perr("object pickle"))?;
        let (keys, mut pos) =
            tensorseal_pickle::load_at(bytes, pos, &lim).map_err(perr("storage key list"))?;
        let keys: Vec<String> = keys
            .as_seq()
            .ok_or_else(|| ConvertError::format(path, "legacy storage key list is not a list"))?
            .iter()
            .map(|k| k.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                ConvertError::format(path, "legacy storage key list holds a non-string")
            })?;
        // Every reference in the object pickle, selected or not, as torch
        // resolves them all: one element size per storage (torch reads the
        // count in the units of whichever reference comes first), and each
        // reference's element count equal to the one written before the
        // storage's bytes (torch: "storage has wrong byte size").
        let uses = tensor::storage_uses(&root, true).map_err(|w| ConvertError::format(path, w))?;
        let mut elem: HashMap<&str, &tensor::StorageUse> = HashMap::new();
        for u in &uses {
            if let Some(first) = elem.insert(&u.key, u) {
                if first.elem != u.elem {
                    return Err(ConvertError::format(
                        path,
                        format!(
                            "legacy storage `{}` is referenced as `{}` and `{}`, whose element sizes differ ({} and {} bytes): torch reads its element count in the units of whichever comes first, so convert refuses it",
                            u.key, first.type_name, u.type_name, first.elem, u.elem
                        ),
                    ));
                }
            }
        }
        if let Some(u) = uses.iter().find(|u| !keys.contains(&u.key)) {
            return Err(ConvertError::format(
                path,
                format!(
                    "storage `{}` is referenced but not in the storage key list (its bytes are not in the file)",
                    u.key
                ),
            ));
        }
        let mut storages = HashMap::new();
        for key in keys {
            let es = elem
                .get(key.as_str())
                .map(|u| u.elem as usize)
                .ok_or_else(|| {
                    ConvertError::format(
                        path,
                        format!("storage `{key}` is listed but no tensor names its type"),
                    )
                })?;
            let hdr = bytes.get(pos..pos + 8).ok_or_else(|| {
                ConvertError::format(path, format!("storage `{key}` truncated at byte {pos}"))
            })?;
            let mut a = [0u8; 8];
            a.copy_from_slice(hdr);
            let numel = u64::from_le_bytes(a);
            let len = usize::try_from(numel)
                .ok()
                .and_then(|n| n.checked_mul(es))
                .ok_or_else(|| {
                    ConvertError::format(path, format!("storage `{key}` size {numel} overflows"))
                })?;
            if let Some(u) = uses.iter().find(|u| u.key == key && u.numel != numel) {
                return Err(ConvertError::format(
                    path,
                    format!(
                        "legacy storage `{key}` holds {numel} elements but is referenced as {} elements of `{}`: torch refuses the file (storage has wrong byte size)",
                        u.numel, u.type_name
                    ),
                ));
            }
            let start = pos + 8;
            let end = start
                .checked_add(len)
                .filter(|&e| e <= bytes.len())
                .ok_or_else(|| {
                    ConvertError::format(
                        path,
                        format!("storage `{key}` ({numel} elements at byte {start}) runs past the end of the file"),
                    )
                })?;
            storages.insert(key, StorageData::Mapped(start..end));
            pos = end;
        }
        Ok(Checkpoint {
            path: path.to_owned(),
            map,
            file: None,
            format: Format::TorchLegacy,
            root,
            storages,
            big_endian,
            npy_tensors: Vec::new(),
        })
    }

    fn open_npz(
        path: &Path,
        map: memmap2::Mmap,
        zip: ZipIndex,
    ) -> Result<Checkpoint, ConvertError> {
        let mut npy_tensors = Vec::new();
        let mut storages = HashMap::new();
        for (stem, name) in npz_keys(&zip) {
            let Some((_, entry)) = zip.names.iter().find(|(n, _)| *n == name) else {
                continue;
            };
            let name = &name;
            let data = entry.data(name);
            let bytes: Cow<[u8]> = match &data {
                StorageData::Mapped(r) => Cow::Borrowed(map.get(r.clone()).unwrap_or(&[])),
                StorageData::Inline(b) => Cow::Borrowed(b.as_slice()),
                // The header only (numpy caps it far below this); the data is streamed
                // when the tensor is written.
                StorageData::Compressed(p) => Cow::Owned(p.prefix(path, &map, NPY_HEADER_MAX)?),
            };
            if !name.ends_with(".npy") && !bytes.starts_with(npy::MAGIC) {
                // numpy.load returns such a member as raw bytes, not an array.
                continue;
            }
            let (tref, _) = npy::parse(path, &bytes, 0, name)?;
            storages.insert(name.clone(), data);
            npy_tensors.push((stem, tref));
        }
        Ok(Checkpoint {
            path: path.to_owned(),
            map,
            file: None,
            format: Format::Npz,
            root: Value::None,
            storages,
            big_endian: false,
            npy_tensors,
        })
    }

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

/// torch's zip reader loads each storage from its `data/<key>` record
/// (found ignoring case) and refuses the file when the record is missing or
/// its size (uncompressed) is not the reference's numel × element size.
/// Checked for every reference of the pickle, selected or not, since torch
/// resolves them all; torch checks only the first reference of each dtype,
/// so this refuses a few files torch loads, never the reverse.
fn check_zip_storage_sizes(
    path: &Path,
    root: &Value,
    storages: &HashMap<String, StorageData>,
) -> Result<(), ConvertError> {
    for u in tensor::storage_uses(root, false).map_err(|w| ConvertError::format(path, w))? {
        let data = storages.get(&u.key.to_ascii_lowercase()).ok_or_else(|| {
            ConvertError::format(
                path,
                format!(
                    "storage `{}` is referenced but not in the file (no `data/{}` record): torch refuses the file",
                    u.key, u.key
                ),
            )
        })?;
        let size = match data {
            StorageData::Mapped(r) => r.len() as u64,
            StorageData::Compressed(p) => p.size,
            StorageData::Inline(b) => b.len() as u64,
        };
        let nbytes = u.numel.checked_mul(u.elem);
        if nbytes != Some(size) {
            return Err(ConvertError::format(
                path,
                format!(
                    "storage `{}` is referenced as {} elements of `{}` ({} bytes each), but its record holds {size} bytes: torch refuses the file (record size does not match)",
                    u.key, u.numel, u.type_name, u.elem
                ),
            ));
        }
    }
    Ok(())
}

/// Most bytes read to parse an `.npy` header inside a compressed npz member.
const NPY_HEADER_MAX: u64 = (1 << 20) + 16;

/// The arrays of an npz as `numpy.load` names them: each member's name
/// without its `.npy` suffix is a key, and key `k` reads member `k` if one
/// has exactly that name, else member `k.npy`. So `a` and `a.npy` are one
/// key (member `a`), and key `a.npy` reads member `a.npy`, not
/// `a.npy.npy`. Members that are not `.npy` data are raw bytes to numpy,
/// not arrays, and are skipped. (Two members with one name were refused by
/// [`ZipIndex::read`].)
fn npz_keys(zip: &ZipIndex) -> Vec<(String, String)> {
    let seen: std::collections::HashSet<&str> = zip.names.iter().map(|(n, _)| n.as_str()).collect();
    let mut keys: Vec<(String, String)> = Vec::new();
    for (n, _) in &zip.names {
        let key = n.strip_suffix(".npy").unwrap_or(n);
        if keys.iter().any(|(k, _)| k == key) {
            continue;
        }
        let member = if seen.contains(key) {
            key.to_owned()
        } else {
            n.clone()
        };
        keys.push((key.to_owned(), member));
    }
    keys
}

fn is_legacy_magic(v: &Value) -> bool {
    match v {
        Value::BigInt(b) => {
            let mut a = [0u8; 16];
            if b.len() > 16 {
                return false;
            }
            for (d, s) in a.iter_mut().zip(b) {
                *d = *s;
            }
            u128::from_le_bytes(a) == LEGACY_MAGIC
        }
        _ => false,
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ZipEntry {
    data_start: u64,
    size: u64,
    compressed_size: u64,
    stored: bool,
    method: u16,
    crc: u32,
}

impl ZipEntry {
    fn data(&self, name: &str) -> StorageData {
        if self.stored {
            let s = self.data_start as usize;
            StorageData::Mapped(s..s + self.size as usize)
        } else {
            let s = usize::try_from(self.data_start).unwrap_or(usize::MAX);
            let e = usize::try_from(self.compressed_size)
                .ok()
                .and_then(|c| s.checked_add(c))
                .unwrap_or(usize::MAX);
            StorageData::Compressed(Packed {
                member: name.to_owned(),
                raw: s..e,
                method: self.method,
                size: self.size,
                crc: self.crc,
            })
        }
    }
}

/// The central directory of a zip in memory: names, data offsets.
pub(crate) struct ZipIndex {
    names: Vec<(String, ZipEntry)>,
}

impl ZipIndex {
    pub(crate) fn read(path: &Path, bytes: &[u8]) -> Result<ZipIndex, ConvertError> {
        let zerr = |e: zip::result::ZipError| {
            ConvertError::format(path, format!("invalid zip archive: {e}"))
        };
        let mut z = zip::ZipArchive::new(Cursor::new(bytes)).map_err(zerr)?;
        check_end_record(path, bytes, z.central_directory_start())?;
        // The zip crate keeps one entry per name (the last); torch's reader
        // and Python's zipfile do not agree on which of two same-named
        // members they read. Count the central directory's records and
        // refuse an archive where two share a name.
        let records = central_directory_records(bytes, z.central_directory_start());
        if records != z.len() {
            return Err(ConvertError::format(
                path,
                format!(
                    "zip archive has {records} central directory records but {} distinct member names: two members share a name, and readers disagree on which one they read",
                    z.len()
                ),
            ));
        }
        let mut names = Vec::with_capacity(z.len());
        for i in 0..z.len() {
            let f = z.by_index_raw(i).map_err(zerr)?;
            let name = f.name().to_owned();
            check_local_name(path, bytes, f.header_start(), f.name_raw())?;
            let data_start = f.data_start();
            let e = ZipEntry {
                data_start,
                size: f.size(),
                compressed_size: f.compressed_size(),
                stored: f.compression() == zip::CompressionMethod::Stored && !f.encrypted(),
                #[allow(deprecated)]
                method: if f.encrypted() {
                    u16::MAX
                } else {
                    f.compression().to_u16()
                },
                crc: f.crc32(),
            };
            if e.stored
                && (e.compressed_size != e.size
                    || data_start
                        .checked_add(e.size)
                        .is_none_or(|end| end > bytes.len() as u64))
            {
                return Err(ConvertError::format(
                    path,
                    format!("zip member `{name}` runs past the end of the file"),
                ));
            }
            names.push((name, e));
        }
        Ok(ZipIndex { names })
    }

    fn get(&self, name: &str) -> Option<&ZipEntry> {
        self.names.iter().find(|(n, _)| n == name).map(|(_, e)| e)
    }

    /// The folder torch's reader resolves records in: the first member's
    /// name up to its first `/`, slash included, if any.
    fn first_folder(&self) -> Option<&str> {
        let (first, _) = self.names.first()?;
        first.find('/').map(|i| &first[..=i])
    }

    /// Whether this is a torch zip as torch's reader sees it: the first
    /// member's folder holds a `data.pkl` (under any case).
    fn is_torch(&self) -> bool {
        self.first_folder().is_some_and(|p| {
            self.names.iter().any(|(n, _)| {
                n.strip_prefix(p)
                    .is_some_and(|r| r.eq_ignore_ascii_case("data.pkl"))
            })
        })
    }

    /// The folder of a torch zip, checked as torch's reader checks it (every
    /// member in that folder), and with no two members whose names differ
    /// only in ASCII case: torch looks records up ignoring case, and which
    /// of two such members it would read depends on its search order.
    fn torch_prefix(&self, path: &Path) -> Result<String, ConvertError> {
        let prefix = self
            .first_folder()
            .ok_or_else(|| {
                ConvertError::format(path, "torch zip: first member is not in a folder")
            })?
            .to_owned();
        let mut seen: HashMap<String, &str> = HashMap::new();
        for (n, _) in &self.names {
            if !n.starts_with(&prefix) {
                return Err(ConvertError::format(
                    path,
                    format!("torch zip: member `{n}` is outside the archive folder `{prefix}` (torch refuses the file)"),
                ));
            }
            if let Some(other) = seen.insert(n.to_ascii_lowercase(), n) {
                return Err(ConvertError::format(
                    path,
                    format!("torch zip: members `{other}` and `{n}` differ only in case; torch looks records up ignoring case, so which one it reads is undefined"),
                ));
            }
        }
        Ok(prefix)
    }

    /// The member holding torch record `name` of the archive folder `prefix`,
    /// matched ignoring ASCII case as torch does.
    fn find_record(
        &self,
        path: &Path,
        prefix: &str,
        name: &str,
    ) -> Result<Option<String>, ConvertError> {
        let mut found: Option<&str> = None;
        for (n, _) in &self.names {
            let hit = n.len() == prefix.len() + name.len()
                && n.is_char_boundary(prefix.len())
                && n[..prefix.len()].eq_ignore_ascii_case(prefix)
                && n[prefix.len()..].eq_ignore_ascii_case(name);
            if hit {
                if let Some(f) = found {
                    return Err(ConvertError::format(
                        path,
                        format!("torch zip: records `{f}` and `{n}` both match `{prefix}{name}` (torch ignores case)"),
                    ));
                }
                found = Some(n);
            }
        }
        Ok(found.map(str::to_owned))
    }

    fn read_member<'m>(
        &self,
        path: &Path,
        map: &'m [u8],
        name: &str,
        max: u64,
    ) -> Result<Cow<'m, [u8]>, ConvertError> {
        let e = self
            .get(name)
            .ok_or_else(|| ConvertError::format(path, format!("zip member `{name}` missing")))?;
        if e.size > max {
            return Err(ConvertError::format(
                path,
                format!(
                    "zip member `{name}` is {} bytes, over the limit of {max}",
                    e.size
                ),
            ));
        }
        if e.stored {
            let s = e.data_start as usize;
            return map
                .get(s..s + e.size as usize)
                .map(Cow::Borrowed)
                .ok_or_else(|| {
                    ConvertError::format(path, format!("zip member `{name}` outside the file"))
                });
        }
        let zerr = |e: zip::result::ZipError| {
            ConvertError::format(path, format!("invalid zip archive: {e}"))
        };
        let mut z = zip::ZipArchive::new(Cursor::new(map)).map_err(zerr)?;
        let mut f = z.by_name(name).map_err(zerr)?;
        let mut out = Vec::new();
        (&mut f)
            .take(e.size)
            .read_to_end(&mut out)
            .map_err(|err| ConvertError::format(path, format!("zip member `{name}`: {err}")))?;
        if out.len() as u64 != e.size {
            return Err(ConvertError::format(
                path,
                format!(
                    "zip member `{name}` inflates to {} bytes, not {}",
                    out.len(),
                    e.size
                ),
            ));
        }
        Ok(Cow::Owned(out))
    }
}

/// Where torch's reader (miniz) finds the central directory: the *last*
/// end-of-central-directory signature of the file's tail, its offset taken as
/// absolute (miniz does not shift offsets for bytes prepended to the
/// archive). The zip crate may pick another end record (when the last one,
/// in an archive comment say, is not valid) or shift offsets, so the two
/// must name the same central directory.
fn check_end_record(path: &Path, bytes: &[u8], cd_start: u64) -> Result<(), ConvertError> {
    const SIG: &[u8; 4] = b"PK\x05\x06";
    let last = bytes.len().saturating_sub(22);
    let first = last.saturating_sub(65535);
    let bad =
        |why: String| ConvertError::format(path, format!("zip end of central directory: {why}"));
    let at = (first..=last)
        .rev()
        .find(|&i| bytes.get(i..i + 4) == Some(&SIG[..]))
        .ok_or_else(|| bad("no record found".into()))?;
    let off = bytes
        .get(at + 16..at + 20)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    // 0xFFFFFFFF: the offset is in the zip64 record, which both read alike.
    if off != u32::MAX && u64::from(off) != cd_start {
        return Err(bad(format!(
            "the record at offset {at} puts the central directory at {off}, but it is at {cd_start} (bytes prepended to the archive: torch's reader refuses the file)"
        )));
    }
    Ok(())
}

/// A member's local header must carry the central directory's name: torch
/// looks names up in the central directory, Python's `zipfile` (numpy)
/// refuses a mismatch, and streaming readers go by the local header.
fn check_local_name(
    path: &Path,
    bytes: &[u8],
    header: u64,
    central: &[u8],
) -> Result<(), ConvertError> {
    let h = usize::try_from(header).unwrap_or(usize::MAX);
    let local = bytes
        .get(h..h.saturating_add(30))
        .filter(|l| l.starts_with(b"PK\x03\x04"))
        .and_then(|l| {
            let n = usize::from(u16::from_le_bytes([l[26], l[27]]));
            bytes.get(h + 30..h + 30 + n)
        });
    match local {
        Some(l) if l == central => Ok(()),
        Some(l) => Err(ConvertError::format(
            path,
            format!(
                "zip member `{}`: its local header names it `{}`; readers disagree on its name",
                String::from_utf8_lossy(central),
                String::from_utf8_lossy(l)
            ),
        )),
        None => Err(ConvertError::format(
            path,
            format!(
                "zip member `{}`: no local header at offset {header}",
                String::from_utf8_lossy(central)
            ),
        )),
    }
}

/// Number of consecutive central directory file headers starting at `start`.
fn central_directory_records(bytes: &[u8], start: u64) -> usize {
    let mut pos = usize::try_from(start).unwrap_or(usize::MAX);
    let mut n = 0usize;
    while let Some(h) = bytes.get(pos..pos.saturating_add(46)) {
        if !h.starts_with(b"PK\x01\x02") {
            break;
        }
        let le = |i: usize| usize::from(u16::from_le_bytes([h[i], h[i + 1]]));
        n += 1;
        pos = pos.saturating_add(46 + le(28) + le(30) + le(32));
    }
    n
}

/// The safetensors dtype of a torch storage class (`FloatStorage`, ...).
pub(crate) fn storage_dtype(name: &str) -> Option<Dtype> {
    Some(match name {
        "DoubleStorage" => Dtype::F64,
        "FloatStorage" => Dtype::F32,
        "HalfStorage" => Dtype::F16,
        "BFloat16Storage" => Dtype::BF16,
        "LongStorage" => Dtype::I64,
        "IntStorage" => Dtype::I32,
        "ShortStorage" => Dtype::I16,
        "CharStorage" => Dtype::I8,
        "ByteStorage" => Dtype::U8,
        "BoolStorage" => Dtype::BOOL,
        "ComplexFloatStorage" => Dtype::C64,
        _ => return None,
    })
}

/// The safetensors dtype of a torch dtype object (`torch.float8_e4m3fn`, ...).
pub(crate) fn torch_dtype(name: &str) -> Option<Dtype> {
    Some(match name {
        "float64" | "double" => Dtype::F64,
        "float32" | "float" => Dtype::F32,
        "float16" | "half" => Dtype::F16,
        "bfloat16" => Dtype::BF16,
        "int64" | "long" => Dtype::I64,
        "int32" | "int" => Dtype::I32,
        "int16" | "short" => Dtype::I16,
        "int8" => Dtype::I8,
        "uint8" => Dtype::U8,
        "uint16" => Dtype::U16,
        "uint32" => Dtype::U32,
        "uint64" => Dtype::U64,
        "bool" => Dtype::BOOL,
        "complex64" | "cfloat" => Dtype::C64,
        "float8_e4m3fn" => Dtype::F8_E4M3,
        "float8_e5m2" => Dtype::F8_E5M2,
        "float8_e4m3fnuz" => Dtype::F8_E4M3FNUZ,
        "float8_e5m2fnuz" => Dtype::F8_E5M2FNUZ,
        "float8_e8m0fnu" => Dtype::F8_E8M0,
        _ => return None,
    })
}

/// The torch names of a safetensors dtype: `(dtype attribute, legacy storage class)`.
pub(crate) fn torch_names(d: Dtype) -> Option<(&'static str, Option<&'static str>)> {
    Some(match d {
        Dtype::F64 => ("float64", Some("DoubleStorage")),
        Dtype::F32 => ("float32", Some("FloatStorage")),
        Dtype::F16 => ("float16", Some("HalfStorage")),
        Dtype::BF16 => ("bfloat16", Some("BFloat16Storage")),
        Dtype::I64 => ("int64", Some("LongStorage")),
        Dtype::I32 => ("int32", Some("IntStorage")),
        Dtype::I16 => ("int16", Some("ShortStorage")),
        Dtype::I8 => ("int8", Some("CharStorage")),
        Dtype::U8 => ("uint8", Some("ByteStorage")),
        Dtype::BOOL => ("bool", Some("BoolStorage")),
        Dtype::C64 => ("complex64", Some("ComplexFloatStorage")),
        Dtype::U16 => ("uint16", None),
        Dtype::U32 => ("uint32", None),
        Dtype::U64 => ("uint64", None),
        Dtype::F8_E4M3 => ("float8_e4m3fn", None),
        Dtype::F8_E5M2 => ("float8_e5m2", None),
        Dtype::F8_E4M3FNUZ => ("float8_e4m3fnuz", None),
        Dtype::F8_E5M2FNUZ => ("float8_e5m2fnuz", None),
        Dtype::F8_E8M0 => ("float8_e8m0fnu", None),
        _ => return None,
    })
}
