//! Reading headers and tensor bytes from files with positioned reads.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Mutex;

use tensorseal_format::{read_exact_at, FormatError, PreadFile};

/// Size of one positioned read when loading a whole file. Large enough that
/// syscall overhead vanishes, small enough to spread over the threads.
const CHUNK: usize = 16 << 20;

/// Opens `path` and reads and validates only its header (the core's
/// [`PreadFile`]); a directory is reported as `EISDIR` so Python raises
/// `IsADirectoryError`.
pub fn open(path: &Path) -> Result<PreadFile, FormatError> {
    if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(FormatError::io(
            path,
            io::Error::from(io::ErrorKind::IsADirectory),
        ));
    }
    PreadFile::open(path)
}

/// Fills `dst` from `file` starting at `offset`, with `CHUNK`-sized reads
/// spread over up to `threads` threads.
pub fn read_parallel(file: &File, offset: u64, dst: &mut [u8], threads: usize) -> io::Result<()> {
    let chunks = dst.len().div_ceil(CHUNK);
    let threads = threads.clamp(1, chunks.max(1));
    if threads == 1 {
        return read_exact_at(file, dst, offset);
    }
    let work = Mutex::new(dst.chunks_mut(CHUNK).enumerate());
    let next = || work.lock().map(|mut it| it.next()).unwrap_or(None);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> io::Result<()> {
                    while let Some((i, chunk)) = next() {
                        read_exact_at(file, chunk, offset + (i * CHUNK) as u64)?;
                    }
                    Ok(())
                })
            })
            .collect();
        let mut result = Ok(());
        for h in handles {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("reader thread panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

/// Number of reader threads: `TENSORSEAL_THREADS` if set, else the number of
/// CPUs the process may use (at most 8). Read once: `available_parallelism` reads cgroup files on every call.
pub fn default_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(threads_from_env)
}

fn threads_from_env() -> usize {
    std::env::var("TENSORSEAL_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(8)
        })
}
