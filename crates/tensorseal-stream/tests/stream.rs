//! The ring's protocol, ordering, errors and direct-I/O choice, on real
//! files and heap slots (the host target of the load-to-device pipeline).

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::fs::File;
use std::io::Write;
use std::path::Path;

use proptest::prelude::*;
use tensorseal_stream::align::{align_down, align_up, aligned_read, ALIGN};
use tensorseal_stream::{plan, Direct, Options, Range, Slot, Stream, StreamError};

/// Heap memory aligned to 4096 bytes, freed on drop.
struct Aligned {
    ptr: *mut u8,
    layout: Layout,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let layout = Layout::from_size_align(len, 4096).unwrap();
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        Aligned { ptr, layout }
    }
    fn slot(&self, offset: usize) -> Slot {
        // SAFETY: the memory lives until `self` drops, after the stream in
        // every test; only the stream writes to it.
        unsafe { Slot::new(self.ptr.add(offset), self.layout.size() - offset) }
    }
    fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        // SAFETY: in bounds; read only between wait and release.
        unsafe { std::slice::from_raw_parts(self.ptr.add(offset), len) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 % 251) as u8).collect()
}

fn write_file(dir: &Path, data: &[u8]) -> std::path::PathBuf {
    let path = dir.join("data.bin");
    File::create(&path).unwrap().write_all(data).unwrap();
    path
}

/// Streams every range through `slots` slots of `slot_bytes` and returns
/// the destinations' bytes; slot memory starts `misalign` bytes past an
/// aligned address.
fn stream_all(
    path: &Path,
    ranges: &[Range],
    dst_lens: &[usize],
    slot_bytes: usize,
    slots: usize,
    options: Options,
    misalign: usize,
) -> Result<(Vec<Vec<u8>>, tensorseal_stream::Stats), StreamError> {
    let chunks = plan(ranges, slot_bytes as u64)?;
    let mem: Vec<Aligned> = (0..slots)
        .map(|_| Aligned::new(slot_bytes + misalign))
        .collect();
    let stream = Stream::new(
        path,
        File::open(path).unwrap(),
        chunks.clone(),
        mem.iter().map(|m| m.slot(misalign)).collect(),
        options,
    )?;
    let mut out: Vec<Vec<u8>> = dst_lens.iter().map(|&n| vec![0u8; n]).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let (slot, skip) = stream.wait(i)?;
        assert_eq!(slot, i % slots);
        for c in &chunk.copies {
            let src = mem[slot].bytes(misalign + (skip + c.src_offset) as usize, c.len as usize);
            out[c.dst][c.dst_offset as usize..][..c.len as usize].copy_from_slice(src);
        }
        stream.release(i)?;
    }
    let stats = stream.stats();
    drop(stream);
    Ok((out, stats))
}

fn opts(direct: Direct) -> Options {
    Options { threads: 3, direct }
}

/// Whether `dir`'s file system takes O_DIRECT reads.
fn direct_works(path: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::{FileExt, OpenOptionsExt};
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
        else {
            return false;
        };
        let m = Aligned::new(4096);
        // SAFETY: 4096 valid bytes.
        let buf = unsafe { std::slice::from_raw_parts_mut(m.ptr, 4096) };
        f.read_at(buf, 0).is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        false
    }
}

#[test]
fn many_chunks_through_a_small_ring_arrive_intact_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(1_000_003);
    let path = write_file(dir.path(), &data);
    // Tensors at unaligned offsets, one split across several chunks; chunks
    // end at aligned offsets, so 1,000,003 bytes take 16 of 64 KiB.
    let bounds = [0usize, 8, 1000, 77_777, 400_001, 1_000_003];
    let ranges: Vec<Range> = bounds
        .windows(2)
        .enumerate()
        .map(|(i, w)| Range {
            offset: w[0] as u64,
            len: (w[1] - w[0]) as u64,
            dst: i,
            dst_offset: 0,
        })
        .collect();
    let lens: Vec<usize> = bounds.windows(2).map(|w| w[1] - w[0]).collect();
    for direct in [Direct::Off, Direct::On, Direct::Auto] {
        for misalign in [0, 64] {
            let (out, stats) =
                stream_all(&path, &ranges, &lens, 64 << 10, 3, opts(direct), misalign).unwrap();
            for (i, w) in bounds.windows(2).enumerate() {
                assert_eq!(out[i], data[w[0]..w[1]], "{direct:?} {misalign}");
            }
            assert_eq!(stats.direct_reads + stats.buffered_reads, 16, "{stats:?}");
            if direct == Direct::Off {
                assert_eq!(stats.direct_reads, 0);
            }
            if misalign != 0 && direct == Direct::On {
                // Misaligned slots cannot take direct reads: fallback.
                assert_eq!(stats.direct_reads, 0);
                assert_eq!(stats.direct_fallbacks, 1);
            }
        }
    }
}

#[test]
fn direct_reads_are_used_where_the_file_system_allows_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(300_000);
    let path = write_file(dir.path(), &data);
    let ranges = [Range {
        offset: 5,
        len: 299_990,
        dst: 0,
        dst_offset: 0,
    }];
    let (out, stats) =
        stream_all(&path, &ranges, &[299_990], 64 << 10, 2, opts(Direct::On), 0).unwrap();
    assert_eq!(out[0], data[5..299_995]);
    if direct_works(&path) {
        assert!(stats.direct_reads > 0, "{stats:?}");
        assert_eq!(stats.direct_fallbacks, 0);
    } else {
        assert_eq!(stats.direct_reads, 0, "{stats:?}");
        assert_eq!(stats.direct_fallbacks, 1);
    }
}

#[test]
fn a_file_truncated_while_loading_is_an_error_for_every_later_wait() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(1 << 20);
    let path = write_file(dir.path(), &data);
    let ranges = [Range {
        offset: 0,
        len: 1 << 20,
        dst: 0,
        dst_offset: 0,
    }];
    for direct in [Direct::Off, Direct::On] {
        File::create(&path).unwrap().write_all(&data).unwrap();
        let chunks = plan(&ranges, 64 << 10).unwrap();
        let mem: Vec<Aligned> = (0..2).map(|_| Aligned::new(64 << 10)).collect();
        let stream = Stream::new(
            &path,
            File::open(&path).unwrap(),
            chunks,
            mem.iter().map(|m| m.slot(0)).collect(),
            opts(direct),
        )
        .unwrap();
        stream.wait(0).unwrap();
        stream.wait(1).unwrap();
        // Chunks 2 and 3 need slots 0 and 1: they cannot have been read yet.
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(131_072)
            .unwrap();
        stream.release(0).unwrap();
        stream.release(1).unwrap();
        let err = stream.wait(2).unwrap_err();
        assert!(
            // Chunk 2's reader, or chunk 3's (slot 1 is free again), fails first.
            matches!(err, StreamError::Truncated { offset, got: 0, .. } if offset >= 131072),
            "{err}"
        );
        assert_eq!(err.kind(), "file_truncated");
        assert!(err.to_string().contains("truncated"), "{err}");
        // Cancelled: every later wait gives the same error, none blocks.
        assert_eq!(stream.wait(3).unwrap_err().kind(), "file_truncated");
        stream.close();
        assert_eq!(stream.wait(3).unwrap_err().kind(), "file_truncated");
    }
}

#[test]
fn out_of_turn_waits_and_releases_are_errors_not_deadlocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), &pattern(200_000));
    let ranges = [Range {
        offset: 0,
        len: 200_000,
        dst: 0,
        dst_offset: 0,
    }];
    let chunks = plan(&ranges, 16 << 10).unwrap();
    assert!(chunks.len() > 4);
    let mem: Vec<Aligned> = (0..2).map(|_| Aligned::new(16 << 10)).collect();
    let stream = Stream::new(
        &path,
        File::open(&path).unwrap(),
        chunks.clone(),
        mem.iter().map(|m| m.slot(0)).collect(),
        opts(Direct::Off),
    )
    .unwrap();
    assert_eq!(stream.wait(2).unwrap_err().kind(), "chunk_order");
    assert_eq!(stream.wait(chunks.len()).unwrap_err().kind(), "chunk_order");
    // Out of order within the ring is fine.
    stream.wait(1).unwrap();
    stream.wait(0).unwrap();
    stream.release(1).unwrap();
    assert_eq!(stream.release(1).unwrap_err().kind(), "chunk_order");
    assert_eq!(stream.wait(1).unwrap_err().kind(), "chunk_order");
    stream.release(0).unwrap();
    stream.wait(2).unwrap();
    stream.cancel();
    assert!(matches!(stream.wait(3), Err(StreamError::Cancelled)));
}

#[test]
fn closing_midway_joins_every_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), &pattern(1 << 20));
    let ranges = [Range {
        offset: 0,
        len: 1 << 20,
        dst: 0,
        dst_offset: 0,
    }];
    let mem: Vec<Aligned> = (0..2).map(|_| Aligned::new(16 << 10)).collect();
    let stream = Stream::new(
        &path,
        File::open(&path).unwrap(),
        plan(&ranges, 16 << 10).unwrap(),
        mem.iter().map(|m| m.slot(0)).collect(),
        Options {
            threads: 6,
            direct: Direct::Off,
        },
    )
    .unwrap();
    assert_eq!(stream.stats().threads, 6);
    stream.wait(0).unwrap();
    assert!(stream.live_threads() > 0);
    stream.close();
    assert_eq!(stream.live_threads(), 0);
    drop(stream);
    drop(mem);
}

#[test]
fn slots_too_small_and_bad_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), &pattern(100_000));
    let ranges = [Range {
        offset: 1,
        len: 99_999,
        dst: 0,
        dst_offset: 0,
    }];
    assert_eq!(plan(&ranges, 4096).unwrap_err().kind(), "staging_slot_size");
    assert_eq!(
        plan(&ranges, 10_000).unwrap_err().kind(),
        "staging_slot_size"
    );
    let overflow = [Range {
        offset: u64::MAX,
        len: 2,
        dst: 0,
        dst_offset: 0,
    }];
    assert_eq!(plan(&overflow, 8192).unwrap_err().kind(), "range_overflow");
    let mem = Aligned::new(8192);
    let err = Stream::new(
        &path,
        File::open(&path).unwrap(),
        plan(&ranges, 16384).unwrap(),
        vec![mem.slot(0)],
        opts(Direct::Off),
    )
    .err()
    .unwrap();
    assert_eq!(err.kind(), "staging_slot");
    let err = Stream::new(
        &path,
        File::open(&path).unwrap(),
        Vec::new(),
        vec![],
        opts(Direct::Off),
    )
    .err()
    .unwrap();
    assert_eq!(err.kind(), "staging_slot");
}

#[test]
fn empty_plans_start_no_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), &pattern(10));
    let ranges = [Range {
        offset: 3,
        len: 0,
        dst: 0,
        dst_offset: 0,
    }];
    let chunks = plan(&ranges, 8192).unwrap();
    assert!(chunks.is_empty());
    let mem = Aligned::new(8192);
    let s = Stream::new(
        &path,
        File::open(&path).unwrap(),
        chunks,
        vec![mem.slot(0)],
        opts(Direct::On),
    )
    .unwrap();
    assert_eq!(s.stats().threads, 0);
    assert_eq!(s.wait(0).unwrap_err().kind(), "chunk_order");
}

proptest! {
    #[test]
    fn aligned_reads_cover_and_are_aligned(offset in 0u64..1 << 40, len in 0u64..1 << 30) {
        let r = aligned_read(offset, len).unwrap();
        prop_assert_eq!(r.start % ALIGN, 0);
        prop_assert_eq!(r.len % ALIGN, 0);
        prop_assert!(r.start <= offset);
        prop_assert_eq!(r.start + r.skip, offset);
        prop_assert!(r.start + r.len >= offset + len);
        // Smallest: one block less would not cover.
        prop_assert!(r.skip < ALIGN);
        prop_assert!(r.start + r.len < offset + len + ALIGN);
        prop_assert_eq!(align_down(offset) % ALIGN, 0);
        prop_assert!(align_up(u64::MAX).is_none());
        prop_assert!(aligned_read(u64::MAX - 1, 5).is_none());
    }

    #[test]
    fn plans_deliver_every_wanted_byte_once_within_slots(
        sizes in proptest::collection::vec(0u64..50_000, 1..20),
        gaps in proptest::collection::vec(0u64..100_000, 20),
        start in 0u64..10_000,
        slot_blocks in 2u64..20,
        reverse in any::<bool>(),
    ) {
        let slot_bytes = slot_blocks * ALIGN;
        let mut ranges = Vec::new();
        let mut at = start;
        for (i, &n) in sizes.iter().enumerate() {
            ranges.push(Range { offset: at, len: n, dst: i, dst_offset: 7 });
            at += n + gaps[i];
        }
        if reverse {
            ranges.reverse();
        }
        let chunks = plan(&ranges, slot_bytes).unwrap();
        let mut covered: Vec<Vec<bool>> = sizes.iter().map(|&n| vec![false; n as usize]).collect();
        let mut last_end = 0;
        for c in &chunks {
            prop_assert!(c.len > 0);
            prop_assert!(c.offset >= last_end, "chunks in file order, disjoint");
            last_end = c.offset + c.len;
            prop_assert!(aligned_read(c.offset, c.len).unwrap().len <= slot_bytes);
            for cp in &c.copies {
                prop_assert!(cp.src_offset + cp.len <= c.len);
                let r = ranges.iter().find(|r| r.dst == cp.dst).unwrap();
                // The bytes copied are the range's bytes at that position.
                prop_assert_eq!(c.offset + cp.src_offset - r.offset, cp.dst_offset - r.dst_offset);
                for b in cp.dst_offset - 7..cp.dst_offset - 7 + cp.len {
                    let seen = &mut covered[cp.dst][b as usize];
                    prop_assert!(!*seen, "byte delivered twice");
                    *seen = true;
                }
            }
        }
        prop_assert!(covered.iter().all(|v| v.iter().all(|&b| b)), "every byte delivered");
    }
}
