//! Fuzzes the reader: header parsing and validation (the one-pass reader
//! against the general path), iteration, whole-tensor
//! reads and slices (arguments taken from the input's tail), the sharded
//! index parser, naming a non-safetensors input, then re-serialisation.
//! Nothing may panic; every accepted
//! file must be readable and must round-trip through the writer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorseal_format::index::ShardedIndex;
use tensorseal_format::{serialize, Header, ReadTensors, SafeTensors, SliceArg, WriteOptions};

fn slice_args(seed: &[u8]) -> Vec<SliceArg> {
    seed.chunks(3)
        .take(5)
        .map(|c| {
            let a = *c.first().unwrap_or(&0) as i8 as i64;
            let b = *c.get(1).unwrap_or(&0) as i8 as i64;
            let s = *c.get(2).unwrap_or(&1) as i8 as i64;
            match s.rem_euclid(5) {
                0 => SliceArg::Index(a),
                1 => SliceArg::Ellipsis,
                2 => SliceArg::Range {
                    start: None,
                    stop: Some(b),
                    step: s / 5,
                },
                _ => SliceArg::Range {
                    start: Some(a),
                    stop: Some(b),
                    step: s,
                },
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    // The one-pass reader of the usual layout and the general serde path
    // agree on every input: the same header, or the same error.
    let parsed = Header::parse(data);
    let general = Header::parse_general(data);
    assert_eq!(
        parsed.as_ref().map_err(|e| e.to_string()),
        general.as_ref().map_err(|e| e.to_string())
    );
    let _ = tensorseal_format::sniff::sniff(data);
    let _ = ShardedIndex::parse(std::path::Path::new("fuzz.index.json"), data);
    let Ok(st) = SafeTensors::deserialize(data) else {
        return;
    };
    let args = slice_args(
        data.get(data.len().saturating_sub(15)..)
            .unwrap_or_default(),
    );
    let mut total = 0usize;
    for (name, view) in st.iter() {
        total += view.data().len();
        let owned = st
            .read_tensor(name)
            .expect("accepted tensor must be readable");
        assert_eq!(owned.data, view.data());
        if let Ok(s) = st.read_slice(name, &args) {
            let plan = st
                .plan_slice(name, &args)
                .expect("planned once, plans again");
            assert_eq!(s.data.len(), plan.byte_len());
            assert_eq!(s.shape, plan.shape());
        }
        let _ = view.slice(&[SliceArg::Index(-1)]);
    }
    assert_eq!(total, st.data().len());

    // Whatever was accepted re-serialises into a file that reads back the same.
    let opts = WriteOptions::new().with_metadata_opt(st.metadata().cloned());
    let bytes = serialize(st.iter(), &opts).expect("accepted tensors serialise");
    let again = SafeTensors::deserialize(&bytes).expect("our output parses");
    assert_eq!(again.len(), st.len());
    assert_eq!(again.metadata(), st.metadata());
    for (name, view) in st.iter() {
        assert_eq!(again.tensor(name).expect("present"), view);
    }
});
