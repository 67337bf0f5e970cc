//! Criterion benchmarks, tensorseal against the reference crate `safetensors`
//! 0.8 measured the same way in the same run:
//!
//! - `parse_100k`: parse + validate the header of a file with 100,000 tensors
//!   (in-memory `deserialize`, which also checks the data buffer length);
//! - `serialize_64MiB`: serialise 64 tensors of 1 MiB into a new buffer;
//! - `write_file_64MiB`: write the same to a file (ours: streaming + atomic
//!   rename + fsync; the reference: buffered write, no fsync).
//!
//! `cargo bench -p tensorseal-format --bench format`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tensorseal_format::{
    serialize, serialize_to_file, Dtype, ReadTensors, SafeTensors, TensorView, WriteOptions,
};

fn many_tensors_file(n: usize) -> Vec<u8> {
    let data = vec![0u8; 4 * n];
    let views: Vec<(String, TensorView)> = (0..n)
        .map(|i| {
            (
                format!("model.layers.{}.block.{}.weight", i / 100, i % 100),
                TensorView::new(Dtype::F32, vec![1], &data[4 * i..4 * i + 4]).unwrap(),
            )
        })
        .collect();
    let meta: BTreeMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    serialize(views, &WriteOptions::new().with_metadata(meta)).unwrap()
}

fn parse(c: &mut Criterion) {
    let bytes = many_tensors_file(100_000);
    let mut g = c.benchmark_group("parse_100k");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("tensorseal", |b| {
        b.iter(|| SafeTensors::deserialize(black_box(&bytes)).unwrap().len())
    });
    g.bench_function("reference", |b| {
        b.iter(|| {
            safetensors::SafeTensors::deserialize(black_box(&bytes))
                .unwrap()
                .len()
        })
    });
    g.finish();
}

fn write(c: &mut Criterion) {
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let names: Vec<String> = (0..64).map(|i| format!("layer.{i}.weight")).collect();
    let ours: Vec<(String, TensorView)> = names
        .iter()
        .map(|n| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, vec![512, 512], &chunk).unwrap(),
            )
        })
        .collect();
    let theirs = || {
        names
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(
                        safetensors::Dtype::F32,
                        vec![512, 512],
                        &chunk,
                    )
                    .unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let mut g = c.benchmark_group("serialize_64MiB");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Bytes(64 << 20));
    g.bench_function(BenchmarkId::new("tensorseal", "vec"), |b| {
        let opts = WriteOptions::new();
        b.iter(|| {
            serialize(black_box(&ours).iter().map(|(n, v)| (n, v)), &opts)
                .unwrap()
                .len()
        })
    });
    g.bench_function(BenchmarkId::new("reference", "vec"), |b| {
        b.iter(|| safetensors::serialize(theirs(), None).unwrap().len())
    });
    g.finish();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.safetensors");
    let mut g = c.benchmark_group("write_file_64MiB");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Bytes(64 << 20));
    g.bench_function("tensorseal_atomic_fsync", |b| {
        let opts = WriteOptions::new();
        b.iter(|| {
            serialize_to_file(black_box(&ours).iter().map(|(n, v)| (n, v)), &path, &opts).unwrap()
        })
    });
    g.bench_function("reference", |b| {
        b.iter(|| safetensors::serialize_to_file(theirs(), None, &path).unwrap())
    });
    g.finish();
}

criterion_group!(benches, parse, write);
criterion_main!(benches);
