//! Split, merge and sharded-index validation, with the specific error kinds.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use tensorseal_format::index::{open_path, Checkpoint, ShardedIndex};
use tensorseal_format::shard::{merge, split};
use tensorseal_format::{serialize, Dtype, ReadTensors, SafeTensors, TensorView, WriteOptions};

fn sample(dir: &Path) -> std::path::PathBuf {
    let data: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 40 * (i as usize + 1)]).collect();
    let views: Vec<(String, TensorView)> = data
        .iter()
        .enumerate()
        .map(|(i, d)| {
            (
                format!("t{i}"),
                TensorView::new(Dtype::U8, vec![d.len()], d).unwrap(),
            )
        })
        .collect();
    let meta: BTreeMap<String, String> = [("format".into(), "pt".into())].into();
    let path = dir.join("in.safetensors");
    std::fs::write(
        &path,
        serialize(views, &WriteOptions::new().with_metadata(meta)).unwrap(),
    )
    .unwrap();
    path
}

fn index_of(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("model.safetensors.index.json")).unwrap())
        .unwrap()
}

#[test]
fn split_merge_round_trip_and_index() {
    let tmp = tempfile::tempdir().unwrap();
    let src = sample(tmp.path());
    let out = tmp.path().join("shards");
    let report = split(&src, &out, 100).unwrap();
    assert_eq!(report.total_size, 40 * 21);
    assert!(report.shards.len() > 1);
    assert!(report.stale.is_empty());
    let Checkpoint::Sharded(index) = open_path(&out).unwrap() else {
        panic!("expected a sharded checkpoint");
    };
    assert_eq!(index.total_size(), Some(40 * 21));
    let shards = index.validate().unwrap();
    assert_eq!(shards.len(), report.shards.len());
    for s in &shards {
        assert_eq!(s.reader.metadata().unwrap()["format"], "pt");
    }
    let merged = tmp.path().join("merged.safetensors");
    merge(&out, &merged).unwrap();
    assert_eq!(
        std::fs::read(&merged).unwrap(),
        std::fs::read(&src).unwrap()
    );
    // The index file itself works as an argument too.
    merge(out.join("model.safetensors.index.json"), &merged).unwrap();
    SafeTensors::deserialize(&std::fs::read(&merged).unwrap()).unwrap();
}

#[test]
fn inconsistent_indexes_have_specific_kinds() {
    let tmp = tempfile::tempdir().unwrap();
    let src = sample(tmp.path());
    let out = tmp.path().join("shards");
    split(&src, &out, 100).unwrap();
    let good = index_of(&out);
    let write = |v: &Value| {
        std::fs::write(out.join("model.safetensors.index.json"), v.to_string()).unwrap()
    };
    let kind = || {
        ShardedIndex::open(out.join("model.safetensors.index.json"))
            .and_then(|i| i.validate().map(|_| ()))
            .unwrap_err()
            .kind()
    };

    // A tensor present in a shard but absent from the index.
    let mut v = good.clone();
    v["weight_map"].as_object_mut().unwrap().remove("t0");
    write(&v);
    assert_eq!(kind(), "index_tensor_unlisted");

    // A tensor mapped to a shard that does not hold it.
    let mut v = good.clone();
    let wm = v["weight_map"].as_object_mut().unwrap();
    let other = wm["t5"].clone();
    assert_ne!(wm["t0"], other);
    wm.insert("t0".into(), other);
    write(&v);
    assert_eq!(kind(), "index_tensor_missing");

    // A tensor the shards do not have at all.
    let mut v = good.clone();
    let first = v["weight_map"]["t0"].clone();
    v["weight_map"]
        .as_object_mut()
        .unwrap()
        .insert("ghost".into(), first);
    write(&v);
    assert_eq!(kind(), "index_tensor_missing");

    // Paths leaving the directory.
    for bad in ["../in.safetensors", "/etc/passwd", "a/../../x"] {
        let mut v = good.clone();
        v["weight_map"]
            .as_object_mut()
            .unwrap()
            .insert("t0".into(), json!(bad));
        write(&v);
        assert_eq!(kind(), "index_path_escape", "{bad}");
    }

    // A missing shard is an I/O error naming it; a corrupt shard keeps the
    // kind of its fault.
    let shard = out.join(good["weight_map"]["t0"].as_str().unwrap());
    write(&good);
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 1]).unwrap();
    assert_eq!(kind(), "buffer_length_mismatch");
    std::fs::remove_file(&shard).unwrap();
    assert_eq!(kind(), "io");
    assert!(!tmp.path().join("merged.safetensors").exists());
    assert!(merge(&out, tmp.path().join("merged.safetensors")).is_err());
    assert!(!tmp.path().join("merged.safetensors").exists());
}

#[test]
fn split_reports_stale_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let src = sample(tmp.path());
    let out = tmp.path().join("shards");
    let first = split(&src, &out, 100).unwrap();
    let second = split(&src, &out, 400).unwrap();
    assert!(second.shards.len() < first.shards.len());
    assert_eq!(second.stale.len(), first.shards.len());
}
