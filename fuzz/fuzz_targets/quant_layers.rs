//! Fuzzes the quantized- and sparse-checkpoint readers (tensorseal-quant) on a crafted
//! checkpoint: layout recognition from tensor names, dtypes, shapes and a config, each
//! recognised layer's dequantization, a whole streaming `dequantize`, and the sparse
//! convention's `describe` and `densify`.
//!
//! Input: `[which: u8][n: u16 LE][config: n bytes][model.safetensors: the rest]`, the
//! config written as `config.json`, `quantize_config.json` or `hf_quant_config.json` by
//! `which % 3`; it may be any bytes (an invalid one must be an error, not a panic). Seeds:
//! `fuzz/seeds/quant_layers/` (every committed layout fixture in this framing, made by
//! `scripts/gen_fuzz_seeds.py`).
//!
//! Nothing may panic. A layer that dequantizes gives exactly its shape's element count,
//! and never more than 8 values per stored byte (no output sized from a header or a
//! config that its bytes do not back: the densest layout, 2-bit, packs 4 per byte).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tensorseal_format::{Durability, MmapFile};
use tensorseal_quant::dequant::{dequantize_layer, dequantize_source, Options, Source};
use tensorseal_quant::scheme::Configs;
use tensorseal_quant::sparse::{densify, describe};
use tensorseal_quant::OutDtype;

const CONFIGS: [&str; 3] = [
    "config.json",
    "quantize_config.json",
    "hf_quant_config.json",
];

fn run(dir: &Path, model: &[u8], which: u8, config: &[u8]) {
    let src_path = dir.join("model.safetensors");
    if std::fs::write(&src_path, model).is_err() {
        return;
    }
    for c in CONFIGS {
        let _ = std::fs::remove_file(dir.join(c));
    }
    let name = CONFIGS[usize::from(which) % CONFIGS.len()];
    if !config.is_empty() && std::fs::write(dir.join(name), config).is_err() {
        return;
    }
    // Sparse: described, and densified when the dense form is small (a legitimately huge
    // dense form is the user's request, not a bug; one no memory holds is a unit test).
    let mut dense_bytes = Some(0u64);
    if let Ok(file) = MmapFile::open(&src_path) {
        if let Ok(sparse) = describe(&file) {
            for s in &sparse {
                let _ = s.density();
                let size = s.dtype.byte_size().unwrap_or(1) as u64;
                dense_bytes = dense_bytes
                    .zip(s.elements().checked_mul(size))
                    .and_then(|(a, b)| a.checked_add(b));
            }
        }
    }
    let dense = dir.join("dense.safetensors");
    if dense_bytes.is_some_and(|b| b <= 1 << 26) {
        let _ = densify(&src_path, &dense, Durability::NoSync);
    }
    let _ = std::fs::remove_file(&dense);

    let Ok(source) = Source::open(dir) else {
        return;
    };
    let Ok(report) = source.recognize() else {
        return;
    };
    let _ = source.recognize_with(&Configs::default());
    let limit = 8 * model.len() as u64;
    for l in &report.layers {
        let _ = l.effective_bits();
        if let Ok(v) = dequantize_layer(&source, l) {
            assert_eq!(v.len() as u64, l.elements(), "layer {:?}", l.prefix);
            assert!(
                l.elements() <= limit,
                "layer {:?}: {} values from {} input bytes",
                l.prefix,
                l.elements(),
                model.len()
            );
        }
    }
    let opts = Options {
        dtype: OutDtype::F16,
        max_shard_size: 1 << 12,
        chunk_bytes: 1 << 10,
        durability: Durability::NoSync,
    };
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&out);
    let _ = dequantize_source(&source, &report, &out, &opts);
    let _ = std::fs::remove_dir_all(&out);
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, data)) = data.split_first() else {
        return;
    };
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let n = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    let (config, model) = rest.split_at(n);
    thread_local! {
        static DIR: Option<tempfile::TempDir> = tempfile::tempdir().ok();
    }
    DIR.with(|d| {
        if let Some(d) = d {
            run(d.path(), model, which, config);
        }
    });
});
