//! Property tests: planned runs reassemble exactly the block a strided
//! element-by-element slice would take, and are the runs of the list-based
//! definition (one per outer index, coalesced); tensor_split block sizes;
//! loading and saving without gathering round-trip through real files.

use proptest::prelude::*;
use tensorseal_format::write::{Layout, TensorSpec};
use tensorseal_format::{serialize, Dtype, TensorView, WriteOptions};
use tensorseal_parallel::{
    full_specs, select, tensor_split_block, Assignment, Checkpoint, Plan, Run, SavePlan,
};

/// The runs as `select` listed them before they were described as one
/// strided group: one run per index of the outer dimensions, adjacent runs
/// merged; `None` where a sub-byte block is not byte-aligned.
fn listed_runs(
    bits: u64,
    shape: &[usize],
    dim: usize,
    start: usize,
    stop: usize,
) -> Option<Vec<Run>> {
    let size = shape[dim] as u64;
    let whole_bits = shape.iter().map(|&d| d as u64).product::<u64>() * bits;
    if start == 0 && stop == shape[dim] {
        let len = whole_bits.div_ceil(8);
        return Some(if len > 0 {
            vec![Run { offset: 0, len }]
        } else {
            Vec::new()
        });
    }
    let outer: u64 = shape[..dim].iter().map(|&d| d as u64).product();
    let inner: u64 = shape[dim + 1..].iter().map(|&d| d as u64).product();
    let row_bits = inner * bits;
    let aligned = row_bits.is_multiple_of(8)
        || (outer <= 1
            && (start as u64 * row_bits).is_multiple_of(8)
            && (stop as u64 * row_bits).is_multiple_of(8));
    if !aligned {
        return None;
    }
    let block_bytes = (stop - start) as u64 * row_bits / 8;
    let mut runs: Vec<Run> = Vec::new();
    if block_bytes > 0 {
        for i in 0..outer {
            let offset = (i * size + start as u64) * row_bits / 8;
            match runs.last_mut() {
                Some(last) if last.offset + last.len == offset => last.len += block_bytes,
                _ => runs.push(Run {
                    offset,
                    len: block_bytes,
                }),
            }
        }
    }
    Some(runs)
}

/// The block `start..stop` along `dim`, gathered one element at a time in
/// C order (what numpy's `a[(slice(None),)*dim + (slice(start, stop),)]`
/// copies).
fn reference_block(
    data: &[u8],
    shape: &[usize],
    elem: usize,
    dim: usize,
    start: usize,
    stop: usize,
) -> Vec<u8> {
    let n: usize = shape.iter().product();
    let mut out = Vec::new();
    let mut idx = vec![0usize; shape.len()];
    for flat in 0..n {
        let mut rem = flat;
        for d in (0..shape.len()).rev() {
            idx[d] = rem % shape[d];
            rem /= shape[d];
        }
        if idx[dim] >= start && idx[dim] < stop {
            out.extend_from_slice(&data[flat * elem..(flat + 1) * elem]);
        }
    }
    out
}

fn shape_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..5, 1..5)
}

proptest! {
    #[test]
    fn runs_reassemble_the_block(shape in shape_strategy(), dim_seed in 0usize..8, world in 1usize..6, rank_seed in 0usize..8, wide in any::<bool>()) {
        let dim = dim_seed % shape.len();
        let rank = rank_seed % world;
        let elem = if wide { 4 } else { 1 };
        let n: usize = shape.iter().product();
        let data: Vec<u8> = (0..n * elem).map(|i| (i * 7 + 3) as u8).collect();
        let (start, stop) = tensor_split_block(shape[dim], world, rank);
        let dtype = if wide { Dtype::F32 } else { Dtype::U8 };
        let sel = select("t", dtype, &shape, Assignment::Block { dim, start, stop }).unwrap().unwrap();
        let mut got = Vec::new();
        for r in sel.runs {
            got.extend_from_slice(&data[r.offset as usize..(r.offset + r.len) as usize]);
        }
        prop_assert_eq!(&got, &reference_block(&data, &shape, elem, dim, start, stop));
        prop_assert_eq!(sel.len as usize, got.len());
        let mut want_shape = shape.clone();
        want_shape[dim] = stop - start;
        prop_assert_eq!(sel.shape, want_shape);
        // Coalesced: no run ends where the next begins.
        let runs: Vec<Run> = sel.runs.iter().collect();
        for w in runs.windows(2) {
            prop_assert!(w[0].offset + w[0].len < w[1].offset);
        }
        prop_assert_eq!(runs.len() as u64, sel.runs.count());
        // A dim-0 block is at most one run.
        if dim == 0 || shape[..dim].iter().all(|&d| d == 1) {
            prop_assert!(sel.runs.count() <= 1);
        }
    }

    #[test]
    fn strided_runs_expand_to_the_listed_runs(
        shape in prop::collection::vec(0usize..9, 1..5),
        dim_seed in 0usize..8,
        a in 0usize..9,
        b in 0usize..9,
        dtype in prop::sample::select(vec![Dtype::U8, Dtype::BF16, Dtype::F32, Dtype::F4, Dtype::F6_E2M3]),
    ) {
        let dim = dim_seed % shape.len();
        let (start, stop) = (a.min(b) % (shape[dim] + 1), a.max(b) % (shape[dim] + 1));
        let (start, stop) = (start.min(stop), start.max(stop));
        let got = select("t", dtype, &shape, Assignment::Block { dim, start, stop });
        match listed_runs(dtype.bits() as u64, &shape, dim, start, stop) {
            None => prop_assert_eq!(got.map_err(|e| e.kind()).err(), Some("unaligned_shard")),
            Some(want) => {
                let sel = got.unwrap().unwrap();
                let expanded: Vec<Run> = sel.runs.iter().collect();
                prop_assert_eq!(&expanded, &want);
                prop_assert_eq!(sel.len, want.iter().map(|r| r.len).sum::<u64>());
                prop_assert_eq!(sel.runs.count(), want.len() as u64);
                prop_assert_eq!(sel.runs.end(), want.last().map_or(0, |r| r.offset + r.len));
                let back: Vec<Run> = sel.runs.iter().rev().collect();
                prop_assert!(back.iter().eq(want.iter().rev()));
                for (k, r) in want.iter().enumerate() {
                    prop_assert_eq!(sel.runs.get(k as u64), Some(*r));
                    prop_assert_eq!(sel.runs.iter().nth(k), Some(*r));
                }
            }
        }
    }

    #[test]
    fn tensor_split_blocks_match_torch(size in 0usize..200, parts in 1usize..20) {
        // torch.tensor_split(t, parts): the first size % parts blocks have
        // size // parts + 1 elements, the rest size // parts; contiguous.
        let mut at = 0;
        for i in 0..parts {
            let (s, e) = tensor_split_block(size, parts, i);
            prop_assert_eq!(s, at);
            let want = size / parts + usize::from(i < size % parts);
            prop_assert_eq!(e - s, want);
            at = e;
        }
        prop_assert_eq!(at, size);
    }

    #[test]
    fn load_and_save_without_gathering_round_trip(rows in 0usize..9, cols in 1usize..7, world in 1usize..5, dim in 0usize..2, gap in prop::sample::select(vec![0u64, 3, 64])) {
        let dir = tempfile::tempdir().unwrap();
        let a: Vec<u8> = (0..rows * cols * 2).map(|i| i as u8).collect();
        let b: Vec<u8> = (0..cols * 4).map(|i| (i * 3) as u8).collect();
        let full = serialize(
            [
                ("a", TensorView::new(Dtype::F16, vec![rows, cols], &a).unwrap()),
                ("b", TensorView::new(Dtype::F32, vec![cols], &b).unwrap()),
            ],
            &WriteOptions::new(),
        )
        .unwrap();
        let src = dir.path().join("full.safetensors");
        std::fs::write(&src, &full).unwrap();
        let plan = Plan::from_json(&format!(r#"{{"rules": [{{"pattern": "a", "rule": {{"shard": {dim}}}}}]}}"#)).unwrap();
        let ck = Checkpoint::open(&src).unwrap().with_read_gap(gap);
        let mut locals = Vec::new();
        let mut parts = Vec::new();
        for r in 0..world {
            let (lp, buf) = ck.load(&plan, r, world).unwrap();
            let mut specs = Vec::new();
            let mut bytes = Vec::new();
            for t in &lp.tensors {
                specs.push(TensorSpec { name: t.name.clone(), dtype: t.dtype, shape: t.shape.clone() });
                bytes.push(buf[t.start..t.start + t.len].to_vec());
                let want = if t.name == "a" {
                    let (s, e) = tensor_split_block([rows, cols][dim], world, r);
                    reference_block(&a, &[rows, cols], 2, dim, s, e)
                } else {
                    b.clone()
                };
                prop_assert_eq!(&bytes[bytes.len() - 1], &want);
            }
            locals.push(specs);
            parts.push(bytes);
        }
        // Every rank reads its share of `a` plus all of `b`.
        if gap == 0 {
            prop_assert_eq!(ck.data_bytes_read() as usize, a.len() + b.len() * world);
        }
        let specs = full_specs(&plan, &locals).unwrap();
        let out = dir.path().join("out.safetensors");
        let sp = SavePlan::single(&out, specs, None).unwrap();
        sp.create_files().unwrap();
        for r in (0..world).rev() {
            let (rp, writes) = sp.rank_writes(&plan, r, world).unwrap();
            let local = |i: usize| {
                let k = rp.iter().position(|p| p.tensor == i)?;
                parts[r].get(k).map(Vec::as_slice)
            };
            sp.write_rank(&writes, local).unwrap();
        }
        prop_assert_eq!(std::fs::read(&out).unwrap(), full);
    }
}

#[test]
fn sharded_save_names_files_like_save_pretrained() {
    let dir = tempfile::tempdir().unwrap();
    let specs: Vec<TensorSpec> = (0..3)
        .map(|i| TensorSpec {
            name: format!("t{i}"),
            dtype: Dtype::U8,
            shape: vec![100],
        })
        .collect();
    let sp = SavePlan::sharded(dir.path(), specs, None, 150).unwrap();
    let names: Vec<String> = sp
        .files
        .iter()
        .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "model-00001-of-00003.safetensors",
            "model-00002-of-00003.safetensors",
            "model-00003-of-00003.safetensors"
        ]
    );
    let (path, text) = sp.index.as_ref().unwrap();
    assert!(path.ends_with("model.safetensors.index.json"));
    assert!(
        text.contains("\"t2\": \"model-00003-of-00003.safetensors\""),
        "{text}"
    );
}

#[test]
fn uncovered_tensor_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let specs = vec![TensorSpec {
        name: "x".into(),
        dtype: Dtype::U8,
        shape: vec![4],
    }];
    let sp = SavePlan::single(dir.path().join("o"), specs, None).unwrap();
    let plan = Plan::from_json(r#"{"rules": [{"pattern": "x", "rule": "skip"}]}"#).unwrap();
    let e = sp.rank_writes(&plan, 0, 2).unwrap_err();
    assert!(e.to_string().contains("\"x\""), "{e}");
}

#[test]
fn missing_shard_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        r#"{"metadata": {"total_size": 4}, "weight_map": {"x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let e = Checkpoint::open(dir.path()).unwrap_err();
    assert!(e.to_string().contains("model-0000"), "{e}");
}

/// A rank's runs of a block of a tensor with tiny rows, planned from a real
/// (sparse) file: the plan holds one strided group, not a run per row, and
/// counts the runs without listing them.
#[test]
fn tiny_rows_plan_from_a_file_in_constant_memory() {
    let dir = tempfile::tempdir().unwrap();
    let rows = 1usize << 30;
    let specs = vec![TensorSpec {
        name: "tiny".into(),
        dtype: Dtype::U8,
        shape: vec![rows, 2],
    }];
    let lay = Layout::plan(&specs, None).unwrap();
    let path = dir.path().join("tiny.safetensors");
    let file = std::fs::File::create(&path).unwrap();
    std::io::Write::write_all(&mut &file, lay.header_bytes()).unwrap();
    // 2 GiB of declared data, none of it written (a sparse file).
    file.set_len(lay.file_len() as u64).unwrap();
    drop(file);
    let ck = Checkpoint::open(&path).unwrap();
    let plan =
        Plan::from_json(r#"{"rules": [{"pattern": "tiny", "rule": {"shard": 1}}]}"#).unwrap();
    for rank in 0..2 {
        let a = ck
            .assign(&plan, rank, 2, |_, _, _, _, _| unreachable!())
            .unwrap();
        let lp = ck.plan(&a).unwrap();
        assert_eq!(lp.run_count(), rows);
        assert_eq!(lp.data_len(), rows as u64);
        let t = &lp.tensors[0];
        assert_eq!(t.shape, vec![rows, 1]);
        assert_eq!(t.runs.count(), rows as u64);
        let base = ck.tensors()[0].offset;
        assert_eq!(
            t.runs.iter().nth(rows - 1),
            Some(Run {
                offset: base + 2 * (rows as u64 - 1) + rank as u64,
                len: 1
            })
        );
    }
}

/// Loads each rank's block along dimension 1 of `data` (a tensor of
/// `dtype` and `shape`, each index of dimension 1 a whole number of bytes)
/// with several read gaps, checks the bytes against the element-wise
/// slice, and saves them back without gathering.
fn tiny_rows_round_trip(dtype: Dtype, shape: &[usize], data: &[u8], world: usize) {
    let dir = tempfile::tempdir().unwrap();
    let full = serialize(
        [("t", TensorView::new(dtype, shape.to_vec(), data).unwrap())],
        &WriteOptions::new(),
    )
    .unwrap();
    let src = dir.path().join("full.safetensors");
    std::fs::write(&src, &full).unwrap();
    // Viewed bytewise, the tensor is [outer, size * row] for `row` bytes
    // per index of dimension 1.
    let size = shape[1];
    let row = data.len() / shape[0] / size;
    let bytewise = [shape[0], size * row];
    let plan = Plan::from_json(r#"{"rules": [{"pattern": "t", "rule": {"shard": 1}}]}"#).unwrap();
    for gap in [0u64, 1, 3, 64, 1 << 20] {
        let ck = Checkpoint::open(&src).unwrap().with_read_gap(gap);
        let mut locals = Vec::new();
        let mut parts = Vec::new();
        for r in 0..world {
            let (lp, buf) = ck.load(&plan, r, world).unwrap();
            let t = &lp.tensors[0];
            let (s, e) = tensor_split_block(size, world, r);
            let want = reference_block(data, &bytewise, 1, 1, s * row, e * row);
            assert_eq!(
                &buf[t.start..t.start + t.len],
                &want[..],
                "rank {r}, gap {gap}"
            );
            let mut local_shape = shape.to_vec();
            local_shape[1] = e - s;
            assert_eq!(t.shape, local_shape);
            locals.push(vec![TensorSpec {
                name: "t".into(),
                dtype,
                shape: t.shape.clone(),
            }]);
            parts.push(buf[t.start..t.start + t.len].to_vec());
        }
        if gap == 0 {
            // Exactly the shares, nothing between them.
            assert_eq!(ck.data_bytes_read(), data.len() as u64);
        } else {
            // Covering spans: more than the shares, less than a copy each.
            assert!(ck.data_bytes_read() >= data.len() as u64);
            assert!(ck.data_bytes_read() <= (data.len() * world) as u64);
        }
        let specs = full_specs(&plan, &locals).unwrap();
        let out = dir.path().join(format!("out-{gap}.safetensors"));
        let sp = SavePlan::single(&out, specs, None).unwrap();
        sp.create_files().unwrap();
        let mut written = 0;
        for (r, part) in parts.iter().enumerate() {
            let (rp, writes) = sp.rank_writes(&plan, r, world).unwrap();
            // One write per tensor, not one per row.
            assert!(writes.len() <= 1, "{writes:?}");
            assert_eq!(rp[0].len, part.len() as u64);
            written += sp.write_rank(&writes, |_| Some(&part[..])).unwrap();
        }
        assert_eq!(written, data.len() as u64);
        assert_eq!(std::fs::read(&out).unwrap(), full, "gap {gap}");
    }
}

#[test]
fn tiny_row_blocks_load_and_save_exactly() {
    // U8 [1000, 3] over 3 ranks along dimension 1: 1000 runs of 1 byte each.
    let data: Vec<u8> = (0..3000).map(|i| (i * 7 + i / 251) as u8).collect();
    tiny_rows_round_trip(Dtype::U8, &[1000, 3], &data, 3);
    // Uneven split: [1000, 5] over 3 ranks (2, 2, 1 columns).
    let data: Vec<u8> = (0..5000).map(|i| (i * 13 + 1) as u8).collect();
    tiny_rows_round_trip(Dtype::U8, &[1000, 5], &data, 3);
    // Sub-byte: F4 [1000, 3, 2], a row of 2 elements is 1 byte.
    let data: Vec<u8> = (0..3000).map(|i| (i * 5 + i / 7) as u8).collect();
    tiny_rows_round_trip(Dtype::F4, &[1000, 3, 2], &data, 3);
}

#[test]
fn local_bytes_of_the_wrong_length_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let specs = vec![TensorSpec {
        name: "x".into(),
        dtype: Dtype::U8,
        shape: vec![4, 2],
    }];
    let sp = SavePlan::single(dir.path().join("o"), specs, None).unwrap();
    sp.create_files().unwrap();
    let plan = Plan::from_json(r#"{"rules": [{"pattern": "x", "rule": {"shard": 1}}]}"#).unwrap();
    let (_, writes) = sp.rank_writes(&plan, 0, 2).unwrap();
    for n in [3, 5] {
        let bytes = vec![0u8; n];
        let e = sp.write_rank(&writes, |_| Some(&bytes[..])).unwrap_err();
        assert_eq!(e.kind(), "bad_local");
        assert!(e.to_string().contains("\"x\""), "{e}");
    }
}

/// Read gaps over a strided block larger than one 16 MiB span: each rank
/// reads covering spans of at most 16 MiB and gathers its bytes from them,
/// and a run larger than 16 MiB (a replicated tensor) is read in pieces.
#[test]
fn strided_spans_and_big_runs_cover_several_chunks() {
    const CHUNK: usize = 16 << 20;
    let dir = tempfile::tempdir().unwrap();
    let rows = (6 << 20) + 5;
    let a: Vec<u8> = (0..rows * 3).map(|i| (i ^ (i >> 9)) as u8).collect();
    let b: Vec<u8> = (0..((5 << 20) + 3) * 4).map(|i| (i >> 3) as u8).collect();
    let full = serialize(
        [
            ("a", TensorView::new(Dtype::U8, vec![rows, 3], &a).unwrap()),
            (
                "b",
                TensorView::new(Dtype::F32, vec![b.len() / 4], &b).unwrap(),
            ),
        ],
        &WriteOptions::new(),
    )
    .unwrap();
    let src = dir.path().join("full.safetensors");
    std::fs::write(&src, &full).unwrap();
    let plan = Plan::from_json(r#"{"rules": [{"pattern": "a", "rule": {"shard": 1}}]}"#).unwrap();
    let ck = Checkpoint::open(&src).unwrap().with_read_gap(64);
    for r in 0..3 {
        let (lp, buf) = ck.load(&plan, r, 3).unwrap();
        let by_name = |n: &str| lp.tensors.iter().find(|t| t.name == n).unwrap();
        let ta = by_name("a");
        let want: Vec<u8> = a.iter().skip(r).step_by(3).copied().collect();
        let got = &buf[ta.start..ta.start + ta.len];
        let bad = got.iter().zip(&want).position(|(x, y)| x != y);
        assert_eq!((got.len(), bad), (want.len(), None), "rank {r}");
        let tb = by_name("b");
        assert!(buf[tb.start..tb.start + tb.len] == b[..], "rank {r}");
    }
    // Runs per span: the most whose covering range is at most CHUNK.
    let per = (CHUNK - 1) / 3 + 1;
    let spans = rows.div_ceil(per);
    assert!(spans > 1);
    let covering = 3 * rows - 2 * spans;
    assert_eq!(
        ck.data_bytes_read(),
        3 * (covering + b.len()) as u64,
        "spans of {per} runs"
    );
}
