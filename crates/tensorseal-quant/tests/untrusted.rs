//! Arbitrary tensors under the names the recogniser looks for, with
//! arbitrary dtypes, shapes (zero and huge dimensions included) and bytes:
//! recognising and dequantizing return a result, never panic.

use proptest::prelude::*;
use tensorseal_format::{serialize, Dtype, TensorView, WriteOptions};
use tensorseal_quant::dequant::{dequantize, Options};
use tensorseal_quant::OutDtype;

const SUFFIXES: &[&str] = &[
    ".qweight",
    ".qzeros",
    ".scales",
    ".g_idx",
    ".weight",
    ".weight_scale_inv",
    ".weight_scale",
    ".weight_packed",
    ".weight_zero_point",
    ".weight_global_scale",
    ".weight_shape",
    ".weight_scale_2",
    "_blocks",
    "_scales",
    ".SCB",
    ".weight.absmax",
    ".weight.quant_map",
    ".weight.nested_absmax",
    ".weight.nested_quant_map",
    ".weight.quant_state.bitsandbytes__nf4",
];
const DTYPES: &[Dtype] = &[
    Dtype::I32,
    Dtype::U8,
    Dtype::I8,
    Dtype::F16,
    Dtype::BF16,
    Dtype::F32,
    Dtype::F8_E4M3,
    Dtype::I64,
];

fn tensor() -> impl Strategy<Value = (usize, usize, Vec<usize>, u8)> {
    let dim = prop_oneof![
        0usize..5,
        Just(8usize),
        Just(16),
        Just(32),
        Just(1usize << 40)
    ];
    (
        0..SUFFIXES.len(),
        0..DTYPES.len(),
        prop::collection::vec(dim, 0..4),
        any::<u8>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn never_panics(ts in prop::collection::vec(tensor(), 1..8), json_state in any::<bool>()) {
        let tmp = tempfile::tempdir().unwrap();
        let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (s, d, mut shape, fill) in ts {
            let name = format!("l{}", SUFFIXES[s]);
            if owned.iter().any(|o| o.0 == name) {
                continue;
            }
            // A huge dimension only next to a zero one: the file stays small.
            if shape.contains(&(1usize << 40)) {
                shape.insert(0, 0);
            }
            let dtype = DTYPES[d];
            let n: usize = shape.iter().product();
            let mut bytes = vec![fill; n * dtype.bits() / 8];
            if json_state && name.ends_with("nf4") {
                bytes = br#"{"blocksize": 2, "shape": [4, 4], "nested_blocksize": 1}"#.to_vec();
                shape = vec![bytes.len()];
                owned.push((name, Dtype::U8, shape, bytes));
                continue;
            }
            if bytes.len() > 1 << 20 { continue; }
            owned.push((name, dtype, shape, bytes));
        }
        let views: Vec<(String, TensorView<'_>)> = owned
            .iter()
            .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        let file = tmp.path().join("m.safetensors");
        std::fs::write(&file, serialize(views, &WriteOptions::new()).unwrap()).unwrap();
        for dtype in [OutDtype::F32, OutDtype::BF16] {
            let opts = Options { dtype, chunk_bytes: 64, ..Options::default() };
            let _ = dequantize(&file, tmp.path().join("o.safetensors"), &opts);
        }
    }
}
