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
    /// A compressed zip member, inflated when needed.
    Compressed { member: String, size: u64 },
    /// Bytes held in the pickle itself (NumPy arrays inside a checkpoint).
    Inline(Vec<u8>),
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
            if zip.find_data_pkl().is_some() {
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
        let (pkl_name, prefix) = zip.find_data_pkl().unwrap_or_default();
        let pkl = zip.read_member(path, &map, &pkl_name, 1 << 31)?;
        let root =
            tensorseal_pickle::load(&pkl, &pickle_limits()).map_err(|e| ConvertError::Pickle {
                path: path.to_owned(),
                member: pkl_name.clone(),
                source: Box::new(e),
            })?;
        let big_endian = match zip.get(&format!("{prefix}byteorder")) {
            Some(_) => {
                let b = zip.read_member(path, &map, &format!("{prefix}byteorder"), 64)?;
                match b.as_ref() {
                    b"little" => false,
                    b"big" => true,
                    other => {
                        return Err(ConvertError::format(
                            path,
                            format!(
                                "byteorder record {:?} is neither `little` nor `big`",
                                String::from_utf8_lossy(other)
                            ),
                        ))
                    }
                }
            }
            None => false,
        };
        let data_prefix = format!("{prefix}data/");
        let mut storages = HashMap::new();
        for (name, entry) in &zip.names {
            if let Some(key) = name.strip_prefix(&data_prefix) {
                if !key.is_empty() && !key.contains('/') {
                    storages.insert(key.to_owned(), entry.data(name));
                }
            }
        }
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
        let big_endian = matches!(sys_info.get("little_endian"), Some(Value::Bool(false)));
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
        // Element sizes come from the storage types named in the object pickle.
        let mut elem: HashMap<String, usize> = HashMap::new();
        tensor::storage_element_sizes(&root, &mut elem);
        let mut storages = HashMap::new();
        for key in keys {
            let es = *elem.get(&key).ok_or_else(|| {
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
            let numel = if big_endian {
                u64::from_be_bytes(a)
            } else {
                u64::from_le_bytes(a)
            };
            let len = usize::try_from(numel)
                .ok()
                .and_then(|n| n.checked_mul(es))
                .ok_or_else(|| {
                    ConvertError::format(path, format!("storage `{key}` size {numel} overflows"))
                })?;
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
        for (name, entry) in &zip.names {
            let Some(stem) = name.strip_suffix(".npy") else {
                continue;
            };
            let data = entry.data(name);
            let bytes: Cow<[u8]> = match &data {
                StorageData::Mapped(r) => Cow::Borrowed(map.get(r.clone()).unwrap_or(&[])),
                StorageData::Inline(b) => Cow::Borrowed(b.as_slice()),
                StorageData::Compressed { .. } => {
                    Cow::Owned(zip.read_member(path, &map, name, u64::MAX)?.into_owned())
                }
            };
            let (tref, _) = npy::parse(path, &bytes, 0, name)?;
            storages.insert(name.clone(), data);
            npy_tensors.push((stem.to_owned(), tref));
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
        match self.storages.get(key) {
            Some(StorageData::Mapped(r)) => Some(r.clone()),
            _ => None,
        }
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
        match self.storages.get(key) {
            Some(StorageData::Mapped(r)) => {
                self.map.get(r.clone()).map(Cow::Borrowed).ok_or_else(|| {
                    ConvertError::format(&self.path, format!("storage `{key}` outside the file"))
                })
            }
            Some(StorageData::Inline(b)) => Ok(Cow::Borrowed(b)),
            Some(StorageData::Compressed { member, size }) => {
                let zip = ZipIndex::read(&self.path, &self.map)?;
                Ok(Cow::Owned(
                    zip.read_member(&self.path, &self.map, member, *size)?
                        .into_owned(),
                ))
            }
            None => Err(ConvertError::format(
                &self.path,
                format!("storage `{key}` is referenced but not in the file"),
            )),
        }
    }
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
}

impl ZipEntry {
    fn data(&self, name: &str) -> StorageData {
        if self.stored {
            let s = self.data_start as usize;
            StorageData::Mapped(s..s + self.size as usize)
        } else {
            StorageData::Compressed {
                member: name.to_owned(),
                size: self.size,
            }
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
        let mut names = Vec::with_capacity(z.len());
        for i in 0..z.len() {
            let f = z.by_index_raw(i).map_err(zerr)?;
            let name = f.name().to_owned();
            let data_start = f.data_start();
            let e = ZipEntry {
                data_start,
                size: f.size(),
                compressed_size: f.compressed_size(),
                stored: f.compression() == zip::CompressionMethod::Stored && !f.encrypted(),
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

    /// `(member name, root prefix with slash)` of the torch `data.pkl`: the
    /// one in a top-level folder of any name (torch uses the file stem).
    fn find_data_pkl(&self) -> Option<(String, String)> {
        let mut best: Option<(String, String)> = None;
        for (n, _) in &self.names {
            if let Some(prefix) = n.strip_suffix("data.pkl") {
                let top_level = prefix.is_empty()
                    || (prefix.ends_with('/') && prefix.matches('/').count() == 1);
                if top_level && best.is_none() {
                    best = Some((n.clone(), prefix.to_owned()));
                }
            }
        }
        best
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
