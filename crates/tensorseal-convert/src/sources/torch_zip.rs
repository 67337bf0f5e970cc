//! Source: torch zip checkpoints (`torch.save` since 1.6): `data.pkl` is
//! unpickled without running it, the `byteorder` record read as torch reads
//! it, and the `data/<key>` records are the storages, every reference of the
//! pickle checked against their sizes.

use std::collections::HashMap;
use std::path::Path;

use tensorseal_pickle::Value;

use super::archive::ZipIndex;
use super::checkpoint::{pickle_limits, Checkpoint, Format, StorageData};
use super::refs;
use crate::error::ConvertError;

/// Opens a torch zip checkpoint whose central directory is `zip`.
pub(super) fn open(
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
            error: Box::new(e),
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
        if rest.len() > 5 && rest.is_char_boundary(5) && rest[..5].eq_ignore_ascii_case("data/") {
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
    for u in refs::storage_uses(root, false).map_err(|w| ConvertError::format(path, w))? {
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
