//! Fuzzes the sharding-plan reader of tensorseal-parallel (`Plan::from_json`: globs,
//! regexes, rules, pipeline stages) and what a plan drives: every rank's assignment of a
//! Llama-like set of tensors (shapes taken from the input's first bytes, zero and huge
//! sizes included) and the byte runs of each assignment.
//!
//! Input: `[shape bytes: 8][plan JSON]`. Nothing may panic, and planning takes constant
//! memory per tensor whatever its shape (a selection is one strided group of runs, so
//! tensors of 2^40 rows are planned too). Each rank's runs are ascending, coalesced,
//! inside the tensor and sum to the selection's length (checked run by run for tensors
//! up to 1 GiB, the most a small input file could back; from the strided description
//! for larger ones); over the tensor-parallel ranks of one stage, the shards of a
//! tensor add up to the whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorseal_format::Dtype;
use tensorseal_parallel::{select, Assignment, Plan, Rule};

const NAMES: [&str; 6] = [
    "model.embed_tokens.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.1.self_attn.o_proj.weight",
    "model.layers.1.mlp.down_proj.weight",
    "model.norm.weight",
    "lm_head.weight",
];
const DTYPES: [Dtype; 4] = [Dtype::BF16, Dtype::F32, Dtype::F8_E4M3, Dtype::F4];

fuzz_target!(|data: &[u8]| {
    let Some((dims, json)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(json) else {
        return;
    };
    let Ok(plan) = Plan::from_json(text) else {
        return;
    };
    // Shapes from the first bytes: small sizes, zero, and one huge dimension.
    let size = |b: u8| match b % 8 {
        7 => 1usize << 40,
        n => usize::from(b / 8) * usize::from(n),
    };
    let shapes: Vec<Vec<usize>> = NAMES
        .iter()
        .enumerate()
        .map(|(i, _)| match i % 3 {
            0 => vec![size(dims[i % 8]), size(dims[(i + 1) % 8])],
            1 => vec![size(dims[i % 8])],
            _ => vec![size(dims[i % 8]), 2, size(dims[(i + 3) % 8])],
        })
        .collect();
    let tensors: Vec<(&str, &[usize])> = NAMES
        .iter()
        .zip(&shapes)
        .map(|(n, s)| (*n, s.as_slice()))
        .collect();
    for world in 1..=4usize {
        // Per tensor: bytes taken over the ranks of stage 0 by sharded assignments.
        let mut sharded = vec![(0u64, 0usize); NAMES.len()];
        let mut whole_bytes = vec![0u64; NAMES.len()];
        let mut tp_size = 0;
        for rank in 0..world {
            let Ok((stage, _, _, tp)) = plan.topology(rank, world) else {
                break;
            };
            let callable = |_: usize, _: &str, _: &[usize], _: usize, _: usize| Ok(Rule::Shard(0));
            let Ok(assignments) = plan.assign(&tensors, rank, world, callable) else {
                break;
            };
            assert_eq!(assignments.len(), tensors.len());
            for (i, a) in assignments.iter().enumerate() {
                let dtype = DTYPES[i % DTYPES.len()];
                let Ok(Some(w)) = select(NAMES[i], dtype, &shapes[i], Assignment::Whole) else {
                    continue;
                };
                let Ok(Some(sel)) = select(NAMES[i], dtype, &shapes[i], *a) else {
                    continue;
                };
                // The strided description, whatever the size.
                let runs = sel.runs;
                assert_eq!(runs.total(), sel.len, "{}", NAMES[i]);
                assert!(runs.end() <= w.len, "{}: run past the tensor", NAMES[i]);
                assert_eq!(runs.is_empty(), runs.run_len() == 0, "{}", NAMES[i]);
                if runs.count() > 1 {
                    assert!(runs.stride() > runs.run_len(), "{}: runs touch", NAMES[i]);
                }
                // Expanded run by run (one step per run): only tensors a small file could
                // back, sizes up to 1 GiB; huge dimensions of empty tensors stay in.
                if w.len <= 1 << 30 {
                    let mut end = 0u64;
                    let mut total = 0u64;
                    for (k, r) in runs.iter().enumerate() {
                        assert!(r.len > 0, "{}: empty run", NAMES[i]);
                        assert!(
                            k == 0 || r.offset > end,
                            "{}: runs not ascending/coalesced",
                            NAMES[i]
                        );
                        end = r.offset + r.len;
                        total += r.len;
                    }
                    assert_eq!(total, sel.len, "{}", NAMES[i]);
                    assert_eq!(end, runs.end(), "{}", NAMES[i]);
                }
                if stage == 0 && matches!(a, Assignment::Block { .. }) {
                    whole_bytes[i] = w.len;
                    sharded[i].0 += sel.len;
                    sharded[i].1 += 1;
                }
            }
            if stage == 0 {
                tp_size = tp;
            }
        }
        for (i, &(bytes, ranks)) in sharded.iter().enumerate() {
            if tp_size > 0 && ranks == tp_size {
                assert_eq!(bytes, whole_bytes[i], "{}: shards do not add up", NAMES[i]);
            }
        }
    }
});
