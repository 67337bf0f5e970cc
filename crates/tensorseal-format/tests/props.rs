//! Property tests: write→read round trips (in memory, through files, against
//! the reference crate's bytes) and slices against a naive implementation of
//! numpy/CPython slice semantics.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tensorseal_format::slice::plan_for;
use tensorseal_format::write::{Durability, FileWriter, Layout, TensorSpec, WriteOptions};
use tensorseal_format::{
    byte_size, serialize, Dtype, MmapFile, PreadFile, ReadTensors, SafeTensors, SliceArg,
    TensorView,
};

fn dtype() -> impl Strategy<Value = Dtype> {
    (0..Dtype::ALL.len()).prop_map(|i| Dtype::ALL[i])
}

/// A tensor: name, dtype, shape (made whole-byte for sub-byte dtypes), data.
fn tensor() -> impl Strategy<Value = (String, Dtype, Vec<usize>, Vec<u8>)> {
    (
        "[a-zA-Z0-9_.é/\\- ]{1,12}",
        dtype(),
        prop::collection::vec(0usize..5, 0..4),
        any::<u64>(),
    )
        .prop_map(|(name, d, mut shape, seed)| {
            if byte_size("t", d, &shape).is_err() {
                shape.push(4);
            }
            let n = byte_size("t", d, &shape).unwrap();
            let data = (0..n)
                .map(|i| (seed.wrapping_mul(i as u64 + 1) >> 7) as u8)
                .collect();
            (name, d, shape, data)
        })
}

fn tensors() -> impl Strategy<Value = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>> {
    prop::collection::vec(tensor(), 0..8).prop_map(|mut v| {
        let mut seen = std::collections::HashSet::new();
        v.retain(|t| seen.insert(t.0.clone()));
        v
    })
}

/// The writer's specs for generated tensors.
fn specs_of(ts: &[(String, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<TensorSpec> {
    ts.iter()
        .map(|(n, d, s, _)| TensorSpec {
            name: n.clone(),
            dtype: *d,
            shape: s.clone(),
        })
        .collect()
}

fn metadata() -> impl Strategy<Value = Option<BTreeMap<String, String>>> {
    prop::option::of(prop::collection::btree_map(
        "[a-z_\"\\\\]{0,6}",
        "[ -~é\n]{0,10}",
        0..4,
    ))
}

fn ref_dtype(d: Dtype) -> safetensors::Dtype {
    // Names are identical in both crates.
    let json = format!("\"{}\"", d.as_str());
    serde_json::from_str(&json).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn write_then_read(ts in tensors(), meta in metadata()) {
        let views: Vec<(String, TensorView)> = ts
            .iter()
            .map(|(n, d, s, data)| (n.clone(), TensorView::new(*d, s.clone(), data).unwrap()))
            .collect();
        let opts = WriteOptions::new().with_metadata_opt(meta.clone());
        let bytes = serialize(views.iter().map(|(n, v)| (n, v)), &opts).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        prop_assert_eq!(st.metadata(), meta.as_ref());
        prop_assert_eq!(st.len(), ts.len());
        for (n, d, s, data) in &ts {
            let v = st.tensor(n).unwrap();
            prop_assert_eq!(v.dtype(), *d);
            prop_assert_eq!(v.shape(), &s[..]);
            prop_assert_eq!(v.data(), &data[..]);
        }
        // Header length is a multiple of 8; data follows the padded header.
        prop_assert_eq!(st.data_start() % 8, 0);

        // The reference crate reads it, and writes the same bytes when the
        // metadata has at most one key.
        let r = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        prop_assert_eq!(r.len(), ts.len());
        // (The reference writes an invalid header, `{},"__metadata__":{}}`,
        // for no tensors and an empty metadata map: serde_json closes a map
        // whose length hint is 0 at once. We write valid JSON there.)
        let reference_bug = ts.is_empty() && meta.as_ref().is_some_and(|m| m.is_empty());
        if meta.as_ref().is_none_or(|m| m.len() <= 1) && !reference_bug {
            let rviews: Vec<(String, safetensors::tensor::TensorView)> = ts
                .iter()
                .map(|(n, d, s, data)| {
                    (n.clone(), safetensors::tensor::TensorView::new(ref_dtype(*d), s.clone(), data).unwrap())
                })
                .collect();
            let rmeta = meta.clone().map(|m| m.into_iter().collect());
            prop_assert_eq!(safetensors::serialize(rviews, rmeta).unwrap(), bytes.clone());
        }

        // Streaming file writer: same bytes, readable by every reader.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let specs = specs_of(&ts);
        FileWriter::create(&path, &specs, &opts).unwrap().fill_and_commit(|i, w| w.write_all(&ts[i].3)).unwrap();
        prop_assert_eq!(std::fs::read(&path).unwrap(), bytes.clone());
        let m = MmapFile::open(&path).unwrap();
        let p = PreadFile::open(&path).unwrap();
        for (n, _, _, data) in &ts {
            prop_assert_eq!(m.tensor(n).unwrap().data(), &data[..]);
            prop_assert_eq!(&p.read_tensor(n).unwrap().data, data);
        }
        prop_assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        // Without fsync: the same bytes, the same single file.
        let fast = dir.path().join("fast.safetensors");
        let nosync = opts.clone().with_durability(Durability::NoSync);
        FileWriter::create(&fast, &specs, &nosync).unwrap().fill_and_commit(|i, w| w.write_all(&ts[i].3)).unwrap();
        prop_assert_eq!(std::fs::read(&fast).unwrap(), bytes.clone());
        prop_assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn short_fill_leaves_no_file(ts in tensors().prop_filter("has data", |v| v.iter().any(|t| !t.3.is_empty()))) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let specs = specs_of(&ts);
        let e = FileWriter::create(&path, &specs, &WriteOptions::new()).unwrap().fill_and_commit(|i, w| {
            let d = &ts[i].3;
            w.write_all(&d[..d.len().saturating_sub(1)])
        })
        .unwrap_err();
        prop_assert_eq!(e.kind(), "invalid_write");
        prop_assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Writing more than declared is refused too.
        let e = FileWriter::create(&path, &specs, &WriteOptions::new()).unwrap().fill_and_commit(|i, w| {
            w.write_all(&ts[i].3)?;
            w.write_all(&[0])
        })
        .unwrap_err();
        prop_assert_eq!(e.kind(), "io");
        prop_assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Same without fsync: nothing appears at the target, no temporary file stays.
        let nosync = WriteOptions::new().with_durability(Durability::NoSync);
        let e = FileWriter::create(&path, &specs, &nosync).unwrap().fill_and_commit(|i, w| {
            let d = &ts[i].3;
            w.write_all(&d[..d.len().saturating_sub(1)])
        })
        .unwrap_err();
        prop_assert_eq!(e.kind(), "invalid_write");
        prop_assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn layout_offsets_tile(ts in tensors(), meta in metadata()) {
        let specs = specs_of(&ts);
        let l = Layout::plan(&specs, meta.as_ref()).unwrap();
        let mut end = 0;
        for &i in l.order() {
            prop_assert_eq!(l.offsets()[i].start, end);
            end = l.offsets()[i].end;
        }
        prop_assert_eq!(end, l.data_len());
        prop_assert_eq!(l.header_bytes().len() % 8, 0);
    }
}

/// CPython's `slice.indices` + `range`, the reference semantics.
fn naive_indices(start: Option<i64>, stop: Option<i64>, step: i64, n: usize) -> Vec<usize> {
    let n = n as i64;
    let (lower, upper) = if step < 0 { (-1, n - 1) } else { (0, n) };
    let fix = |v: Option<i64>, default: i64| match v {
        None => default,
        Some(v) if v < 0 => (v + n).max(lower),
        Some(v) => v.min(upper),
    };
    let start = fix(start, if step < 0 { upper } else { lower });
    let stop = fix(stop, if step < 0 { lower } else { upper });
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && i > stop) {
        out.push(i as usize);
        i += step;
    }
    out
}

/// Gathers a slice element by element; `None` where numpy raises.
fn naive_slice(
    shape: &[usize],
    elem: usize,
    data: &[u8],
    args: &[SliceArg],
) -> Option<(Vec<usize>, Vec<u8>)> {
    let mut per_dim: Vec<(Vec<usize>, bool)> = Vec::new();
    let explicit = args.iter().filter(|a| **a != SliceArg::Ellipsis).count();
    if explicit > shape.len() || args.iter().filter(|a| **a == SliceArg::Ellipsis).count() > 1 {
        return None;
    }
    let mut d = 0;
    for a in args {
        match *a {
            SliceArg::Ellipsis => {
                for _ in 0..shape.len() - explicit {
                    per_dim.push(((0..shape[d]).collect(), true));
                    d += 1;
                }
            }
            SliceArg::Index(i) => {
                let n = shape[d] as i64;
                let j = if i < 0 { i + n } else { i };
                if j < 0 || j >= n {
                    return None;
                }
                per_dim.push((vec![j as usize], false));
                d += 1;
            }
            SliceArg::Range { start, stop, step } => {
                if step == 0 {
                    return None;
                }
                per_dim.push((naive_indices(start, stop, step, shape[d]), true));
                d += 1;
            }
        }
    }
    while d < shape.len() {
        per_dim.push(((0..shape[d]).collect(), true));
        d += 1;
    }
    let out_shape = per_dim.iter().filter(|p| p.1).map(|p| p.0.len()).collect();
    let mut strides = vec![1usize; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * shape[k + 1];
    }
    let mut out = Vec::new();
    let total: usize = per_dim.iter().map(|p| p.0.len()).product();
    for flat in 0..total {
        let mut rem = flat;
        let mut src = 0;
        for k in (0..shape.len()).rev() {
            let len = per_dim[k].0.len();
            src += per_dim[k].0[rem % len] * strides[k];
            rem /= len;
        }
        out.extend_from_slice(&data[src * elem..(src + 1) * elem]);
    }
    Some((out_shape, out))
}

/// A reader that counts the bytes it is asked for.
struct Counting<'a> {
    inner: SafeTensors<'a>,
    read: std::cell::Cell<usize>,
}

impl ReadTensors for Counting<'_> {
    fn header(&self) -> &tensorseal_format::Header {
        self.inner.header()
    }
    fn data_start(&self) -> usize {
        self.inner.data_start()
    }
    fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), tensorseal_format::FormatError> {
        self.read.set(self.read.get() + buf.len());
        self.inner.read_at(offset, buf)
    }
}

fn slice_arg() -> impl Strategy<Value = SliceArg> {
    prop_oneof![
        (-7i64..7).prop_map(SliceArg::Index),
        (
            prop::option::of(-8i64..8),
            prop::option::of(-8i64..8),
            prop_oneof![Just(1i64), Just(2), Just(3), Just(-1), Just(-2), Just(0)]
        )
            .prop_map(|(start, stop, step)| SliceArg::Range { start, stop, step }),
        Just(SliceArg::Ellipsis),
        Just(SliceArg::FULL),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn slices_match_naive(
        shape in prop::collection::vec(0usize..6, 0..5),
        d in prop_oneof![Just(Dtype::U8), Just(Dtype::BF16), Just(Dtype::F32), Just(Dtype::C64)],
        args in prop::collection::vec(slice_arg(), 0..5),
    ) {
        let elem = d.byte_size().unwrap();
        let n = byte_size("t", d, &shape).unwrap();
        let data: Vec<u8> = (0..n).map(|i| (i * 31 % 251) as u8).collect();
        let want = naive_slice(&shape, elem, &data, &args);
        let got = plan_for("t", d, &shape, &args);
        match (want, got) {
            (None, Err(e)) => prop_assert_eq!(e.kind(), "invalid_slice"),
            (None, Ok(p)) => prop_assert!(false, "numpy refuses {:?} on {:?}, we planned {:?}", args, shape, p.shape()),
            (Some(_), Err(e)) => prop_assert!(false, "{:?} on {:?}: {}", args, shape, e),
            (Some((ws, wd)), Ok(p)) => {
                prop_assert_eq!(p.shape(), &ws[..]);
                prop_assert_eq!(p.byte_len(), wd.len());
                let mut out = vec![0u8; p.byte_len()];
                p.copy_into(&data, &mut out).unwrap();
                prop_assert_eq!(&out, &wd);
                // Runs are coalesced: no run ends where the next begins.
                let runs: Vec<_> = p.runs().collect();
                for w in runs.windows(2) {
                    prop_assert!(w[0].0 + w[0].1 != w[1].0);
                }
                // Readers agree (through a real file).
                let view = TensorView::new(d, shape.clone(), &data).unwrap();
                let bytes = serialize([("t", view)], &WriteOptions::new()).unwrap();
                let st = SafeTensors::deserialize(&bytes).unwrap();
                prop_assert_eq!(&st.read_slice("t", &args).unwrap().data, &wd);
                // Only the bytes of the slice are read, each once.
                let counting = Counting { inner: st, read: std::cell::Cell::new(0) };
                prop_assert_eq!(&counting.read_slice("t", &args).unwrap().data, &wd);
                prop_assert_eq!(counting.read.get(), wd.len());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// F4 (two elements per byte): slicing only leading dimensions of a
    /// tensor whose rows are whole bytes always works and equals the same
    /// slice of the byte matrix; cutting a byte in half is refused.
    #[test]
    fn f4_slices_on_byte_boundaries(
        lead in prop::collection::vec(1usize..5, 1..3),
        half_cols in 1usize..4,
        args in prop::collection::vec(slice_arg(), 0..3),
    ) {
        let mut shape = lead.clone();
        shape.push(2 * half_cols);
        let n = byte_size("t", Dtype::F4, &shape).unwrap();
        let data: Vec<u8> = (0..n).map(|i| (i * 37 % 253) as u8).collect();
        // The same data seen as U8 with the last dimension halved.
        let mut byte_shape = lead.clone();
        byte_shape.push(half_cols);
        let explicit = args.iter().filter(|a| **a != SliceArg::Ellipsis).count();
        let mut lead_args = args.clone();
        if explicit >= shape.len() || args.contains(&SliceArg::Ellipsis) {
            lead_args.truncate(0);
        }
        let want = naive_slice(&byte_shape, 1, &data, &lead_args);
        let got = plan_for("t", Dtype::F4, &shape, &lead_args);
        match (want, got) {
            (None, Err(e)) => prop_assert_eq!(e.kind(), "invalid_slice"),
            (Some((ws, wd)), Ok(p)) => {
                let mut s = ws.clone();
                if let Some(last) = s.last_mut() { *last *= 2; }
                prop_assert_eq!(p.shape(), &s[..]);
                let mut out = vec![0u8; p.byte_len()];
                p.copy_into(&data, &mut out).unwrap();
                prop_assert_eq!(out, wd);
            }
            (w, g) => prop_assert!(false, "naive {:?} vs plan {:?}", w.map(|x| x.0), g.map(|p| p.shape().to_vec())),
        }
        // Taking one F4 element of a row splits a byte: refused.
        let mut one = vec![SliceArg::Ellipsis, SliceArg::range(0, 1)];
        prop_assert_eq!(plan_for("t", Dtype::F4, &shape, &one).unwrap_err().kind(), "invalid_slice");
        one[1] = SliceArg::range(0, 2);
        prop_assert!(plan_for("t", Dtype::F4, &shape, &one).is_ok());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Naming a file from its first bytes never panics, on any input.
    #[test]
    fn sniff_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = tensorseal_format::sniff::sniff(&bytes);
    }

    /// A file our writer produced, cut inside its header, is reported as
    /// truncated ("past the end"), never as another format, whatever its
    /// length prefix looks like.
    #[test]
    fn truncated_files_are_not_misnamed(ts in tensors(), meta in metadata(), cut in any::<prop::sample::Index>()) {
        let opts = WriteOptions::new().with_metadata_opt(meta);
        let views: Vec<(String, TensorView)> = ts
            .iter()
            .map(|(n, d, s, data)| (n.clone(), TensorView::new(*d, s.clone(), data).unwrap()))
            .collect();
        let bytes = serialize(views, &opts).unwrap();
        let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let at = 8 + cut.index(header_end - 8);
        let e = SafeTensors::deserialize(&bytes[..at]).unwrap_err();
        prop_assert_eq!(e.kind(), "header_past_end");
    }
}
