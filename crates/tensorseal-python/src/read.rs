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

/// How [`read_parallel`] reads a range ([`read_plan`]).
#[derive(Debug, Clone, Copy)]
pub struct ReadPlan {
    /// Reader threads.
    pub threads: usize,
    /// Whether the bytes were found uncached (reads wait on the disk).
    pub cold: bool,
}

/// Fills `dst` from `file` starting at `offset` on up to `plan.threads`
/// threads, in reads of at most `CHUNK` bytes. Cold bytes: each thread
/// reads one contiguous part front to back, a sequential stream that the
/// kernel's read-ahead follows (interleaved chunks measured slower on a
/// cold file). Cached bytes: the threads take the next chunk as they
/// finish one, so a thread the scheduler delays does not hold the others
/// up (the work is copying, and on a busy machine fixed halves measured
/// slower).
pub fn read_parallel(file: &File, offset: u64, dst: &mut [u8], plan: ReadPlan) -> io::Result<()> {
    let len = dst.len();
    let threads = plan.threads.max(1);
    let part = if plan.cold {
        len.div_ceil(threads)
            .next_multiple_of(crate::buffer::page_size())
            .max(PART_MIN)
    } else {
        CHUNK
    };
    if len <= part || threads == 1 {
        return read_part(file, offset, dst);
    }
    let work = Mutex::new(dst.chunks_mut(part).enumerate());
    let next = || work.lock().map(|mut it| it.next()).unwrap_or(None);
    // Takes pieces until none is left.
    let worker = |_| -> io::Result<()> {
        while let Some((i, piece)) = next() {
            read_part(file, offset + (i * part) as u64, piece)?;
        }
        Ok(())
    };
    on_threads(threads.min(len.div_ceil(part)), worker)
}

/// Runs `work(0)` .. `work(n - 1)` at once (nothing for `n == 0`): `work(0)` on the calling
/// thread, the others on scoped threads, and returns the first error (in
/// index order). An index whose thread the OS refuses to start is run on
/// the calling thread afterwards, so no work is lost and nothing panics.
pub fn on_threads(n: usize, work: impl Fn(usize) -> io::Result<()> + Sync) -> io::Result<()> {
    match n {
        0 => return Ok(()),
        1 => return work(0),
        _ => {}
    }
    let work = &work;
    std::thread::scope(|s| {
        let spawned: Vec<_> = (1..n)
            .map(|k| {
                std::thread::Builder::new()
                    .spawn_scoped(s, move || work(k))
                    .map_err(|_| k)
            })
            .collect();
        let mut result = work(0);
        for handle in spawned {
            let r = match handle {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("worker thread panicked"))),
                Err(k) => work(k),
            };
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

/// Smallest read that [`read_plan`] probes the page cache for. Below it
/// reads are planned warm (no probe, no advice): on a cold 1 GiB file,
/// numpy `get_tensor` of 64 tensors of 16 MiB took (medians of 5) 0.93 s
/// this way against 1.25 s with sequential advice from 1 MiB, and
/// `get_slice` of their first halves 0.65 s against 0.87 s (reference
/// 1.09 s and 1.20 s).
const COLD_MIN: usize = 2 * CHUNK;

/// Fewest bytes one reader thread is given.
const PART_MIN: usize = 1 << 20;

/// Fills `dst` from `offset` with reads of at most `CHUNK` bytes, in order.
fn read_part(file: &File, offset: u64, dst: &mut [u8]) -> io::Result<()> {
    for (i, chunk) in dst.chunks_mut(CHUNK).enumerate() {
        read_exact_at(file, chunk, offset + (i * CHUNK) as u64)?;
    }
    Ok(())
}

/// How to read `len` bytes of `file` from `offset` with up to `threads`
/// threads. Bytes not in the page cache get at least 4 threads (the reads
/// then wait on the disk, not the CPU, and more requests in flight read
/// faster), and the kernel is told that the file is read sequentially: a
/// wider read-ahead window, kept ahead of each reader asynchronously. On a
/// cold 1 GiB file (2-vCPU VM, 7 alternating runs, medians) numpy
/// `load_file` took 0.78 s this way, 0.80 s with `POSIX_FADV_WILLNEED` on
/// the whole range instead (which blocks while it submits the whole range)
/// and 0.94 s with both; the reference 1.22 s.
pub fn read_plan(file: &File, offset: u64, len: usize, threads: usize) -> ReadPlan {
    if len >= COLD_MIN && !crate::buffer::file_cached(file, offset, len) {
        advise_sequential(file);
        ReadPlan {
            threads: threads.max(4),
            cold: true,
        }
    } else {
        ReadPlan {
            threads,
            cold: false,
        }
    }
}

/// `posix_fadvise(SEQUENTIAL)` on the whole file: widens the read-ahead of
/// this open file. Best effort.
#[cfg(target_os = "linux")]
fn advise_sequential(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: advice only; the descriptor is open for `file`'s life and no
    // memory is passed.
    let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
}

#[cfg(not(target_os = "linux"))]
fn advise_sequential(_file: &File) {}

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
