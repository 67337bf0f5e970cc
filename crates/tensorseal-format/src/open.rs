//! Opening input files without ever blocking on a special file.
//!
//! `File::open` on a FIFO blocks until a writer appears, and reading a
//! character device such as `/dev/zero` never ends. Every reader of untrusted
//! input in tensorseal opens its files through [`open_regular`]: the path is
//! opened non-blocking (and, on Unix, without acquiring a controlling
//! terminal), `fstat` of the open descriptor must say "regular file", and only
//! then is the non-blocking flag cleared. Checking the descriptor, not the
//! path, leaves no window in which the path could be swapped for a FIFO.

use std::fs::{File, FileType};
use std::io;
use std::path::Path;

/// What a path is: the file types `open_regular` tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A regular file: the only kind that is opened.
    Regular,
    /// A directory.
    Directory,
    /// A symbolic link (only seen when links are not followed).
    Symlink,
    /// A FIFO (named pipe): opening it for reading blocks until a writer appears.
    Fifo,
    /// A character device (`/dev/zero`, a terminal): reads may never end.
    CharDevice,
    /// A block device (a disk).
    BlockDevice,
    /// A Unix domain socket.
    Socket,
    /// Anything else the platform has.
    Other,
}

impl FileKind {
    /// The kind of a file type.
    pub fn of(ft: &FileType) -> FileKind {
        if ft.is_file() {
            return FileKind::Regular;
        }
        if ft.is_dir() {
            return FileKind::Directory;
        }
        if ft.is_symlink() {
            return FileKind::Symlink;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if ft.is_fifo() {
                return FileKind::Fifo;
            }
            if ft.is_char_device() {
                return FileKind::CharDevice;
            }
            if ft.is_block_device() {
                return FileKind::BlockDevice;
            }
            if ft.is_socket() {
                return FileKind::Socket;
            }
        }
        FileKind::Other
    }

    /// A stable short identifier: `regular`, `directory`, `symlink`, `fifo`,
    /// `char-device`, `block-device`, `socket`, `special`.
    pub fn id(self) -> &'static str {
        match self {
            FileKind::Regular => "regular",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Fifo => "fifo",
            FileKind::CharDevice => "char-device",
            FileKind::BlockDevice => "block-device",
            FileKind::Socket => "socket",
            FileKind::Other => "special",
        }
    }
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileKind::Regular => "regular file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Fifo => "FIFO (named pipe)",
            FileKind::CharDevice => "character device",
            FileKind::BlockDevice => "block device",
            FileKind::Socket => "socket",
            FileKind::Other => "special file",
        })
    }
}

/// The error inside the [`io::Error`] returned for a path that is not a
/// regular file (`io::ErrorKind::InvalidInput`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} is a {kind}, not a regular file (refused without reading it)", path.display())]
pub struct NotRegularFile {
    /// The path as given.
    pub path: std::path::PathBuf,
    /// What it is instead.
    pub kind: FileKind,
}

/// The error for `path`, which is a `kind`.
pub fn not_regular(path: &Path, kind: FileKind) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        NotRegularFile {
            path: path.to_owned(),
            kind,
        },
    )
}

/// Opens `path` for reading if, and only if, it is a regular file (symlinks
/// are followed). FIFOs, devices, sockets and directories are refused with an
/// [`io::ErrorKind::InvalidInput`] error wrapping [`NotRegularFile`] (naming
/// the path and its type), without blocking and without reading a byte.
pub fn open_regular(path: impl AsRef<Path>) -> io::Result<File> {
    let path = path.as_ref();
    let file = match open_nonblocking(path) {
        Ok(f) => f,
        Err(e) => {
            // A socket cannot be opened at all (ENXIO): name its type instead.
            return Err(match std::fs::metadata(path) {
                Ok(m) if !m.is_file() => not_regular(path, FileKind::of(&m.file_type())),
                _ => e,
            });
        }
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(path, FileKind::of(&meta.file_type())));
    }
    clear_nonblocking(&file)?;
    Ok(file)
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    use rustix::fs::OFlags;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
        .open(path)
}

#[cfg(unix)]
fn clear_nonblocking(file: &File) -> io::Result<()> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    let flags = fcntl_getfl(file)?;
    fcntl_setfl(file, flags - OFlags::NONBLOCK)?;
    Ok(())
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    // No FIFOs to block on: check the type first, then open.
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(not_regular(path, FileKind::of(&meta.file_type())));
    }
    File::open(path)
}

#[cfg(not(unix))]
fn clear_nonblocking(_file: &File) -> io::Result<()> {
    Ok(())
}

/// Whether an I/O error is the refusal of a non-regular file by
/// [`open_regular`], and if so which kind of file it was.
pub fn refused_kind(e: &io::Error) -> Option<FileKind> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<NotRegularFile>())
        .map(|n| n.kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn regular_file_opens_and_reads_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let mut s = String::new();
        open_regular(&p).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "abc");
        #[cfg(unix)]
        {
            let f = open_regular(&p).unwrap();
            let fl = rustix::fs::fcntl_getfl(&f).unwrap();
            assert!(!fl.contains(rustix::fs::OFlags::NONBLOCK));
        }
    }

    #[test]
    fn directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = open_regular(dir.path()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(refused_kind(&e), Some(FileKind::Directory));
        assert!(e.to_string().contains("is a directory"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn devices_and_fifos_are_refused_without_blocking() {
        let e = open_regular("/dev/zero").unwrap_err();
        assert_eq!(refused_kind(&e), Some(FileKind::CharDevice));
        assert!(e.to_string().contains("/dev/zero"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("p");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        // Would block forever with File::open (no writer).
        let e = open_regular(&fifo).unwrap_err();
        assert_eq!(refused_kind(&e), Some(FileKind::Fifo));
        // Through a symlink too.
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        assert_eq!(
            refused_kind(&open_regular(&link).unwrap_err()),
            Some(FileKind::Fifo)
        );
    }

    #[test]
    fn missing_file_keeps_not_found() {
        let e = open_regular("/nonexistent/tensorseal/x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(refused_kind(&e), None);
    }
}
