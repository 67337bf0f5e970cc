//! Checkpoint sources, the second step of the pipeline: a file is opened,
//! recognised by its bytes (never its name) and handed to its source
//! module: [`torch_zip`] (torch >= 1.6 archives), [`legacy`] (pre-1.6 streams) or
//! [`npy`] (`.npy` and `.npz`). The file is mapped, never read whole;
//! pickles are read with the strict, non-executing loader; tensor bytes stay
//! in the map until the stream step copies them. [`refs`] reads the storage
//! references of a pickle, which the torch sources check against the file.

use std::path::Path;

use crate::error::ConvertError;

mod archive;
mod checkpoint;
pub(crate) mod legacy;
pub(crate) mod npy;
mod packed;
pub(crate) mod refs;
mod torch_zip;

use archive::ZipIndex;
use checkpoint::{map_file, pickle_limits};
pub use checkpoint::{Checkpoint, Format};
pub use legacy::LEGACY_MAGIC;

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
            let archive = ZipIndex::read(path, bytes)?;
            if archive.is_torch() {
                return torch_zip::open(path, map, archive);
            }
            if archive.has_npy_members() {
                return npy::open_npz(path, map, archive);
            }
            return Err(ConvertError::format(
                path,
                "zip archive without a `data.pkl` (torch) or `.npy` members (npz)",
            ));
        }
        if bytes.starts_with(npy::MAGIC) {
            return npy::open_npy(path, map);
        }
        if bytes.first() == Some(&0x80) {
            if let Ok((magic, _)) = tensorseal_pickle::load_at(bytes, 0, &pickle_limits()) {
                if legacy::is_legacy_magic(&magic) {
                    return legacy::open(path, map);
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
}
