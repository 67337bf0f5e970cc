//! The ring: reader threads filling caller-provided slots in chunk order.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::align::{aligned_read, is_aligned};
use crate::plan::Chunk;
use crate::StreamError;

/// Whether reads bypass the page cache (`O_DIRECT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    /// Never: buffered reads only.
    Off,
    /// When the wanted bytes are not in the page cache (a sample of
    /// non-blocking one-byte reads says so): cold files skip the cache's
    /// copy, cached ones are read from the cache.
    Auto,
    /// Always try it (buffered reads where the file system refuses).
    On,
}

/// How a [`Stream`] reads.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Reader threads (at least 1; at most one per chunk is started).
    pub threads: usize,
    /// Direct I/O policy.
    pub direct: Direct,
}

/// One staging buffer: `len` writable bytes at `ptr`.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a `Slot` is an address and a length; the promise made to
// `Slot::new` (the memory stays valid and is only touched through the
// stream's protocol) is what makes writing to it from a reader thread sound.
#[allow(unsafe_code)]
unsafe impl Send for Slot {}
// SAFETY: as above; shared references only copy the address and length.
#[allow(unsafe_code)]
unsafe impl Sync for Slot {}

impl Slot {
    /// A slot over `len` bytes at `ptr`.
    ///
    /// # Safety
    ///
    /// The memory must be valid for writes of `len` bytes until every
    /// [`Stream`] given this slot is closed or dropped, and nobody else may
    /// write to it meanwhile, nor read it except for chunk `i`'s bytes between
    /// `wait(i)` returning and `release(i)`.
    #[allow(unsafe_code)]
    pub unsafe fn new(ptr: *mut u8, len: usize) -> Slot {
        Slot { ptr, len }
    }

    /// The slot's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the slot has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What a stream's reads did, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Chunks read with `O_DIRECT`.
    pub direct_reads: u64,
    /// Chunks read through the page cache.
    pub buffered_reads: u64,
    /// Times direct I/O was wanted but refused (`EINVAL` setting the flag or
    /// on a read, or a slot not aligned), falling back to buffered reads.
    pub direct_fallbacks: u64,
    /// Bytes read from the file (direct reads count their aligned length).
    pub bytes_read: u64,
    /// Reader threads started.
    pub threads: u64,
}

#[derive(Default)]
struct Counters {
    direct_reads: AtomicU64,
    buffered_reads: AtomicU64,
    direct_fallbacks: AtomicU64,
    bytes_read: AtomicU64,
}

struct State {
    /// Per slot: the chunk that may use it now (`i`, then `i + slots` once
    /// `i` is released).
    turn: Vec<usize>,
    /// Per chunk: `Some(skip)` once read and not yet released; its bytes
    /// start `skip` bytes into the slot.
    ready: Vec<Option<u64>>,
    error: Option<StreamError>,
    cancelled: bool,
}

struct Shared {
    path: String,
    buffered: File,
    direct: Option<File>,
    use_direct: AtomicBool,
    chunks: Vec<Chunk>,
    slots: Vec<Slot>,
    state: Mutex<State>,
    changed: Condvar,
    next: AtomicUsize,
    counters: Counters,
    /// Reader threads that have not returned yet.
    live: AtomicUsize,
}

/// Reader threads streaming planned chunks of one file through a ring of
/// slots. See the crate documentation for the protocol.
pub struct Stream {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    started: usize,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A reader never panics holding the lock; if one did, the state is
    // still consistent (every update is a single assignment).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Stream {
    /// Starts reading `chunks` (from [`plan`](crate::plan::plan)) of `file`
    /// (opened from `path`) into `slots`.
    ///
    /// Each chunk's aligned read must fit a slot. With direct I/O wanted,
    /// `path` is opened a second time (and must still be the same file) and
    /// `O_DIRECT` set on that descriptor; slots not aligned to 4096 bytes,
    /// or a file system refusing the flag, mean buffered reads.
    pub fn new(
        path: &Path,
        file: File,
        chunks: Vec<Chunk>,
        slots: Vec<Slot>,
        options: Options,
    ) -> Result<Stream, StreamError> {
        let path_text = path.display().to_string();
        if slots.is_empty() {
            return Err(StreamError::BadSlot {
                index: 0,
                reason: "the ring has no slot".into(),
            });
        }
        let need = chunks
            .iter()
            .filter_map(|c| aligned_read(c.offset, c.len))
            .map(|r| r.len)
            .max()
            .unwrap_or(0);
        for (index, s) in slots.iter().enumerate() {
            if (s.len as u64) < need {
                return Err(StreamError::BadSlot {
                    index,
                    reason: format!("{} bytes, a chunk needs {need}", s.len),
                });
            }
        }
        let counters = Counters::default();
        let mut direct = None;
        let want = match options.direct {
            Direct::Off => false,
            Direct::On => true,
            Direct::Auto => match (chunks.first(), chunks.last()) {
                (Some(a), Some(b)) => !cached(&file, a.offset, b.offset + b.len - a.offset),
                _ => false,
            },
        };
        if want && !chunks.is_empty() {
            if slots.iter().all(|s| is_aligned(s.ptr as usize)) {
                direct = open_direct(path, &file)?;
            }
            if direct.is_none() {
                counters.direct_fallbacks.fetch_add(1, Ordering::Relaxed);
            }
        }
        let n = slots.len();
        let shared = Arc::new(Shared {
            path: path_text,
            buffered: file,
            use_direct: AtomicBool::new(direct.is_some()),
            direct,
            state: Mutex::new(State {
                turn: (0..n).collect(),
                ready: vec![None; chunks.len()],
                error: None,
                cancelled: false,
            }),
            chunks,
            slots,
            changed: Condvar::new(),
            next: AtomicUsize::new(0),
            counters,
            live: AtomicUsize::new(0),
        });
        let started = options.threads.max(1).min(shared.chunks.len());
        let mut threads = Vec::with_capacity(started);
        for i in 0..started {
            let s = Arc::clone(&shared);
            shared.live.fetch_add(1, Ordering::SeqCst);
            let spawned = std::thread::Builder::new()
                .name(format!("tensorseal-read-{i}"))
                .spawn(move || {
                    s.reader();
                    s.live.fetch_sub(1, Ordering::SeqCst);
                });
            match spawned {
                Ok(h) => threads.push(h),
                Err(e) => {
                    shared.live.fetch_sub(1, Ordering::SeqCst);
                    let stream = Stream {
                        shared,
                        threads: Mutex::new(threads),
                        started: i,
                    };
                    stream.close();
                    return Err(StreamError::Io {
                        path: path.display().to_string(),
                        offset: 0,
                        len: 0,
                        source: Arc::new(e),
                    });
                }
            }
        }
        Ok(Stream {
            shared,
            threads: Mutex::new(threads),
            started,
        })
    }

    /// The planned chunks, in the order they are taken.
    pub fn chunks(&self) -> &[Chunk] {
        &self.shared.chunks
    }

    /// Number of slots in the ring.
    pub fn slots(&self) -> usize {
        self.shared.slots.len()
    }

    /// Blocks until chunk `i` is in its slot; returns `(slot, skip)`: the
    /// chunk's first byte is `skip` bytes into slot `slot` (`i % slots`).
    ///
    /// Chunks are taken in any order a ring allows: chunk `i` cannot be
    /// taken once released, nor while chunk `i - slots` is not released
    /// (an `Order` error, never a deadlock). The first read error, or a
    /// cancellation, is returned by every wait after it.
    pub fn wait(&self, i: usize) -> Result<(usize, u64), StreamError> {
        let sh = &self.shared;
        if i >= sh.chunks.len() {
            return Err(StreamError::Order {
                chunk: i,
                reason: "there is no such chunk",
            });
        }
        let slot = i % sh.slots.len();
        let mut st = lock(&sh.state);
        loop {
            if let Some(e) = &st.error {
                return Err(e.clone());
            }
            if st.cancelled {
                return Err(StreamError::Cancelled);
            }
            let turn = st.turn.get(slot).copied().unwrap_or(usize::MAX);
            if turn > i {
                return Err(StreamError::Order {
                    chunk: i,
                    reason: "it was released already",
                });
            }
            if turn < i {
                return Err(StreamError::Order {
                    chunk: i,
                    reason: "its slot holds an earlier chunk not released yet",
                });
            }
            if let Some(Some(skip)) = st.ready.get(i) {
                return Ok((slot, *skip));
            }
            st = sh.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Gives chunk `i`'s slot back to the readers (for chunk `i + slots`).
    /// Its bytes must not be read any more.
    pub fn release(&self, i: usize) -> Result<(), StreamError> {
        let sh = &self.shared;
        let n = sh.slots.len();
        let mut st = lock(&sh.state);
        let ready = st.ready.get(i).is_some_and(|r| r.is_some());
        match st.turn.get_mut(i % n) {
            Some(turn) if *turn == i && ready => *turn = i + n,
            _ => {
                return Err(StreamError::Order {
                    chunk: i,
                    reason: "it is not held (not read yet, or released already)",
                })
            }
        }
        if let Some(r) = st.ready.get_mut(i) {
            *r = None;
        }
        sh.changed.notify_all();
        Ok(())
    }

    /// Stops the readers after their current read; waits return
    /// `Cancelled`. Does not wait for them (see [`Stream::close`]).
    pub fn cancel(&self) {
        let mut st = lock(&self.shared.state);
        st.cancelled = true;
        self.shared.changed.notify_all();
    }

    /// Cancels and joins every reader thread: afterwards nothing writes to
    /// the slots any more. Idempotent.
    pub fn close(&self) {
        self.cancel();
        let handles = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }

    /// Reader threads still running (0 after [`Stream::close`]).
    pub fn live_threads(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }

    /// Counters of the reads made so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            direct_reads: c.direct_reads.load(Ordering::Relaxed),
            buffered_reads: c.buffered_reads.load(Ordering::Relaxed),
            direct_fallbacks: c.direct_fallbacks.load(Ordering::Relaxed),
            bytes_read: c.bytes_read.load(Ordering::Relaxed),
            threads: self.started as u64,
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn reader(&self) {
        let n = self.slots.len();
        loop {
            let i = self.next.fetch_add(1, Ordering::SeqCst);
            if i >= self.chunks.len() {
                return;
            }
            {
                let mut st = lock(&self.state);
                loop {
                    if st.cancelled || st.error.is_some() {
                        return;
                    }
                    if st.turn.get(i % n) == Some(&i) {
                        break;
                    }
                    st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            }
            let result = self.read_chunk(i);
            let mut st = lock(&self.state);
            match result {
                Ok(skip) => {
                    if let Some(r) = st.ready.get_mut(i) {
                        *r = Some(skip);
                    }
                }
                Err(e) => {
                    if st.error.is_none() {
                        st.error = Some(e);
                    }
                }
            }
            self.changed.notify_all();
        }
    }

    /// Reads chunk `i` into its slot; returns where its bytes start.
    fn read_chunk(&self, i: usize) -> Result<u64, StreamError> {
        let (Some(chunk), Some(slot)) = (self.chunks.get(i), self.slots.get(i % self.slots.len()))
        else {
            return Err(StreamError::Order {
                chunk: i,
                reason: "there is no such chunk",
            });
        };
        if let (Some(direct), true) = (&self.direct, self.use_direct.load(Ordering::Relaxed)) {
            if let Some(r) = aligned_read(chunk.offset, chunk.len) {
                let len = usize::try_from(r.len).unwrap_or(usize::MAX).min(slot.len);
                // SAFETY: `Slot::new`'s contract: the slot is valid for
                // `slot.len` bytes and, between the readers' turn on it
                // and the consumer's wait, only this thread touches it.
                #[allow(unsafe_code)]
                let buf = unsafe { std::slice::from_raw_parts_mut(slot.ptr, len) };
                match read_upto(direct, buf, r.start) {
                    Ok(got) => {
                        self.counters.direct_reads.fetch_add(1, Ordering::Relaxed);
                        self.counters
                            .bytes_read
                            .fetch_add(got as u64, Ordering::Relaxed);
                        return self.check_len(chunk, (got as u64).saturating_sub(r.skip), r.skip);
                    }
                    Err(e) if e.raw_os_error() == Some(einval()) => {
                        self.use_direct.store(false, Ordering::Relaxed);
                        self.counters
                            .direct_fallbacks
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => return Err(self.io_error(r.start, r.len, e)),
                }
            }
        }
        let len = usize::try_from(chunk.len)
            .unwrap_or(usize::MAX)
            .min(slot.len);
        // SAFETY: as above.
        #[allow(unsafe_code)]
        let buf = unsafe { std::slice::from_raw_parts_mut(slot.ptr, len) };
        let got = read_upto(&self.buffered, buf, chunk.offset)
            .map_err(|e| self.io_error(chunk.offset, chunk.len, e))?;
        self.counters.buffered_reads.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_read
            .fetch_add(got as u64, Ordering::Relaxed);
        self.check_len(chunk, got as u64, 0)
    }

    fn check_len(&self, chunk: &Chunk, got: u64, skip: u64) -> Result<u64, StreamError> {
        if got < chunk.len {
            return Err(StreamError::Truncated {
                path: self.path.clone(),
                offset: chunk.offset,
                wanted: chunk.len,
                got,
            });
        }
        Ok(skip)
    }

    fn io_error(&self, offset: u64, len: u64, e: io::Error) -> StreamError {
        StreamError::Io {
            path: self.path.clone(),
            offset,
            len,
            source: Arc::new(e),
        }
    }
}

/// Reads into `buf` from `offset` until it is full or the file ends;
/// returns the bytes read.
fn read_upto(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let Some(rest) = buf.get_mut(got..) else {
            break;
        };
        match read_at(file, rest, offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

#[cfg(target_os = "linux")]
fn einval() -> i32 {
    libc::EINVAL
}

#[cfg(not(target_os = "linux"))]
fn einval() -> i32 {
    22
}

/// `path` opened again with `O_DIRECT` set, checked to be `file`'s inode;
/// None when the file system refuses the flag.
#[cfg(target_os = "linux")]
fn open_direct(path: &Path, file: &File) -> Result<Option<File>, StreamError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let io_err = |e: io::Error| StreamError::Io {
        path: path.display().to_string(),
        offset: 0,
        len: 0,
        source: Arc::new(e),
    };
    let again = tensorseal_format::open_regular(path).map_err(io_err)?;
    let (a, b) = (
        file.metadata().map_err(io_err)?,
        again.metadata().map_err(io_err)?,
    );
    if (a.dev(), a.ino()) != (b.dev(), b.ino()) || !b.is_file() {
        return Err(StreamError::Replaced {
            path: path.display().to_string(),
        });
    }
    let fd = again.as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by `again` for this call;
    // F_GETFL and F_SETFL take and return plain integers.
    #[allow(unsafe_code)]
    let set = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            -1
        } else {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_DIRECT)
        }
    };
    if set < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINVAL) {
            return Ok(None);
        }
        return Err(io_err(e));
    }
    Ok(Some(again))
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path, _file: &File) -> Result<Option<File>, StreamError> {
    Ok(None)
}

/// Whether file bytes `offset..offset + len` look cached: one-byte reads
/// that refuse to wait for the disk (`RWF_NOWAIT`) at 16 points.
#[cfg(target_os = "linux")]
fn cached(file: &File, offset: u64, len: u64) -> bool {
    use std::os::fd::AsRawFd;
    const SAMPLES: u64 = 16;
    let step = (len / SAMPLES).max(1);
    (0..len)
        .step_by(step as usize)
        .take(SAMPLES as usize)
        .all(|at| {
            let mut byte = 0u8;
            let iov = libc::iovec {
                iov_base: (&mut byte as *mut u8).cast(),
                iov_len: 1,
            };
            let Ok(pos) = libc::off_t::try_from(offset + at) else {
                return false;
            };
            // SAFETY: `iov` describes one writable byte (`byte`) that outlives
            // the call; the descriptor is open for reading for `file`'s life.
            #[allow(unsafe_code)]
            let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, pos, libc::RWF_NOWAIT) };
            n == 1
        })
}

#[cfg(not(target_os = "linux"))]
fn cached(_file: &File, _offset: u64, _len: u64) -> bool {
    true
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::plan::{plan, Range};
    use std::io::Write;

    /// A read refused with `EINVAL` (here: a slot that is not aligned, which
    /// `Stream::new` would have caught, so the shared state is built by
    /// hand) switches the stream to buffered reads for good, and the chunk
    /// is read again, intact.
    #[test]
    fn einval_on_a_direct_read_falls_back_to_buffered_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        File::create(&path).unwrap().write_all(&data).unwrap();
        let file = File::open(&path).unwrap();
        let Some(direct) = open_direct(&path, &file).unwrap() else {
            return; // this file system refuses O_DIRECT outright
        };
        let chunks = plan(
            &[Range {
                offset: 10,
                len: 50_000,
                dst: 0,
                dst_offset: 0,
            }],
            64 << 10,
        )
        .unwrap();
        let mut mem = vec![0u8; (64 << 10) + 4096 + 1];
        let skip = (4096 - mem.as_ptr() as usize % 4096) % 4096 + 1; // misaligned
                                                                     // SAFETY: `mem` outlives `shared` (dropped at the end of the test)
                                                                     // and only `read_chunk` below writes to it.
        #[allow(unsafe_code)]
        let slot = unsafe { Slot::new(mem.as_mut_ptr().add(skip), 64 << 10) };
        let shared = Shared {
            path: path.display().to_string(),
            buffered: file,
            direct: Some(direct),
            use_direct: AtomicBool::new(true),
            chunks,
            slots: vec![slot],
            state: Mutex::new(State {
                turn: vec![0],
                ready: vec![None],
                error: None,
                cancelled: false,
            }),
            changed: Condvar::new(),
            next: AtomicUsize::new(0),
            counters: Counters::default(),
            live: AtomicUsize::new(0),
        };
        let at = shared.read_chunk(0).unwrap();
        assert_eq!(at, 0, "buffered reads start at the chunk's first byte");
        assert_eq!(&mem[skip..skip + 50_000], &data[10..50_010]);
        let c = &shared.counters;
        assert_eq!(c.direct_fallbacks.load(Ordering::Relaxed), 1);
        assert_eq!(c.direct_reads.load(Ordering::Relaxed), 0);
        assert_eq!(c.buffered_reads.load(Ordering::Relaxed), 1);
        assert!(!shared.use_direct.load(Ordering::Relaxed));
    }
}
