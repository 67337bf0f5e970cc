//! The committed corpus in tests/fixtures/format (scripts/gen_format_fixtures.py):
//! every invalid file is refused with the kind its name starts with, by all
//! three readers; every valid file is accepted and read like the reference
//! crate reads it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use tensorseal_format::{MmapFile, PreadFile, ReadTensors, SafeTensors};

fn corpus(sub: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/format")
        .join(sub);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "empty corpus {}", dir.display());
    v
}

/// Rules where we are stricter than the reference by design.
const STRICTER: &[&str] = &["duplicate_key", "empty_name", "name_contains_nul"];
/// Single files the reference accepts by accident: serde lets a struct be
/// written as a JSON array, so it takes `["U8",[1],[0,1]]` as a tensor entry.
const STRICTER_FILES: &[&str] = &["invalid_tensor_entry__array"];

#[test]
fn invalid_files_are_refused_with_their_kind() {
    let mut kinds = BTreeSet::new();
    for path in corpus("invalid") {
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let expected = stem.split("__").next().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let e = SafeTensors::deserialize(&bytes).expect_err(stem);
        assert_eq!(e.kind(), expected, "{stem}: {e}");
        assert!(!e.to_string().is_empty());
        let e = PreadFile::open(&path).expect_err(stem);
        assert_eq!(e.kind(), expected, "pread {stem}: {e}");
        let e = MmapFile::open(&path).expect_err(stem);
        assert_eq!(e.kind(), expected, "mmap {stem}: {e}");
        if !STRICTER.contains(&expected) && !STRICTER_FILES.contains(&stem) {
            assert!(
                safetensors::SafeTensors::deserialize(&bytes).is_err(),
                "{stem}: the reference accepts it"
            );
        }
        kinds.insert(expected.to_owned());
    }
    for k in [
        "file_too_small",
        "header_too_large",
        "header_past_end",
        "invalid_utf8",
        "invalid_json",
        "duplicate_key",
        "empty_name",
        "name_contains_nul",
        "invalid_tensor_entry",
        "unknown_dtype",
        "invalid_shape",
        "invalid_offsets",
        "offsets_reversed",
        "non_contiguous",
        "size_overflow",
        "partial_byte",
        "size_mismatch",
        "buffer_length_mismatch",
        "invalid_metadata",
    ] {
        assert!(kinds.contains(k), "no fixture for rule {k}");
    }
}

#[test]
fn valid_files_are_accepted_like_the_reference() {
    for path in corpus("valid") {
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let mm = MmapFile::open(&path).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let pr = PreadFile::open(&path).unwrap_or_else(|e| panic!("{stem}: {e}"));
        assert_eq!(st.header(), mm.header());
        assert_eq!(st.header(), pr.header());
        let r = safetensors::SafeTensors::deserialize(&bytes)
            .unwrap_or_else(|e| panic!("{stem}: the reference refuses it: {e}"));
        assert_eq!(st.len(), r.len(), "{stem}");
        let (_, rmeta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let ours_meta = st.metadata().cloned();
        let ref_meta = rmeta
            .metadata()
            .clone()
            .map(|m| m.into_iter().collect::<std::collections::BTreeMap<_, _>>());
        assert_eq!(ours_meta, ref_meta, "{stem}");
        for (name, view) in st.iter() {
            let rv = r.tensor(name).unwrap();
            assert_eq!(view.shape(), rv.shape(), "{stem}/{name}");
            assert_eq!(view.data(), rv.data(), "{stem}/{name}");
            assert_eq!(format!("{:?}", view.dtype()), format!("{:?}", rv.dtype()));
            assert_eq!(mm.tensor(name).unwrap().data(), view.data());
            assert_eq!(pr.read_tensor(name).unwrap().data, view.data());
        }
    }
}
