//! Property tests: planned runs reassemble exactly the block a strided
//! element-by-element slice would take; tensor_split block sizes; loading
//! and saving without gathering round-trip through real files.

use proptest::prelude::*;
use tensorseal_format::{serialize, write::TensorSpec, Dtype, TensorView, WriteOptions};
use tensorseal_parallel::{
    full_specs, select, tensor_split_block, Assignment, Checkpoint, Plan, SavePlan,
};

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
        for r in &sel.runs {
            got.extend_from_slice(&data[r.offset as usize..(r.offset + r.len) as usize]);
        }
        prop_assert_eq!(&got, &reference_block(&data, &shape, elem, dim, start, stop));
        prop_assert_eq!(sel.len as usize, got.len());
        let mut want_shape = shape.clone();
        want_shape[dim] = stop - start;
        prop_assert_eq!(sel.shape, want_shape);
        // Coalesced: no run ends where the next begins.
        for w in sel.runs.windows(2) {
            prop_assert!(w[0].offset + w[0].len < w[1].offset);
        }
        // A dim-0 block is at most one run.
        if dim == 0 || shape[..dim].iter().all(|&d| d == 1) {
            prop_assert!(sel.runs.len() <= 1);
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
