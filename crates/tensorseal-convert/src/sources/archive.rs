//! The zip container shared by torch zip checkpoints and npz archives: its
//! central directory, read as torch's reader (miniz) reads it and refusing
//! archives that readers disagree on (prepended bytes, duplicate names, a
//! local header naming another member).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;

use super::checkpoint::StorageData;
use super::packed::Packed;
use crate::error::ConvertError;

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
    /// Where this member's bytes are, as a storage.
    pub(super) fn data(&self, name: &str) -> StorageData {
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
    pub(super) names: Vec<(String, ZipEntry)>,
}

impl ZipIndex {
    pub(super) fn read(path: &Path, bytes: &[u8]) -> Result<ZipIndex, ConvertError> {
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

    /// Whether a member is named like a NumPy array (an npz archive).
    pub(super) fn has_npy_members(&self) -> bool {
        self.names.iter().any(|(n, _)| n.ends_with(".npy"))
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
    pub(super) fn is_torch(&self) -> bool {
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
    pub(super) fn torch_prefix(&self, path: &Path) -> Result<String, ConvertError> {
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
    pub(super) fn find_record(
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

    pub(super) fn read_member<'m>(
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
