//! Memory that tensors handed to Python point into.
//!
//! A [`Buffer`] owns one region and exposes it through the Python buffer
//! protocol (in the stable-ABI build, where CPython < 3.11 offers no buffer
//! protocol to extensions, through its `address` and length instead, which
//! `tensorseal._raw.exported` wraps in a ctypes-backed memoryview). numpy arrays (`np.frombuffer`) and torch tensors
//! (`torch.frombuffer`) built on it hold a reference to the `Buffer`, so the
//! memory lives exactly as long as the last array or tensor that views it.
//!
//! The kinds of region, and what each costs:
//! - a private copy-on-write file mapping (`map_cow`): writable, writes never
//!   reach the file, no commit charge reserved (`MAP_NORESERVE`; Linux
//!   ignores that flag under `vm.overcommit_memory=2`, where the caller falls
//!   back to mapping one tensor's pages);
//! - a read-only file mapping (`map_read_only`): exported read-only, never
//!   charged;
//! - memory of its own filled by reads (`owned_with`): the heap for small
//!   regions (so many small tensors cost their bytes, not a page and a
//!   mapping each), an anonymous mapping (huge pages advised on request) for large
//!   ones.

use std::alloc::Layout;
#[cfg(not(feature = "abi3"))]
use std::ffi::c_int;
use std::fs::File;

use memmap2::{Advice, Mmap, MmapMut, MmapOptions};
#[cfg(not(feature = "abi3"))]
use pyo3::exceptions::PyBufferError;
#[cfg(not(feature = "abi3"))]
use pyo3::ffi;
use pyo3::prelude::*;

/// Regions at least this large get an anonymous mapping of their own (huge
/// pages advised); smaller ones come from the heap.
const ANON_MIN: usize = 1 << 20;

/// Alignment of heap regions: enough for every dtype (the widest element
/// is 8 bytes). Not more: with the allocator's own alignment (16 on 64-bit
/// glibc) a request is a plain `malloc`, whose freed blocks the next
/// request of the same size reuses. A 64-byte alignment went through
/// `memalign`, whose blocks were not reused: `for k in keys: t =
/// f.get_tensor(k)` (the previous tensor freed only after the next read)
/// then faulted every tensor's memory in afresh, 5x slower than the
/// reference on 64 tensors of 16 MiB.
const HEAP_ALIGN: usize = 16;

/// What keeps a [`Buffer`]'s memory alive.
enum Owner {
    /// A copy-on-write (`MAP_PRIVATE`, writable) mapping of a file.
    Cow(#[allow(dead_code)] MmapMut, FileSpan),
    /// A read-only mapping of a file.
    ReadOnly(#[allow(dead_code)] Mmap),
    /// Anonymous memory (transparent huge pages on request).
    Anon(#[allow(dead_code)] MmapMut),
    /// A heap allocation of this layout, freed on drop.
    Heap(Layout),
    /// Nothing: the region is empty.
    Empty,
}

/// Where a file mapping starts in its file.
#[derive(Debug, Clone, Copy)]
pub struct FileSpan {
    /// File offset of the mapping's first byte.
    offset: u64,
}

/// A region of memory shared with Python through the buffer protocol.
#[pyclass(frozen, module = "tensorseal._tensorseal")]
pub struct Buffer {
    /// Start of the region; derived from the owner's `&mut` access at
    /// construction and never turned back into a Rust reference afterwards,
    /// so writes made by Python through the buffer protocol do not alias any
    /// Rust reference.
    ptr: *mut u8,
    len: usize,
    owner: Owner,
}

// SAFETY: `Buffer` is an owned region plus a raw pointer into it. The memory
// is never freed or moved while the `Buffer` exists (the owner is dropped
// with it), and Rust code never reads or writes the region through `&self`
// after construction; all access goes through the Python buffer protocol,
// whose concurrent use is the Python program's business (exactly as for a
// `bytearray`). Sending or sharing the handle between threads is therefore
// sound.
unsafe impl Send for Buffer {}
// SAFETY: see `Send` above; `&Buffer` only hands out the raw pointer.
unsafe impl Sync for Buffer {}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let Owner::Heap(layout) = self.owner {
            // SAFETY: `ptr` was returned by `alloc_zeroed(layout)` in
            // `owned_with` and is freed exactly once, here.
            unsafe { std::alloc::dealloc(self.ptr, layout) };
        }
    }
}

impl Buffer {
    /// Maps `len` bytes of `file` from `offset` (a multiple of the page
    /// size) privately and writable: copy-on-write, writes never reach the
    /// file, and no swap/commit charge is reserved where the OS honours
    /// `MAP_NORESERVE`.
    ///
    /// `populate` (with `threads` threads) faults the pages of `range`
    /// (relative to the mapping) in ahead of use with read faults, which
    /// also starts reading them from disk in parallel when they are not
    /// cached; reading never copies a page (copy-on-write happens only on
    /// a write).
    pub fn map_cow(
        file: &File,
        offset: u64,
        len: usize,
        populate: Option<(std::ops::Range<usize>, usize)>,
    ) -> std::io::Result<Buffer> {
        if len == 0 {
            return Ok(Buffer::empty());
        }
        // SAFETY: mapping a file is unsafe because another process could
        // truncate or modify it while mapped (the caveat of every mmap
        // reader, the reference implementation included, documented in the
        // README: a truncation makes later touches of the lost pages raise
        // SIGBUS). We map privately, so our own writes never reach the file;
        // the header was validated against the file length before mapping.
        let mut map = unsafe {
            MmapOptions::new()
                .offset(offset)
                .len(len)
                .no_reserve_swap()
                .map_copy(file)?
        };
        let span = FileSpan { offset };
        if let Some((range, threads)) = populate {
            if !cow_cached(&map, span, file, &range) {
                populate_read(&map, range, threads);
            }
        }
        let ptr = map.as_mut_ptr();
        Ok(Buffer {
            ptr,
            len,
            owner: Owner::Cow(map, span),
        })
    }

    /// Maps the whole of `file` read-only; the buffer is exported read-only,
    /// so numpy arrays over it are not writable.
    pub fn map_read_only(file: &File) -> std::io::Result<Buffer> {
        // SAFETY: as in `map_cow`; the mapping is never written (PROT_READ,
        // and the buffer protocol refuses writable requests).
        let map = unsafe { MmapOptions::new().map_copy_read_only(file)? };
        if map.is_empty() {
            return Ok(Buffer::empty());
        }
        let ptr = map.as_ptr().cast_mut();
        let len = map.len();
        Ok(Buffer {
            ptr,
            len,
            owner: Owner::ReadOnly(map),
        })
    }

    fn empty() -> Buffer {
        Buffer {
            ptr: std::ptr::NonNull::<u64>::dangling().as_ptr().cast(),
            len: 0,
            owner: Owner::Empty,
        }
    }

    /// Allocates `len` bytes of zeroed memory of its own (heap below
    /// `ANON_MIN`, an anonymous mapping above) and lets `fill` write it
    /// before it becomes visible to Python.
    pub fn owned_with<E>(
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<Buffer, E>
    where
        E: From<std::io::Error>,
    {
        if len == 0 {
            fill(&mut [])?;
            return Ok(Buffer::empty());
        }
        if len < ANON_MIN {
            let layout = Layout::from_size_align(len, HEAP_ALIGN)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            // SAFETY: `layout` has a non-zero size.
            let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
            if ptr.is_null() {
                return Err(std::io::Error::from(std::io::ErrorKind::OutOfMemory).into());
            }
            // The buffer owns the allocation from here on (freed on drop,
            // also if `fill` fails).
            let buf = Buffer {
                ptr,
                len,
                owner: Owner::Heap(layout),
            };
            // SAFETY: `ptr` points to `len` zeroed bytes owned by `buf` and
            // not yet shared with anyone.
            fill(unsafe { std::slice::from_raw_parts_mut(ptr, len) })?;
            return Ok(buf);
        }
        let mut map = MmapOptions::new().len(len).map_anon()?;
        #[cfg(target_os = "linux")]
        if huge_pages_wanted() {
            // Opt-in transparent huge pages: 512x fewer page faults when the
            // reads fill the buffer, at the risk of compaction stalls.
            // Refused on some kernels/configs; that is fine.
            let _ = map.advise(Advice::HugePage);
        }
        if prefault_wanted() {
            // Opt-in: fault the pages in here, one store per 4 KiB, before
            // the reads fill them. On a quiet machine this made loads 2-9x
            // slower than letting the kernel take the faults inside the
            // reads' copies (BENCHMARKS.md, "Python package"), so it is off
            // by default.
            for i in (0..len).step_by(4096) {
                map[i] = 0;
            }
        }
        fill(&mut map[..])?;
        let ptr = map.as_mut_ptr();
        Ok(Buffer {
            ptr,
            len,
            owner: Owner::Anon(map),
        })
    }

    /// Faults bytes `range` of a copy-on-write mapping in ahead of use
    /// (see [`Buffer::map_cow`]), without asking first whether they are
    /// cached (callers ask [`Buffer::cached`]); does nothing for other
    /// kinds of memory.
    pub fn populate(&self, range: std::ops::Range<usize>, threads: usize) {
        if let Owner::Cow(map, _) = &self.owner {
            populate_read(map, range, threads);
        }
    }

    /// Whether bytes `range` of a copy-on-write mapping of `file` look
    /// cached (then there is nothing to populate). Cheap: a few system
    /// calls, so callers ask with the GIL held and release it only to
    /// populate. `true` for other kinds of memory.
    pub fn cached(&self, file: &File, range: std::ops::Range<usize>) -> bool {
        match &self.owner {
            Owner::Cow(map, span) => cow_cached(map, *span, file, &range),
            _ => true,
        }
    }

    /// Reads `len` bytes of `file` from `offset` into memory of its own.
    ///
    /// Up to [`HEAP_READ_MAX`] the memory comes from the allocator without
    /// being zeroed first (the reads write it straight into uninitialised
    /// memory), so buffers freed by earlier results are reused as the
    /// reference's `bytearray`s are, without new page faults; from twice
    /// [`SPLIT_PART`] such a read is split into contiguous parts read at
    /// once on up to `plan.threads` threads. Larger ones are anonymous
    /// mappings filled by [`crate::read::read_parallel`] as `plan` says.
    #[cfg(target_os = "linux")]
    pub fn read_owned(
        file: &File,
        offset: u64,
        len: usize,
        plan: crate::read::ReadPlan,
    ) -> std::io::Result<Buffer> {
        if len == 0 || len > HEAP_READ_MAX {
            return Buffer::owned_with(len, |dst| {
                crate::read::read_parallel(file, offset, dst, plan)
            });
        }
        let layout = Layout::from_size_align(len, HEAP_ALIGN)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { std::alloc::alloc(layout) };
        if ptr.is_null() {
            return Err(std::io::Error::from(std::io::ErrorKind::OutOfMemory));
        }
        // The buffer owns the allocation from here on (freed on drop, also
        // if a read fails); it reaches Python only once every byte is read.
        let buf = Buffer {
            ptr,
            len,
            owner: Owner::Heap(layout),
        };
        let parts = (len / SPLIT_PART).clamp(1, plan.threads.max(1));
        let part = len.div_ceil(parts).next_multiple_of(page_size());
        // The address, not the pointer, crosses into the readers.
        let base = ptr as usize;
        // Reads part `k`, which starts `k * part` bytes into the allocation.
        let read_part = |k: usize| {
            let at = k * part;
            let part_len = part.min(len - at);
            // SAFETY: `at + part_len <= len` (`k` < the number of parts), so
            // the range lies inside the allocation owned by `buf`, which
            // outlives every reader (`on_threads` joins them before
            // returning); the parts are disjoint, so no two threads write the
            // same byte. No Rust reference to the (partly uninitialised)
            // memory is created.
            unsafe {
                pread_exact_raw(
                    file,
                    (base as *mut u8).add(at),
                    part_len,
                    offset + at as u64,
                )
            }
        };
        crate::read::on_threads(len.div_ceil(part), read_part)?;
        Ok(buf)
    }

    /// [`Buffer::owned_with`] elsewhere.
    #[cfg(not(target_os = "linux"))]
    pub fn read_owned(
        file: &File,
        offset: u64,
        len: usize,
        plan: crate::read::ReadPlan,
    ) -> std::io::Result<Buffer> {
        Buffer::owned_with(len, |dst| {
            crate::read::read_parallel(file, offset, dst, plan)
        })
    }

    /// Address of the first byte (for diagnostics and zero-copy tests).
    pub fn addr(&self) -> usize {
        self.ptr as usize
    }

    fn read_only(&self) -> bool {
        matches!(self.owner, Owner::ReadOnly(_))
    }
}

/// Most bytes populated per call in [`populate_read`]: large enough that
/// the syscalls vanish, small enough that a failure stops the other
/// threads soon.
const POPULATE_CHUNK: usize = 8 << 20;

/// Fewest bytes one thread of [`populate_read`] is given.
const POPULATE_STEP_MIN: usize = 1 << 20;

/// Faults `range` of `map` in with read faults (`MADV_POPULATE_READ`) on up
/// to `threads` threads. Callers first ask [`cow_cached`]: for cached
/// pages, faulting them in on first touch (several at a time) costs no
/// more than populating them here. Best effort: kernels before 5.14 refuse
/// the advice and the pages are then faulted on first touch as usual; an
/// I/O error (a truncated file) stops populating and surfaces, as SIGBUS,
/// only if the lost pages are touched.
fn populate_read(map: &MmapMut, range: std::ops::Range<usize>, threads: usize) {
    #[cfg(target_os = "linux")]
    {
        let range = range.start.min(map.len())..range.end.min(map.len());
        if range.is_empty() {
            return;
        }
        // Waiting on the disk, not the CPU: at least 4 streams in flight,
        // also for a range of a few MiB (one slice's rows). Each thread
        // takes one contiguous part and populates it front to back, so
        // each is a sequential stream for the read-ahead.
        let threads = threads.max(4);
        let part = range
            .len()
            .div_ceil(threads)
            .next_multiple_of(page_size())
            .max(POPULATE_STEP_MIN);
        // Sequential read-ahead for the range while it is populated: the
        // kernel then reads ahead in growing windows, asynchronously, where
        // the default read-around reads a small window per fault (measured
        // on a cold 1 GiB file: 3.0 GB/s against 0.6-1.3 GB/s). Back to
        // normal afterwards, so later accesses are not treated as a stream.
        let sequential = map
            .advise_range(Advice::Sequential, range.start, range.len())
            .is_ok();
        let stop = std::sync::atomic::AtomicBool::new(false);
        // Set when reading the populated pages back fails (touch_pages).
        let untouched = std::sync::atomic::AtomicBool::new(false);
        let work = |part: std::ops::Range<usize>| {
            for start in part.clone().step_by(POPULATE_CHUNK) {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let len = POPULATE_CHUNK.min(part.end - start);
                if map.advise_range(Advice::PopulateRead, start, len).is_err() {
                    // Unsupported, or the file shrank: stop, pages fault
                    // in on touch instead.
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
                if !untouched.load(std::sync::atomic::Ordering::Relaxed)
                    && !touch_pages(map.as_ptr() as usize + start, len)
                {
                    untouched.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        };
        let parts: Vec<_> = (range.start..range.end)
            .step_by(part)
            .map(|start| start..(start + part).min(range.end))
            .collect();
        let _ = crate::read::on_threads(parts.len(), |k| {
            if let Some(p) = parts.get(k) {
                work(p.clone());
            }
            Ok(())
        });
        if sequential {
            let _ = map.advise_range(Advice::Normal, range.start, range.len());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (map, range, threads);
}

/// Reads one byte of every page in `len` bytes from address `addr` of this
/// process, through the kernel (`process_vm_readv` on itself), after
/// [`populate_read`] mapped them. Why: on virtual machines the first access
/// to a guest page can cost the host a fault of its own (the disk wrote it,
/// the guest never touched it; with free-page reporting this is most pages
/// of a fresh page cache). Populating alone left that cost to the caller's
/// first touch: on the 2-vCPU VM, torch `load_file` of a cold 1 GiB file
/// then spent 0.35-0.78 s touching pages already mapped (no page faults,
/// user time); read back here, on the populating threads while others
/// wait on the disk, it costs 0.01-0.02 s (medians of 6-8 fresh processes:
/// 1.11-1.24 s in all before, 0.83-0.88 s after). Through the kernel, a
/// page lost meanwhile (the file truncated) makes the call fail instead of
/// raising SIGBUS. Returns false when a call fails or reads short (for
/// example where a seccomp filter refuses the system call); callers then
/// stop reading back.
#[cfg(target_os = "linux")]
fn touch_pages(addr: usize, len: usize) -> bool {
    /// Pages read per call (IOV_MAX is 1024).
    const BATCH: usize = 512;
    let page = page_size();
    let mut sink = [0u8; BATCH];
    let mut remote = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; BATCH];
    let end = addr.saturating_add(len);
    let mut at = addr;
    while at < end {
        let n = (end - at).div_ceil(page).min(BATCH);
        for (k, iov) in remote[..n].iter_mut().enumerate() {
            iov.iov_base = (at + k * page) as *mut std::ffi::c_void;
            iov.iov_len = 1;
        }
        let local = libc::iovec {
            iov_base: sink.as_mut_ptr().cast(),
            iov_len: n,
        };
        // SAFETY: the local iovec covers `n` bytes of `sink`, which lives
        // across the call; the remote iovecs name addresses of this process,
        // which the kernel reads with its own checks (a bad address fails
        // the call, it is never dereferenced here). `n <= BATCH` entries.
        let got = unsafe {
            libc::process_vm_readv(
                libc::getpid(),
                &local,
                1,
                remote.as_ptr(),
                n as libc::c_ulong,
                0,
            )
        };
        if usize::try_from(got).ok() != Some(n) {
            return false;
        }
        at += n * page;
    }
    true
}

/// Largest buffer [`Buffer::read_owned`] takes from the allocator: glibc's
/// largest dynamic mmap threshold, below which freed blocks are reused.
const HEAP_READ_MAX: usize = 32 << 20;

/// Fewest bytes of one part of a heap read that [`Buffer::read_owned`]
/// splits over threads (so reads from twice this size are split). On the
/// 2-vCPU VM (1 GiB in 64 tensors
/// of 16 MiB, numpy `get_tensor` of each, medians of 4-6 runs): cold
/// 0.99 s in one read, 0.71 s in two parts, 0.69 s in four; warm 0.074 s,
/// 0.072 s and 0.063 s.
const SPLIT_PART: usize = 4 << 20;

/// Reads exactly `len` bytes of `file` at `pos` into raw memory.
///
/// # Safety
/// `dst` must be valid for writes of `len` bytes.
#[cfg(target_os = "linux")]
unsafe fn pread_exact_raw(file: &File, dst: *mut u8, len: usize, pos: u64) -> std::io::Result<()> {
    let mut done = 0usize;
    while done < len {
        // SAFETY: `dst + done .. dst + len` is writable (the caller's
        // promise); the kernel writes at most `len - done` bytes there.
        let n = unsafe { libc_pread(file, dst.add(done), len - done, pos + done as u64) };
        match n {
            Ok(0) => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// pread(2) into raw memory.
///
/// # Safety
/// `dst` must be valid for writes of `len` bytes.
#[cfg(target_os = "linux")]
unsafe fn libc_pread(file: &File, dst: *mut u8, len: usize, pos: u64) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let pos = libc::off_t::try_from(pos).map_err(|e| std::io::Error::other(e.to_string()))?;
    // SAFETY: the caller guarantees `dst` is writable for `len` bytes; the
    // descriptor is open for `file`'s lifetime.
    let n = unsafe { libc::pread(file.as_raw_fd(), dst.cast(), len, pos) };
    usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
}

/// Pages sampled by the page-cache probes ([`file_cached`], [`Buffer::cached`]).
const CACHE_SAMPLES: usize = 16;

/// Whether bytes `range` (clipped to the mapping) of copy-on-write mapping
/// `map` of `file` look cached. The mapping itself is probed where mincore
/// tells the truth (no temporary mapping: this runs for every large tensor
/// handed out); elsewhere the file.
#[cfg(target_os = "linux")]
fn cow_cached(map: &MmapMut, span: FileSpan, file: &File, range: &std::ops::Range<usize>) -> bool {
    let range = range.start.min(map.len())..range.end.min(map.len());
    if mincore_tells(file) {
        sampled_resident(map.as_ptr() as usize + range.start, range.len())
    } else {
        nowait_probe(file, span.offset + range.start as u64, range.len())
    }
}

#[cfg(not(target_os = "linux"))]
fn cow_cached(
    _map: &MmapMut,
    _span: FileSpan,
    _file: &File,
    _range: &std::ops::Range<usize>,
) -> bool {
    true
}

/// The system's page size.
pub fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf reads a system constant; no memory is passed.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
    })
}

/// Whether bytes `offset..offset + len` of `file` look fully in the page
/// cache, judged at [`CACHE_SAMPLES`] pages spread evenly over them.
///
/// Where mincore(2) tells the truth about the file's page cache (since
/// Linux 5.0 only for files the caller owns or may write; for others it
/// reports every page resident), it is asked, over a temporary read-only
/// mapping of the bytes that is never read through: this starts no I/O.
/// Elsewhere a one-byte read that refuses to wait (`RWF_NOWAIT`) probes
/// each sample (which may start read-ahead there).
#[cfg(target_os = "linux")]
pub fn file_cached(file: &File, offset: u64, len: usize) -> bool {
    if len == 0 {
        return true;
    }
    if mincore_tells(file) {
        mapped_resident(file, offset, len)
    } else {
        nowait_probe(file, offset, len)
    }
}

#[cfg(not(target_os = "linux"))]
pub fn file_cached(_file: &File, _offset: u64, _len: usize) -> bool {
    true
}

/// Whether mincore(2) reports `file`'s page cache truthfully to us: we own
/// the file, or are root (the kernel's `can_do_mincore` also accepts write
/// permission; such files take the other probe, which is only slower).
#[cfg(target_os = "linux")]
fn mincore_tells(file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid takes no arguments and cannot fail.
    let me = unsafe { libc::geteuid() };
    me == 0 || file.metadata().is_ok_and(|m| m.uid() == me)
}

/// mincore(2) over a temporary read-only mapping of the bytes.
#[cfg(target_os = "linux")]
fn mapped_resident(file: &File, offset: u64, len: usize) -> bool {
    let page = page_size() as u64;
    let start = offset / page * page;
    let Some(map_len) = (offset - start)
        .checked_add(len as u64)
        .and_then(|n| usize::try_from(n).ok())
    else {
        return false;
    };
    // SAFETY: the mapping is only handed to mincore(2), which reads page
    // table and page cache state, never the bytes: a file truncated or
    // modified meanwhile cannot fault us. It is unmapped when `map` drops.
    let Ok(map) = (unsafe { MmapOptions::new().offset(start).len(map_len).map(file) }) else {
        return false;
    };
    let lead = (offset - start) as usize;
    sampled_resident(map.as_ptr() as usize + lead, len)
}

/// mincore(2) on [`CACHE_SAMPLES`] pages spread evenly over the `len`
/// bytes at address `at`, which must lie in a live mapping.
#[cfg(target_os = "linux")]
fn sampled_resident(at: usize, len: usize) -> bool {
    if len == 0 {
        return true;
    }
    let page = page_size();
    let first = at / page;
    let last = (at + len - 1) / page;
    let pages = last - first + 1;
    let step = pages.div_ceil(CACHE_SAMPLES).max(1);
    // One call per sampled page: a call over the whole range would look up
    // every page of it (measured: a 16 MiB tensor's 4096 lookups made torch
    // `get_tensor` of cached files 2x slower).
    (0..pages).step_by(step).all(|i| {
        let mut vec = 0u8;
        // SAFETY: mincore writes one byte into `vec` for the one page
        // asked, a page of a live mapping (the caller's contract); it
        // reads no memory of ours.
        let rc =
            unsafe { libc::mincore(((first + i) * page) as *mut libc::c_void, page, &mut vec) };
        rc == 0 && vec & 1 == 1
    })
}

/// A one-byte read that refuses to wait for the disk (`RWF_NOWAIT`) at
/// [`CACHE_SAMPLES`] points of the bytes.
#[cfg(target_os = "linux")]
fn nowait_probe(file: &File, offset: u64, len: usize) -> bool {
    use std::os::fd::AsRawFd;
    let step = (len / CACHE_SAMPLES).max(1);
    (0..len).step_by(step).take(CACHE_SAMPLES).all(|at| {
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

/// Huge pages are advised only with `TENSORSEAL_HUGEPAGES=1`. With the
/// kernel's default THP `defrag` setting (`madvise`), an advised region is
/// compacted for synchronously when free huge pages run short: numpy
/// `load_file` of 1 GiB measured 0.07 s or 1.1 s from one run to the next
/// with them, 0.27-0.32 s steadily without (reference: 0.45-0.58 s).
#[cfg(target_os = "linux")]
fn huge_pages_wanted() -> bool {
    std::env::var_os("TENSORSEAL_HUGEPAGES").is_some_and(|v| v == "1")
}

/// Pages are faulted in before reading only with `TENSORSEAL_PREFAULT=1`.
fn prefault_wanted() -> bool {
    std::env::var_os("TENSORSEAL_PREFAULT").is_some_and(|v| v == "1")
}

#[pymethods]
impl Buffer {
    /// Number of bytes.
    fn __len__(&self) -> usize {
        self.len
    }

    /// Address of the first byte of the region.
    #[getter]
    fn address(&self) -> usize {
        self.addr()
    }

    /// `"mmap"` for a private copy-on-write file mapping, `"mmap-ro"` for
    /// a read-only one, `"memory"` for memory of its own.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.owner {
            Owner::Cow(..) => "mmap",
            Owner::ReadOnly(_) => "mmap-ro",
            Owner::Anon(_) | Owner::Heap(_) | Owner::Empty => "memory",
        }
    }

    /// Whether the region is exported read-only.
    #[getter]
    fn readonly(&self) -> bool {
        self.read_only()
    }

    fn __repr__(&self) -> String {
        format!(
            "<tensorseal Buffer kind={} len={} at {:#x}>",
            self.kind(),
            self.len,
            self.addr()
        )
    }

    /// Exposes the region as a contiguous byte buffer: writable, except a
    /// read-only mapping (a writable request for it raises BufferError).
    ///
    /// # Safety
    /// Called by the interpreter with a valid `view` pointer.
    #[cfg(not(feature = "abi3"))]
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("view is null"));
        }
        let this = slf.get();
        let len = ffi::Py_ssize_t::try_from(this.len)
            .map_err(|_| PyBufferError::new_err("buffer too large"))?;
        let readonly = c_int::from(this.read_only());
        // SAFETY: `view` is the non-null Py_buffer the interpreter passed;
        // PyBuffer_FillInfo stores a new reference to `slf` in it (keeping
        // the memory alive until the view is released) and describes `len`
        // bytes at `ptr`, which this object owns, writable unless
        // `readonly` (it refuses a PyBUF_WRITABLE request then).
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(view, slf.as_ptr(), this.ptr.cast(), len, readonly, flags)
        };
        if rc != 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    /// Nothing to release: the memory lives as long as the object.
    ///
    /// # Safety
    /// Called by the interpreter.
    #[cfg(not(feature = "abi3"))]
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}
