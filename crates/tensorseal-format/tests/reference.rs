//! Byte-for-byte comparison with the reference Rust crate `safetensors` 0.8.

use std::collections::{BTreeMap, HashMap};

use tensorseal_format::{serialize, Dtype, ReadTensors, SafeTensors, TensorView, WriteOptions};

fn ref_dtype(d: Dtype) -> safetensors::Dtype {
    use safetensors::Dtype as R;
    match d {
        Dtype::BOOL => R::BOOL,
        Dtype::F4 => R::F4,
        Dtype::F6_E2M3 => R::F6_E2M3,
        Dtype::F6_E3M2 => R::F6_E3M2,
        Dtype::U8 => R::U8,
        Dtype::I8 => R::I8,
        Dtype::F8_E5M2 => R::F8_E5M2,
        Dtype::F8_E4M3 => R::F8_E4M3,
        Dtype::F8_E8M0 => R::F8_E8M0,
        Dtype::F8_E4M3FNUZ => R::F8_E4M3FNUZ,
        Dtype::F8_E5M2FNUZ => R::F8_E5M2FNUZ,
        Dtype::I16 => R::I16,
        Dtype::U16 => R::U16,
        Dtype::F16 => R::F16,
        Dtype::BF16 => R::BF16,
        Dtype::I32 => R::I32,
        Dtype::U32 => R::U32,
        Dtype::F32 => R::F32,
        Dtype::C64 => R::C64,
        Dtype::F64 => R::F64,
        Dtype::I64 => R::I64,
        Dtype::U64 => R::U64,
    }
}

/// Every dtype, with 0-d, empty and odd names, plus at most one metadata key.
fn sample() -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, d) in Dtype::ALL.iter().enumerate() {
        let shape = match i % 4 {
            0 => vec![2, 4],
            1 => vec![4],
            2 => vec![0, 8],
            _ => vec![8],
        };
        let n = tensorseal_format::byte_size("x", *d, &shape).unwrap();
        let data = (0..n).map(|b| (b * 7 + i) as u8).collect();
        out.push((
            format!("t.{}.{i}", d.as_str().to_lowercase()),
            *d,
            shape,
            data,
        ));
    }
    out.push(("scalar".into(), Dtype::F32, vec![], vec![1, 2, 3, 4]));
    out.push(("é\"quoted\"\n".into(), Dtype::U8, vec![1], vec![9]));
    out
}

#[test]
fn writer_matches_reference_bytes() {
    let s = sample();
    for with_meta in [false, true] {
        let ours_views: Vec<(String, TensorView)> = s
            .iter()
            .map(|(n, d, sh, data)| (n.clone(), TensorView::new(*d, sh.clone(), data).unwrap()))
            .collect();
        let meta: BTreeMap<String, String> = [("format".to_string(), "pt".to_string())].into();
        let opts = WriteOptions::new().with_metadata_opt(with_meta.then(|| meta.clone()));
        let ours = serialize(ours_views, &opts).unwrap();

        let ref_views: Vec<(String, safetensors::tensor::TensorView)> = s
            .iter()
            .map(|(n, d, sh, data)| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(ref_dtype(*d), sh.clone(), data).unwrap(),
                )
            })
            .collect();
        let ref_meta: Option<HashMap<String, String>> =
            with_meta.then(|| meta.clone().into_iter().collect());
        let theirs = safetensors::serialize(ref_views, ref_meta).unwrap();
        assert_eq!(ours, theirs, "with metadata: {with_meta}");

        // And we read what they wrote identically.
        let st = SafeTensors::deserialize(&theirs).unwrap();
        let r = safetensors::SafeTensors::deserialize(&theirs).unwrap();
        assert_eq!(st.len(), r.len());
        for (name, view) in st.iter() {
            let rv = r.tensor(name).unwrap();
            assert_eq!(view.shape(), rv.shape());
            assert_eq!(view.data(), rv.data());
            assert_eq!(ref_dtype(view.dtype()), rv.dtype());
            assert_eq!(st.read_tensor(name).unwrap().data, rv.data());
        }
    }
}

#[test]
fn empty_file_matches_reference() {
    let none: Vec<(String, TensorView)> = Vec::new();
    let ours = serialize(none, &WriteOptions::new()).unwrap();
    let theirs = safetensors::serialize(
        Vec::<(String, safetensors::tensor::TensorView)>::new(),
        None,
    )
    .unwrap();
    assert_eq!(ours, theirs);
    assert_eq!(ours, b"\x08\0\0\0\0\0\0\0{}      ");
}
