//! An atomic file writer without fsync.
//!
//! The core's `AtomicFile` fsyncs the file and its directory on commit, which
//! is right for the CLI but makes `save_file` of a large checkpoint wait for
//! the disk; the reference Python package (whose speed users compare us
//! with) writes a temporary file and renames it without syncing. This writer
//! keeps the atomic rename and leaves durability to the OS, like the
//! reference.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tensorseal_format::FormatError;

/// Removes the temporary file on drop unless disarmed.
struct TempGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A file written under a temporary name and renamed over the target only
/// when complete, so readers never see a half-written file.
pub struct AtomicFile {
    tmp: TempGuard,
    target: PathBuf,
    out: BufWriter<File>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl AtomicFile {
    /// Creates the temporary file next to `target`.
    pub fn create(target: &Path) -> Result<AtomicFile, FormatError> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "tensors".into());
        let mut last = None;
        for _ in 0..16 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = dir.join(format!(".{base}.{}.{n}.tmp", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(f) => {
                    return Ok(AtomicFile {
                        tmp: TempGuard {
                            path: tmp,
                            armed: true,
                        },
                        target: target.to_path_buf(),
                        out: BufWriter::with_capacity(1 << 20, f),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(FormatError::io(target, e)),
            }
        }
        Err(FormatError::io(
            target,
            last.unwrap_or_else(|| io::Error::other("no temporary name")),
        ))
    }

    /// The writer for the file's bytes.
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        &mut self.out
    }

    /// Flushes and renames the temporary file over the target.
    pub fn commit(self) -> Result<(), FormatError> {
        let AtomicFile {
            mut tmp,
            target,
            out,
        } = self;
        let file = out
            .into_inner()
            .map_err(|e| FormatError::io(&target, e.into_error()))?;
        drop(file);
        std::fs::rename(&tmp.path, &target).map_err(|e| FormatError::io(&target, e))?;
        tmp.armed = false;
        Ok(())
    }
}
