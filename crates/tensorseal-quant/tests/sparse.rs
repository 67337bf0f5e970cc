//! docs/sparse.md: describe and densify COO, CSR, CSC and 2:4 tensors built
//! by hand, and refuse each broken rule.

use std::collections::BTreeMap;

use tensorseal_format::{
    serialize, Dtype, Durability, MmapFile, ReadTensors, SafeTensors, TensorView, WriteOptions,
};
use tensorseal_quant::sparse::{densify, describe, Layout};

fn le<T: Copy, const N: usize>(v: &[T], f: fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

/// (name, dtype, shape, bytes)
type Tensors<'a> = Vec<(&'a str, Dtype, Vec<usize>, Vec<u8>)>;

fn write(dir: &std::path::Path, tensors: Tensors<'_>, sparse: &str) -> std::path::PathBuf {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let meta = BTreeMap::from([
        ("__sparse__".to_owned(), sparse.to_owned()),
        ("k".to_owned(), "v".to_owned()),
    ]);
    let p = dir.join("s.safetensors");
    std::fs::write(
        &p,
        serialize(views, &WriteOptions::new().with_metadata(meta)).unwrap(),
    )
    .unwrap();
    p
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn densify_every_layout() {
    let tmp = tempfile::tempdir().unwrap();
    // Dense 2x4: [[0, 1, 0, 2], [3, 0, 0, 4]]
    let want = vec![0.0, 1.0, 0.0, 2.0, 3.0, 0.0, 0.0, 4.0];
    let vals = le(&[1f32, 2.0, 3.0, 4.0], f32::to_le_bytes);
    let p = write(
        tmp.path(),
        vec![
            (
                "coo.indices",
                Dtype::I64,
                vec![2, 4],
                le(&[0i64, 0, 1, 1, 1, 3, 0, 3], i64::to_le_bytes),
            ),
            ("coo.values", Dtype::F32, vec![4], vals.clone()),
            (
                "csr.crow_indices",
                Dtype::I32,
                vec![3],
                le(&[0i32, 2, 4], i32::to_le_bytes),
            ),
            (
                "csr.col_indices",
                Dtype::I32,
                vec![4],
                le(&[1i32, 3, 0, 3], i32::to_le_bytes),
            ),
            ("csr.values", Dtype::F32, vec![4], vals.clone()),
            (
                "csc.ccol_indices",
                Dtype::I64,
                vec![5],
                le(&[0i64, 1, 2, 2, 4], i64::to_le_bytes),
            ),
            (
                "csc.row_indices",
                Dtype::I64,
                vec![4],
                le(&[1i64, 0, 0, 1], i64::to_le_bytes),
            ),
            (
                "csc.values",
                Dtype::F32,
                vec![4],
                le(&[3f32, 1.0, 2.0, 4.0], f32::to_le_bytes),
            ),
            // Row 0 keeps positions 1, 3 (code 1 | 3<<2 = 0xD); row 1 keeps 0, 3 (0xC).
            ("tf.values", Dtype::F32, vec![2, 2], vals.clone()),
            ("tf.meta", Dtype::U8, vec![2, 1], vec![0x0D, 0x0C]),
            ("plain", Dtype::U8, vec![3], vec![7, 8, 9]),
        ],
        r#"{"coo":{"layout":"coo","shape":[2,4],"coalesced":true},"csr":{"layout":"csr","shape":[2,4]},"csc":{"layout":"csc","shape":[2,4]},"tf":{"layout":"2:4","shape":[2,4]}}"#,
    );
    let f = MmapFile::open(&p).unwrap();
    let d = describe(&f).unwrap();
    assert_eq!(d.len(), 4);
    assert!(d.iter().all(|s| s.nnz == 4 && s.density() == 0.5));
    assert_eq!(
        d.iter().find(|s| s.name == "tf").unwrap().layout,
        Layout::TwoFour
    );
    let out = tmp.path().join("d.safetensors");
    let s = densify(&p, &out, Durability::NoSync).unwrap();
    assert_eq!((s.densified, s.copied), (4, 1));
    let bytes = std::fs::read(&out).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for n in ["coo", "csr", "csc", "tf"] {
        let t = st.tensor(n).unwrap();
        assert_eq!(
            (t.dtype(), t.shape()),
            (Dtype::F32, &[2usize, 4][..]),
            "{n}"
        );
        assert_eq!(f32s(t.data()), want, "{n}");
    }
    assert_eq!(st.tensor("plain").unwrap().data(), &[7, 8, 9]);
    assert_eq!(st.len(), 5);
    assert!(st.metadata().unwrap().get("__sparse__").is_none());
}

#[test]
fn broken_rules_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let vals = le(&[1f32, 2.0], f32::to_le_bytes);
    let cases: Vec<(Tensors<'_>, &str, &str)> = vec![
        (
            vec![("w.values", Dtype::F32, vec![2], vals.clone())],
            r#"{"w":{"layout":"coo","shape":[2,2]}}"#,
            "w.indices",
        ),
        (
            vec![
                (
                    "w.indices",
                    Dtype::I64,
                    vec![2, 2],
                    le(&[0i64, 5, 0, 0], i64::to_le_bytes),
                ),
                ("w.values", Dtype::F32, vec![2], vals.clone()),
            ],
            r#"{"w":{"layout":"coo","shape":[2,2]}}"#,
            "out of bounds",
        ),
        (
            vec![
                (
                    "w.indices",
                    Dtype::I64,
                    vec![2, 2],
                    le(&[1i64, 0, 0, 0], i64::to_le_bytes),
                ),
                ("w.values", Dtype::F32, vec![2], vals.clone()),
            ],
            r#"{"w":{"layout":"coo","shape":[2,2],"coalesced":true}}"#,
            "coalesced",
        ),
        (
            vec![
                (
                    "w.crow_indices",
                    Dtype::I32,
                    vec![3],
                    le(&[0i32, 2, 2], i32::to_le_bytes),
                ),
                (
                    "w.col_indices",
                    Dtype::I32,
                    vec![2],
                    le(&[1i32, 1], i32::to_le_bytes),
                ),
                ("w.values", Dtype::F32, vec![2], vals.clone()),
            ],
            r#"{"w":{"layout":"csr","shape":[2,2]}}"#,
            "strictly increase",
        ),
        (
            vec![
                (
                    "w.crow_indices",
                    Dtype::I32,
                    vec![3],
                    le(&[0i32, 2, 1], i32::to_le_bytes),
                ),
                (
                    "w.col_indices",
                    Dtype::I32,
                    vec![2],
                    le(&[0i32, 1], i32::to_le_bytes),
                ),
                ("w.values", Dtype::F32, vec![2], vals.clone()),
            ],
            r#"{"w":{"layout":"csr","shape":[2,2]}}"#,
            "never decrease",
        ),
        (
            vec![
                ("w.values", Dtype::F32, vec![1, 2], vals.clone()),
                ("w.meta", Dtype::U8, vec![1, 1], vec![0x05]),
            ],
            r#"{"w":{"layout":"2:4","shape":[1,4]}}"#,
            "0x5",
        ),
        (
            vec![("w.values", Dtype::F32, vec![2], vals.clone())],
            r#"{"w":{"layout":"bsr","shape":[2]}}"#,
            "bsr",
        ),
        (
            vec![("w", Dtype::F32, vec![2], vals.clone())],
            r#"[1]"#,
            "JSON object",
        ),
    ];
    for (tensors, desc, needle) in cases {
        let p = write(tmp.path(), tensors, desc);
        let err = densify(&p, &tmp.path().join("o.safetensors"), Durability::NoSync).unwrap_err();
        assert!(err.to_string().contains(needle), "{desc}: {err}");
        assert!(!tmp.path().join("o.safetensors").exists());
    }
}

/// A few bytes may describe a dense form no memory holds: densify says so,
/// naming the tensor, instead of aborting on the allocation.
#[test]
fn a_dense_form_larger_than_memory_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(
        tmp.path(),
        vec![
            ("w.indices", Dtype::I64, vec![2, 0], vec![]),
            ("w.values", Dtype::F32, vec![0], vec![]),
        ],
        r#"{"w":{"layout":"coo","shape":[68719476736,16777216]}}"#,
    );
    let described = describe(&MmapFile::open(&p).unwrap()).unwrap();
    assert_eq!(described[0].elements(), 1u64 << 60);
    let err = densify(&p, &tmp.path().join("o.safetensors"), Durability::NoSync).unwrap_err();
    assert!(err.to_string().contains("\"w\""), "{err}");
    assert!(!tmp.path().join("o.safetensors").exists());
}
