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

/// Reader threads for `len` bytes of `file` from `offset`: `threads`, or
/// at least 4 when the bytes are not in the page cache (the reads then wait
/// on the disk, not the CPU, and more requests in flight read faster). For
/// uncached bytes the kernel is also asked to read the whole range ahead,
/// in file order, while the threads start.
pub fn io_threads(file: &File, offset: u64, len: usize, threads: usize) -> usize {
    if len >= 2 * CHUNK && !cached(file, offset, len) {
        advise_will_need(file, offset, len);
        threads.max(4)
    } else {
        threads
    }
}

/// `posix_fadvise(WILLNEED)` on the range: the kernel starts reading it
/// into the page cache without waiting for it. Best effort.
#[cfg(target_os = "linux")]
fn advise_will_need(file: &File, offset: u64, len: usize) {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return;
    };
    // SAFETY: advice only; the descriptor is open for `file`'s life and no
    // memory is passed.
    let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), off, len, libc::POSIX_FADV_WILLNEED) };
}

#[cfg(not(target_os = "linux"))]
fn advise_will_need(_file: &File, _offset: u64, _len: usize) {}

/// Whether bytes `offset..offset + len` of `file` look cached: a one-byte
/// read that refuses to wait for the disk (`RWF_NOWAIT`) at 16 points.
#[cfg(target_os = "linux")]
fn cached(file: &File, offset: u64, len: usize) -> bool {
    use std::os::fd::AsRawFd;
    const SAMPLES: usize = 16;
    let step = (len / SAMPLES).max(1);
    (0..len).step_by(step).take(SAMPLES).all(|at| {
        let mut byte = 0u8;
        let iov = libc::iovec {
            iov_base: (&mut byte as *mut u8).cast(),
            iov_len: 1,
        };
        let Ok(pos) = libc::off_t::try_from(offset + at as u64) else {
            return false;
        };
        // SAFETY: `iov` describes one writable byte (`byte`) that outlives
        // the call; the descriptor is open for reading for `file`'s life.
        let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, pos, libc::RWF_NOWAIT) };
        n == 1
    })
}

#[cfg(not(target_os = "linux"))]
fn cached(_file: &File, _offset: u64, _len: usize) -> bool {
    true
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
