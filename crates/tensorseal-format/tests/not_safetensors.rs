//! A file that is not safetensors is named, by every reader, with what to
//! do: real checkpoints from the committed convert fixtures (made by
//! `scripts/gen_convert_fixtures.py` with torch and numpy), and the first
//! bytes of other formats.

use std::path::{Path, PathBuf};

use tensorseal_format::{FileFormat, FormatError, MmapFile, PreadFile, SafeTensors};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/convert")
        .join(name)
}

/// The error of each of the three readers for `path`; all must agree.
fn errors(path: &Path) -> [FormatError; 3] {
    let bytes = std::fs::read(path).unwrap();
    [
        SafeTensors::deserialize(&bytes).unwrap_err(),
        MmapFile::open(path).unwrap_err(),
        PreadFile::open(path).unwrap_err(),
    ]
}

fn assert_named(path: &Path, format: FileFormat, says: &[&str]) {
    for e in errors(path) {
        match &e {
            FormatError::NotSafetensors { format: f, .. } => assert_eq!(*f, format, "{e}"),
            other => panic!(
                "{}: expected not_safetensors, got {other:?}",
                path.display()
            ),
        }
        assert_eq!(e.kind(), "not_safetensors");
        let msg = e.to_string();
        assert!(msg.starts_with("not a safetensors file: this is "), "{msg}");
        for s in says {
            assert!(msg.contains(s), "{}: {msg:?} lacks {s:?}", path.display());
        }
        assert!(!msg.contains("header length"), "{msg}");
    }
}

#[test]
fn checkpoints_are_named_with_the_convert_hint() {
    let convert = "convert it with `tensorseal convert`";
    assert_named(
        &fixture("small.pt"),
        FileFormat::TorchZip,
        &["a PyTorch zip checkpoint", convert],
    );
    assert_named(
        &fixture("deflated.pt"),
        FileFormat::TorchZip,
        &["PyTorch", convert],
    );
    assert_named(
        &fixture("every_dtype_legacy.pt"),
        FileFormat::Pickle,
        &["legacy PyTorch", convert],
    );
    assert_named(
        &fixture("array_f32.npy"),
        FileFormat::Npy,
        &["a NumPy .npy array", convert],
    );
    assert_named(
        &fixture("arrays.npz"),
        FileFormat::Npz,
        &["a NumPy .npz archive", convert],
    );
    assert_named(
        &fixture("arrays_compressed.npz"),
        FileFormat::Npz,
        &[".npz", convert],
    );
}

#[test]
fn other_formats_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, Vec<u8>, FileFormat, &str)] = &[
        (
            "m.gguf",
            [b"GGUF\x03\0\0\0".as_slice(), &[7; 64]].concat(),
            FileFormat::Gguf,
            "GGUF",
        ),
        (
            "m.h5",
            [b"\x89HDF\r\n\x1a\n".as_slice(), &[0; 64]].concat(),
            FileFormat::Hdf5,
            "HDF5",
        ),
        (
            "m.gz",
            [b"\x1f\x8b\x08\0".as_slice(), &[1; 64]].concat(),
            FileFormat::Gzip,
            "decompress",
        ),
        (
            "m.onnx",
            [b"\x08\x08\x12\x07pytorch\x1a\x032.1".as_slice(), &[0; 32]].concat(),
            FileFormat::Onnx,
            "ONNX",
        ),
        (
            "lfs.safetensors",
            b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 548105171\n"
                .to_vec(),
            FileFormat::GitLfsPointer,
            "git lfs pull",
        ),
        (
            "config.json",
            b"{\n  \"architectures\": [\"BertModel\"]\n}\n".to_vec(),
            FileFormat::Json,
            "JSON",
        ),
        (
            "page.safetensors",
            b"<!DOCTYPE html>\n<html><body>404</body></html>".to_vec(),
            FileFormat::Html,
            "HTML",
        ),
        (
            "notes.txt",
            b"these are not weights at all\n".to_vec(),
            FileFormat::Text,
            "text",
        ),
    ];
    for (name, bytes, format, says) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        assert_named(&path, *format, &[says]);
    }
}

#[test]
fn empty_and_truncated_files_keep_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    for e in errors(&empty) {
        assert_eq!(e.kind(), "file_too_small");
        assert!(e.to_string().starts_with("file is empty (0 bytes)"), "{e}");
    }
    // A safetensors file cut inside its header stays "past the end", even
    // where its length prefix (0x280) also starts like a pickle.
    let cut = dir.path().join("cut.safetensors");
    let mut bytes = 640u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{\"w\":{\"dtype\":\"F32\"");
    std::fs::write(&cut, &bytes).unwrap();
    for e in errors(&cut) {
        assert_eq!(e.kind(), "header_past_end", "{e}");
    }
    // Binary junk is not named: the header length is reported as before.
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, [0xffu8; 32]).unwrap();
    for e in errors(&junk) {
        assert_eq!(e.kind(), "header_too_large", "{e}");
        assert!(e.to_string().contains("18446744073709551615"), "{e}");
    }
}
