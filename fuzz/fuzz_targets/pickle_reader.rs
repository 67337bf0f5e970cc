//! Fuzzes the non-executing pickle reader: strict load, every stacked
//! pickle, and analysis (with nested pickles), under tight limits so that
//! limit handling is exercised too. Nothing may panic, and every global the
//! analysis reports must point inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorseal_pickle::{analyze, load, load_all, Limits};

fuzz_target!(|data: &[u8]| {
    let tight = Limits {
        max_ops: 20_000,
        max_memo: 1_000,
        max_stack: 1_000,
        max_container: 1_000,
        max_alloc: 1 << 20,
        max_depth: 64,
        max_pickles: 64,
        max_nested: 2,
    };
    for limits in [&tight, &Limits::default()] {
        let _ = load(data, limits);
        let _ = load_all(data, limits);
        let a = analyze(data, limits);
        for g in &a.globals {
            assert!(
                g.offset < data.len(),
                "global offset {} outside input",
                g.offset
            );
            let _ = g.qualified();
        }
        assert!(a.pickles.len() <= limits.max_pickles);
    }
});
