//! Dequantizing one 4096x4096 layer (block FP8, 4-bit GPTQ) to bf16 in
//! memory, next to a plain memcpy of the same number of output bytes.
//! `cargo bench -p tensorseal-quant --bench dequant`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tensorseal_format::{serialize, Dtype, TensorView, WriteOptions};
use tensorseal_quant::dequant::{write_layer_to, Options, Source};
use tensorseal_quant::scheme::Configs;

const SIDE: usize = 4096;

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as u8) & 0x7E
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let fp8 = noise(SIDE * SIDE, 1);
    let sinv = vec![0x3Cu8; (SIDE / 128) * (SIDE / 128) * 4];
    let qweight = noise(SIDE / 8 * SIDE * 4, 2);
    let qzeros = noise(SIDE / 128 * SIDE / 8 * 4, 3);
    let scales = vec![0x2Cu8; SIDE / 128 * SIDE * 2];
    let files = [
        (
            "fp8-block",
            vec![
                ("a.weight", Dtype::F8_E4M3, vec![SIDE, SIDE], &fp8[..]),
                (
                    "a.weight_scale_inv",
                    Dtype::F32,
                    vec![SIDE / 128, SIDE / 128],
                    &sinv[..],
                ),
            ],
        ),
        (
            "gptq-4bit",
            vec![
                ("a.qweight", Dtype::I32, vec![SIDE / 8, SIDE], &qweight[..]),
                (
                    "a.qzeros",
                    Dtype::I32,
                    vec![SIDE / 128, SIDE / 8],
                    &qzeros[..],
                ),
                ("a.scales", Dtype::F16, vec![SIDE / 128, SIDE], &scales[..]),
            ],
        ),
    ];
    let out_bytes = SIDE * SIDE * 2;
    let mut g = c.benchmark_group("dequant_to_bf16");
    g.throughput(Throughput::Bytes(out_bytes as u64));
    g.sample_size(10);
    let src_copy = vec![1u8; out_bytes];
    let mut dst_copy = vec![0u8; out_bytes];
    g.bench_function("memcpy", |b| b.iter(|| dst_copy.copy_from_slice(&src_copy)));
    for (name, tensors) in files {
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        let path = dir.path().join(format!("{name}.safetensors"));
        std::fs::write(&path, serialize(views, &WriteOptions::new()).unwrap()).unwrap();
        let src = Source::open(&path).unwrap();
        let report = src.recognize_with(&Configs::default());
        let layer = report.layers[0].clone();
        let opts = Options::default();
        let mut out = Vec::with_capacity(out_bytes);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                write_layer_to(&src, &layer, &opts, &mut out).unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
