//! Streaming tensor bytes, the fifth step of the pipeline: each planned
//! tensor is copied from its checkpoint to a sink in logical row-major order
//! and little-endian. Contiguous views are read in pieces on a helper thread
//! (positioned reads overlapping the writes), compressed members decoded as
//! a stream, and other views materialised piece by piece, byte-swapped when
//! the file is big-endian. A [`Streamer`] owns every buffer this takes, and
//! the inflated storages that several views share.

use std::collections::HashMap;
use std::sync::mpsc;

use tensorseal_format::Dtype;
use xxhash_rust::xxh3::Xxh3;

use crate::dtypes::swap_unit;
use crate::error::ConvertError;
use crate::sources::Checkpoint;
use crate::view::TensorRef;

/// Where streamed bytes go; its error stops the stream and is returned as is.
pub(crate) type Sink<'a> = dyn FnMut(&[u8]) -> Result<(), ConvertError> + 'a;

/// Size of the pieces non-contiguous views are materialised in.
const CHUNK: usize = 1 << 20;

/// Size of one piece read ahead by [`Streamer::pipelined_read`].
const PIPE_CHUNK: usize = 1 << 20;

/// Pieces read ahead of the sink.
const PIPE_DEPTH: usize = 3;

/// Read-ahead buffers kept between tensors.
const SPARE_BUFFERS: usize = PIPE_DEPTH + 2;

/// The buffers of one conversion (or one verification): read-ahead pieces
/// kept between tensors so that many tensors do not allocate and zero new
/// ones each time, the buffer views are materialised in, and compressed
/// storages that more than one view still needs, inflated once.
#[derive(Default)]
pub(crate) struct Streamer {
    spare: Vec<Vec<u8>>,
    gather: Vec<u8>,
    /// Views still to stream per `(input, storage)`, counted for views that
    /// are materialised (see [`Streamer::expect`]).
    uses: HashMap<(usize, String), usize>,
    /// Inflated compressed storages, kept while views of them remain.
    inflated: HashMap<(usize, String), Vec<u8>>,
}

/// Whether a view is materialised element by element (not copied as one
/// range): non-contiguous, or byte-swapped.
fn materialised(t: &TensorRef) -> bool {
    let swap = t.big_endian && swap_unit(t.dtype).is_some_and(|u| u > 1);
    !t.is_contiguous() || swap
}

impl Streamer {
    /// A streamer that knows nothing of the tensors to come: a compressed
    /// storage is inflated for each view that needs it.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Announces the views that will be streamed, as `(input, view)`: a
    /// compressed storage that two or more materialised views read is then
    /// inflated once and kept until the last of them is streamed.
    pub(crate) fn expect<'a>(&mut self, views: impl Iterator<Item = (usize, &'a TensorRef)>) {
        for (input, t) in views {
            if materialised(t) {
                *self.uses.entry((input, t.storage.clone())).or_default() += 1;
            }
        }
    }

    fn take_buf(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_else(|| vec![0u8; PIPE_CHUNK])
    }

    fn put_buf(&mut self, buf: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS && buf.len() == PIPE_CHUNK {
            self.spare.push(buf);
        }
    }

    /// Streams the tensor's bytes, in logical row-major order and
    /// little-endian, to `sink` (in pieces of at most a few MiB), feeding the
    /// same bytes to `hasher` first when one is given. `input` is the index
    /// of `ck` among the conversion's inputs (see [`Streamer::expect`]).
    pub(crate) fn emit(
        &mut self,
        input: usize,
        ck: &Checkpoint,
        name: &str,
        t: &TensorRef,
        mut hasher: Option<&mut Xxh3>,
        sink: &mut Sink<'_>,
    ) -> Result<(), ConvertError> {
        let terr = |why: String| ConvertError::Tensor {
            path: ck.path().to_owned(),
            name: name.to_owned(),
            why,
        };
        let es = t
            .dtype
            .byte_size()
            .ok_or_else(|| terr(format!("dtype {} is not byte-sized", t.dtype)))?;
        let numel = t
            .numel()
            .ok_or_else(|| terr(format!("shape {:?} overflows", t.shape)))?;
        let key = (input, t.storage.clone());
        let last_use = match self.uses.get_mut(&key) {
            Some(n) if materialised(t) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            _ => true,
        };
        if numel == 0 {
            if last_use {
                self.uses.remove(&key);
                self.inflated.remove(&key);
            }
            return Ok(());
        }
        let storage_len = match ck.storage_range(&t.storage) {
            Some(r) => r.len(),
            None => ck.storage_len(&t.storage)?,
        };
        // Highest element index the view touches, checked against the storage.
        let mut last = t.offset;
        for (&d, &s) in t.shape.iter().zip(&t.stride) {
            last = (d - 1)
                .checked_mul(s)
                .and_then(|x| last.checked_add(x))
                .ok_or_else(|| terr("view extent overflows".into()))?;
        }
        let need = last
            .checked_add(1)
            .and_then(|n| n.checked_mul(es))
            .and_then(|n| n.checked_add(t.byte_offset))
            .ok_or_else(|| terr("view extent overflows".into()))?;
        if need > storage_len {
            return Err(terr(format!(
                "view (offset {}, size {:?}, stride {:?}) needs {need} bytes of storage `{}`, which has {}",
                t.offset,
                t.shape,
                t.stride,
                t.storage,
                storage_len
            )));
        }
        let base = t.byte_offset + t.offset * es;
        if !materialised(t) {
            if let Some(r) = ck.storage_range(&t.storage) {
                if ck.can_read_at() {
                    // Positioned reads (and hashing) on a second thread while
                    // this one hands the previous piece to the sink: reading
                    // and writing overlap on two cores, and resident memory
                    // stays at a few pieces.
                    return self.pipelined_read(ck, r.start + base, numel * es, hasher, sink);
                }
            }
            if ck.is_compressed(&t.storage) {
                // Streamed through a buffer; only the bytes up to the
                // tensor's end are decoded.
                return ck.stream_storage(&t.storage, base, numel * es, &mut |piece| {
                    feed(&mut hasher, sink, piece)
                });
            }
            let storage = ck.storage(&t.storage)?;
            let bytes = storage
                .get(base..base + numel * es)
                .ok_or_else(|| terr("out of range".into()))?;
            for piece in bytes.chunks(64 << 20) {
                feed(&mut hasher, sink, piece)?;
            }
            return Ok(());
        }
        // A compressed storage that later views read too is inflated whole,
        // once; otherwise only as far as this view reaches.
        if !last_use && ck.is_compressed(&t.storage) && !self.inflated.contains_key(&key) {
            let whole = ck.storage_upto(&t.storage, storage_len)?.into_owned();
            self.inflated.insert(key.clone(), whole);
        }
        let Streamer {
            gather, inflated, ..
        } = &mut *self;
        let storage = match inflated.get(&key) {
            Some(b) => std::borrow::Cow::Borrowed(b.as_slice()),
            None => ck.storage_upto(&t.storage, need)?,
        };
        let r = gather_view(t, es, numel, &storage, gather, &mut |b| {
            feed(&mut hasher, sink, b)
        })
        .map_err(|()| terr("out of range".into()));
        drop(storage);
        if last_use {
            self.uses.remove(&key);
            self.inflated.remove(&key);
        }
        r?
    }

    /// Reads `len` bytes at file offset `at` of `ck` in `PIPE_CHUNK` pieces
    /// on a helper thread, which also feeds them to `hasher`, and passes them
    /// to `sink` in order on this thread, keeping at most `PIPE_DEPTH` pieces
    /// in flight. The first error (read or sink) stops both sides.
    fn pipelined_read(
        &mut self,
        ck: &Checkpoint,
        at: usize,
        len: usize,
        hasher: Option<&mut Xxh3>,
        sink: &mut Sink<'_>,
    ) -> Result<(), ConvertError> {
        let mut hasher = hasher;
        if len <= PIPE_CHUNK {
            // One piece: no helper thread.
            let mut buf = self.take_buf();
            let r = match buf.get_mut(..len) {
                Some(piece) => ck
                    .read_at(at, piece)
                    .and_then(|_| feed(&mut hasher, sink, piece)),
                None => Err(ConvertError::format(ck.path(), "read past the buffer")),
            };
            self.put_buf(buf);
            return r;
        }
        type Piece = Result<(Vec<u8>, usize), ConvertError>;
        let (full_tx, full_rx) = mpsc::sync_channel::<Piece>(PIPE_DEPTH);
        // Buffers go back to the reader through `empty`, so that the pieces
        // of one tensor reuse a few buffers.
        let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
        for _ in 0..SPARE_BUFFERS {
            let buf = self.take_buf();
            let _ = empty_tx.send(buf);
        }
        let (result, returned) = std::thread::scope(|s| {
            // Both owned by this closure, so that an early return drops them
            // before the scope joins the reader: a reader blocked on a full
            // channel then sees the disconnect and stops instead of waiting
            // forever.
            let full_rx = full_rx;
            let empty_tx = empty_tx;
            let reader = s.spawn(move || {
                let mut done = 0usize;
                while done < len {
                    let n = PIPE_CHUNK.min(len - done);
                    let mut buf = empty_rx
                        .try_recv()
                        .unwrap_or_else(|_| vec![0u8; PIPE_CHUNK]);
                    let piece = match buf.get_mut(..n) {
                        Some(p) => ck.read_at(at + done, p).map(|_| {
                            if let Some(h) = hasher.as_mut() {
                                h.update(p);
                            }
                        }),
                        None => Err(ConvertError::format(ck.path(), "read past the buffer")),
                    };
                    let piece = piece.map(|()| (buf, n));
                    let failed = piece.is_err();
                    if full_tx.send(piece).is_err() || failed {
                        break; // the sink stopped, or this read failed
                    }
                    done += n;
                }
                empty_rx
            });
            let mut done = 0usize;
            let result = (|| {
                while done < len {
                    let (buf, n) = match full_rx.recv() {
                        Ok(piece) => piece?,
                        Err(_) => {
                            return Err(ConvertError::io(
                                ck.path(),
                                std::io::Error::other("reader thread stopped"),
                            ))
                        }
                    };
                    let written = sink(buf.get(..n).unwrap_or(&[]));
                    done += n;
                    let _ = empty_tx.send(buf);
                    written?;
                }
                Ok(())
            })();
            drop(full_rx);
            drop(empty_tx);
            (result, reader.join().ok())
        });
        if let Some(empty_rx) = returned {
            for buf in empty_rx.try_iter() {
                self.put_buf(buf);
            }
        }
        result
    }
}

/// Feeds `bytes` to the hasher, if any, then to the sink.
fn feed(
    hasher: &mut Option<&mut Xxh3>,
    sink: &mut Sink<'_>,
    bytes: &[u8],
) -> Result<(), ConvertError> {
    if let Some(h) = hasher.as_mut() {
        h.update(bytes);
    }
    sink(bytes)
}

/// Materialises view `t` (elements of `es` bytes, `numel` of them, its
/// extent already checked against `storage`) in logical order through
/// `buf`, handing pieces of about [`CHUNK`] bytes to `out`. `Err(())`: an
/// element outside `storage`.
fn gather_view(
    t: &TensorRef,
    es: usize,
    numel: usize,
    storage: &[u8],
    buf: &mut Vec<u8>,
    out: &mut Sink<'_>,
) -> Result<Result<(), ConvertError>, ()> {
    let unit = if t.dtype == Dtype::C64 { es / 2 } else { es };
    let swap = t.big_endian && unit > 1;
    buf.clear();
    buf.reserve(CHUNK.min(numel * es) + es);
    let nd = t.shape.len();
    let mut idx = vec![0usize; nd];
    let (inner_len, inner_stride) = match nd {
        0 => (1, 1),
        _ => (t.shape[nd - 1], t.stride[nd - 1]),
    };
    loop {
        // Element offset of idx (inner dimension at 0).
        let mut off = t.offset;
        for (i, s) in idx.iter().zip(&t.stride).take(nd.saturating_sub(1)) {
            off += i * s;
        }
        if inner_stride == 1 && !swap {
            let s = t.byte_offset + off * es;
            buf.extend_from_slice(storage.get(s..s + inner_len * es).ok_or(())?);
        } else {
            for j in 0..inner_len {
                let s = t.byte_offset + (off + j * inner_stride) * es;
                let e = storage.get(s..s + es).ok_or(())?;
                if swap {
                    for u in e.chunks(unit) {
                        buf.extend(u.iter().rev());
                    }
                } else {
                    buf.extend_from_slice(e);
                }
            }
        }
        if buf.len() >= CHUNK {
            if let Err(e) = out(buf) {
                return Ok(Err(e));
            }
            buf.clear();
        }
        // Advance the outer index (all dimensions but the last).
        let mut d = nd.saturating_sub(1);
        loop {
            if d == 0 {
                if !buf.is_empty() {
                    return Ok(out(buf));
                }
                return Ok(Ok(()));
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < t.shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A torch zip holding one 5 MiB stored tensor; returns the checkpoint
    /// and the tensor's file range.
    fn big_checkpoint(dir: &std::path::Path) -> (Checkpoint, std::ops::Range<usize>) {
        use tensorseal_format::write::{FileWriter, TensorSpec, WriteOptions};
        use tensorseal_format::Durability;
        let st = dir.join("big.safetensors");
        let n = 5 << 20;
        let specs = [TensorSpec {
            name: "w".into(),
            dtype: Dtype::U8,
            shape: vec![n],
        }];
        FileWriter::create(&st, &specs, &WriteOptions::new())
            .unwrap()
            .fill_and_commit(|_, w| std::io::Write::write_all(w, &vec![7u8; n]))
            .unwrap();
        let pt = dir.join("big.pt");
        crate::torch_write::to_torch(&st, &pt, false, false, Durability::NoSync).unwrap();
        let ck = Checkpoint::open(&pt).unwrap();
        let r = ck.storage_range("0").expect("stored member");
        assert_eq!(r.len(), n);
        (ck, r)
    }

    #[test]
    fn pipelined_read_delivers_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (ck, r) = big_checkpoint(dir.path());
        let mut got = Vec::new();
        Streamer::new()
            .pipelined_read(&ck, r.start, r.len(), None, &mut |b: &[u8]| {
                assert!(b.len() <= PIPE_CHUNK);
                got.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
        assert_eq!(got.len(), r.len());
        assert!(got.iter().all(|&b| b == 7));
    }

    #[test]
    fn a_failing_sink_stops_the_reader_instead_of_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let (ck, r) = big_checkpoint(dir.path());
        // Fails on the first piece, while the reader has more than
        // PIPE_DEPTH pieces left to send.
        let mut calls = 0;
        let e = Streamer::new()
            .pipelined_read(&ck, r.start, r.len(), None, &mut |_: &[u8]| {
                calls += 1;
                Err(ConvertError::io(
                    std::path::Path::new("out"),
                    std::io::Error::other("disk full"),
                ))
            })
            .unwrap_err();
        assert!(e.to_string().contains("disk full"), "{e}");
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_read_past_the_end_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (ck, r) = big_checkpoint(dir.path());
        let file_len = std::fs::metadata(ck.path()).unwrap().len() as usize;
        let e = Streamer::new()
            .pipelined_read(
                &ck,
                r.start,
                file_len - r.start + 1,
                None,
                &mut |_: &[u8]| Ok(()),
            )
            .unwrap_err();
        assert!(matches!(e, ConvertError::Io { .. }), "{e:?}");
    }

    /// A torch zip whose one storage (`n` bytes, byte `i` = `i % 251`) is a
    /// deflated member.
    fn deflated_checkpoint(dir: &std::path::Path, n: usize) -> Checkpoint {
        use std::io::{Read, Write};
        use tensorseal_format::write::{FileWriter, TensorSpec, WriteOptions};
        use tensorseal_format::Durability;
        let st = dir.join("s.safetensors");
        let specs = [TensorSpec {
            name: "w".into(),
            dtype: Dtype::U8,
            shape: vec![n],
        }];
        let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        FileWriter::create(&st, &specs, &WriteOptions::new())
            .unwrap()
            .fill_and_commit(|_, w| w.write_all(&data))
            .unwrap();
        let stored = dir.join("stored.pt");
        crate::torch_write::to_torch(&st, &stored, false, false, Durability::NoSync).unwrap();
        let mut src = zip::ZipArchive::new(std::fs::File::open(&stored).unwrap()).unwrap();
        let packed = dir.join("deflated.pt");
        let mut out = zip::ZipWriter::new(std::fs::File::create(&packed).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for i in 0..src.len() {
            let mut f = src.by_index(i).unwrap();
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).unwrap();
            out.start_file(f.name(), opts).unwrap();
            out.write_all(&bytes).unwrap();
        }
        out.finish().unwrap();
        Checkpoint::open(&packed).unwrap()
    }

    #[test]
    fn a_compressed_storage_read_by_two_strided_views_is_inflated_once() {
        let dir = tempfile::tempdir().unwrap();
        let n = 3000;
        let ck = deflated_checkpoint(dir.path(), n);
        assert!(ck.is_compressed("0"));
        let even = TensorRef {
            storage: "0".into(),
            dtype: Dtype::U8,
            shape: vec![n / 2],
            stride: vec![2],
            offset: 0,
            byte_offset: 0,
            big_endian: false,
        };
        let odd = TensorRef {
            offset: 1,
            ..even.clone()
        };
        let key = (0, "0".to_owned());
        let mut s = Streamer::new();
        s.expect([(0, &even), (0, &odd)].into_iter());
        let mut got = Vec::new();
        s.emit(0, &ck, "even", &even, None, &mut |b| {
            got.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        // Kept for the second view, whole.
        assert_eq!(s.inflated.get(&key).map(Vec::len), Some(n));
        s.emit(0, &ck, "odd", &odd, None, &mut |b| {
            got.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        // Dropped after the last.
        assert!(s.inflated.is_empty() && s.uses.is_empty());
        let want: Vec<u8> = (0..n)
            .step_by(2)
            .chain((1..n).step_by(2))
            .map(|i| (i % 251) as u8)
            .collect();
        assert_eq!(got, want);

        // Without `expect`, nothing is kept.
        let mut s = Streamer::new();
        s.emit(0, &ck, "even", &even, None, &mut |_| Ok(()))
            .unwrap();
        assert!(s.inflated.is_empty());
    }
}
