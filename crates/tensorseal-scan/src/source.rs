//! Random-access byte sources: a file on disk (read in bounded ranges, never whole) or a
//! buffer in memory (an archive member).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Mutex;

/// Something that can be read at any offset.
pub trait Source: Sync {
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// Fills `buf` from `offset`; an error if the range runs past the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Whether the source is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads `len` bytes at `offset`. Callers bound `len`; this still refuses ranges past the end
/// before allocating.
pub fn read_range(src: &dyn Source, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let end = offset
        .checked_add(len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "range overflows"))?;
    if end > src.len() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "range {offset}..{end} runs past the end ({} bytes)",
                src.len()
            ),
        ));
    }
    let n = usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "range too large"))?;
    let mut buf = vec![0u8; n];
    src.read_at(offset, &mut buf)?;
    Ok(buf)
}

/// Reads up to `max` bytes from `offset` (fewer at the end of the source).
pub fn read_upto(src: &dyn Source, offset: u64, max: u64) -> io::Result<Vec<u8>> {
    let avail = src.len().saturating_sub(offset);
    read_range(src, offset.min(src.len()), avail.min(max))
}

/// A file on disk.
pub struct FileSource {
    file: Mutex<File>,
    len: u64,
}

impl FileSource {
    /// Opens a regular file for reading. FIFOs, devices, sockets and directories are
    /// refused (an `InvalidInput` error naming the type) without blocking: see
    /// [`tensorseal_format::open_regular`].
    pub fn open(path: &std::path::Path) -> io::Result<FileSource> {
        let file = tensorseal_format::open_regular(path)?;
        let len = file.metadata()?.len();
        Ok(FileSource {
            file: Mutex::new(file),
            len,
        })
    }
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut f = self
            .file
            .lock()
            .map_err(|_| io::Error::other("file lock poisoned"))?;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
}

impl Source for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl Source for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.as_slice().read_at(offset, buf)
    }
}

impl Source for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(offset, buf)
    }
}
