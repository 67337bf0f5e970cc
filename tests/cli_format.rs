//! Snapshot tests of `tensorseal inspect` output on the bundled example and
//! on fixtures (`cargo insta review` to update after an intended change).

use std::path::Path;
use std::process::Command;

fn tensorseal(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tensorseal"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn inspect_tiny_table() {
    let (code, out, err) = tensorseal(&["inspect", "examples/tiny.safetensors"]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!(out);
}

#[test]
fn inspect_tiny_json() {
    let (code, out, err) = tensorseal(&["inspect", "examples/tiny.safetensors", "--json"]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!(out);
}

#[test]
fn inspect_sharded_after_split() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, _, err) = tensorseal(&[
        "split",
        "examples/tiny.safetensors",
        d,
        "--max-shard-size",
        "600",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = tensorseal(&["inspect", d]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!(out.replace(d, "<dir>"));
    let merged = dir.path().join("merged.safetensors");
    let (code, _, err) = tensorseal(&["merge", d, merged.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(merged).unwrap(),
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tiny.safetensors"))
            .unwrap()
    );
}

#[test]
fn inspect_errors() {
    let mut lines = Vec::new();
    for f in [
        "invalid/header_past_end__len_100",
        "invalid/duplicate_key__tensor",
        "invalid/size_mismatch__f32_short",
        "invalid/non_contiguous__overlap",
        "invalid/buffer_length_mismatch__trailing",
        "invalid/invalid_metadata__number_value",
    ] {
        let path = format!("tests/fixtures/format/{f}.safetensors");
        let (code, out, err) = tensorseal(&["inspect", &path]);
        assert_eq!(code, 1);
        assert!(out.is_empty());
        lines.push(err);
    }
    insta::assert_snapshot!(lines.concat());
}
