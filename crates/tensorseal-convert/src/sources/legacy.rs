//! Source: legacy torch checkpoints (`torch.save` before 1.6): a stream of
//! pickles (magic number, protocol, sys_info, the object, the storage key
//! list) followed by each storage's element count and raw bytes.

use std::collections::HashMap;
use std::path::Path;

use tensorseal_pickle::Value;

use super::checkpoint::{pickle_limits, Checkpoint, Format, StorageData};
use super::refs;
use crate::error::ConvertError;

/// Magic number that starts a legacy (pre-1.6) torch checkpoint.
pub const LEGACY_MAGIC: u128 = 0x1950a86a20f9469cfc6c;

/// Opens a legacy checkpoint (its magic number was recognised).
pub(super) fn open(path: &Path, map: memmap2::Mmap) -> Result<Checkpoint, ConvertError> {
    let bytes: &[u8] = &map;
    let lim = pickle_limits();
    let perr = |member: &str| {
        let member = member.to_owned();
        move |e| ConvertError::Pickle {
            path: path.to_owned(),
            member: member.clone(),
            error: Box::new(e),
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
    let (sys_info, pos) = tensorseal_pickle::load_at(bytes, pos, &lim).map_err(perr("sys_info"))?;
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
        .ok_or_else(|| ConvertError::format(path, "legacy storage key list holds a non-string"))?;
    // Every reference in the object pickle, selected or not, as torch
    // resolves them all: one element size per storage (torch reads the
    // count in the units of whichever reference comes first), and each
    // reference's element count equal to the one written before the
    // storage's bytes (torch: "storage has wrong byte size").
    let uses = refs::storage_uses(&root, true).map_err(|w| ConvertError::format(path, w))?;
    let mut elem: HashMap<&str, &refs::StorageUse> = HashMap::new();
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

/// Whether `v` is the legacy magic number.
pub(super) fn is_legacy_magic(v: &Value) -> bool {
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
