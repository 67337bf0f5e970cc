//! The converter on the committed fixtures (tests/fixtures/convert, made by
//! scripts/gen_convert_fixtures.py) and on damaged and generated inputs.

use std::io::Write;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use tensorseal_convert::{
    plan, to_safetensors, to_torch, verify_against_input, verify_checksums, Checkpoint,
    ConvertError, Format, Options, Plan, Verify,
};
use tensorseal_format::{Dtype, Durability, ReadTensors, SafeTensors};
use tensorseal_pickle::PickleError;

fn fix(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/convert")
        .join(name)
}

fn convert(src: &Path, opts: &Options) -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.safetensors");
    to_safetensors(src, &out, opts, &mut |_| {}).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    (dir, bytes)
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn verified() -> Options {
    Options {
        verify: Verify::Checksum,
        ..Options::default()
    }
}

fn full() -> Options {
    Options {
        verify: Verify::Full,
        ..Options::default()
    }
}

#[test]
fn views_are_materialised_in_logical_order() {
    for (f, opts) in [
        ("views.pt", verified()),
        ("views_legacy.pt", verified()),
        ("views.pt", full()),
        ("views_legacy.pt", full()),
    ] {
        let (_d, bytes) = convert(&fix(f), &opts);
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let w: Vec<f32> = (0..24).map(|x| x as f32).collect();
        let get = |n: &str| f32s(st.tensor(n).unwrap().data());
        assert_eq!(get("weight"), w);
        assert_eq!(get("row"), w[6..12].to_vec());
        let t: Vec<f32> = (0..6)
            .flat_map(|c| (0..4).map(move |r| (r * 6 + c) as f32))
            .collect();
        assert_eq!(get("transposed"), t, "{f}");
        assert_eq!(st.tensor("transposed").unwrap().shape(), &[6, 4]);
        let strided: Vec<f32> = (0..4)
            .flat_map(|r| (0..3).map(move |c| (r * 6 + c * 2) as f32))
            .collect();
        assert_eq!(get("strided"), strided);
        assert_eq!(get("narrow"), vec![8.0, 9.0, 10.0, 14.0, 15.0, 16.0]);
        assert_eq!(get("expanded"), vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
        assert_eq!(st.tensor("scalar").unwrap().shape(), &[] as &[usize]);
        assert_eq!(get("scalar"), vec![7.5]);
        assert_eq!(st.tensor("empty").unwrap().shape(), &[0, 3]);
        assert!(st.tensor("weight_alias").is_err());
        assert_eq!(
            st.metadata()
                .unwrap()
                .get("weight_alias")
                .map(String::as_str),
            Some("weight")
        );
        assert_eq!(
            st.metadata().unwrap().get("format").map(String::as_str),
            Some("pt")
        );
    }
}

#[test]
fn big_endian_and_renamed_root_match_the_plain_file() {
    let (_a, plain) = convert(&fix("small.pt"), &verified());
    for f in ["big_endian.pt", "renamed_root.pt", "deflated.pt"] {
        let (_b, other) = convert(&fix(f), &verified());
        assert_eq!(plain, other, "{f}");
    }
    assert!(Checkpoint::open(fix("big_endian.pt")).unwrap().big_endian());
}

#[test]
fn every_dtype_is_mapped() {
    let inputs = vec![fix("every_dtype.pt")];
    let Plan {
        tensors: planned,
        report,
        ..
    } = plan(&inputs, &Options::default()).unwrap();
    assert_eq!(report.format, Some(Format::TorchZip));
    let get = |n: &str| planned.iter().find(|p| p.name == n).unwrap().tensor.dtype;
    for (n, d) in [
        ("bf16", Dtype::BF16),
        ("u16", Dtype::U16),
        ("u64", Dtype::U64),
        ("c64", Dtype::C64),
        ("bool", Dtype::BOOL),
        ("f8_e4m3fn", Dtype::F8_E4M3),
        ("f8_e5m2", Dtype::F8_E5M2),
        ("f8_e4m3fnuz", Dtype::F8_E4M3FNUZ),
        ("f8_e5m2fnuz", Dtype::F8_E5M2FNUZ),
    ] {
        assert_eq!(get(n), d, "{n}");
    }
    let legacy = vec![fix("every_dtype_legacy.pt")];
    let report = plan(&legacy, &Options::default()).unwrap().report;
    assert_eq!(report.format, Some(Format::TorchLegacy));
}

#[test]
fn nested_selection() {
    let inputs = vec![fix("nested.pt")];
    let names = |o: &Options| -> Vec<String> {
        let p = plan(&inputs, o).unwrap().tensors;
        let mut v: Vec<String> = p.into_iter().map(|p| p.name).collect();
        v.sort();
        v
    };
    let report = plan(&inputs, &Options::default()).unwrap().report;
    assert_eq!(report.chosen.as_deref(), Some("state_dict"));
    assert_eq!(names(&Options::default()), ["a", "b"]);
    let sel = Options {
        select: Some("ema.model".into()),
        ..Options::default()
    };
    assert_eq!(names(&sel), ["a"]);
    let flat = Options {
        flatten: true,
        ..Options::default()
    };
    let all = names(&flat);
    assert!(
        all.contains(&"optimizer.state.0.momentum_buffer".to_string()),
        "{all:?}"
    );
    assert!(all.contains(&"list_of_tensors.1".to_string()), "{all:?}");
    let bad = Options {
        select: Some("nope.x".into()),
        ..Options::default()
    };
    assert!(matches!(
        plan(&inputs, &bad),
        Err(ConvertError::Select { .. })
    ));
}

#[test]
fn malicious_pickles_are_refused_with_the_global() {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fix("malicious/manifest.json")).unwrap()).unwrap();
    for (name, global) in manifest.as_object().unwrap() {
        let err = Checkpoint::open(fix(&format!("malicious/{name}.pt")))
            .err()
            .unwrap();
        match &err {
            ConvertError::Pickle { source, .. } => match source.as_ref() {
                PickleError::Forbidden {
                    module, name: n, ..
                } => {
                    assert_eq!(format!("{module}.{n}"), global.as_str().unwrap(), "{name}")
                }
                other => panic!("{name}: {other}"),
            },
            other => panic!("{name}: {other}"),
        }
    }
}

#[test]
fn object_arrays_and_bare_pickles_are_refused() {
    let e = Checkpoint::open(fix("object_array.npy")).err().unwrap();
    assert!(e.to_string().contains("object array"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.pkl");
    std::fs::write(&p, b"\x80\x02}q\x00.").unwrap();
    assert!(Checkpoint::open(&p)
        .err()
        .unwrap()
        .to_string()
        .contains("bare pickle"));
}

#[test]
fn truncated_files_fail_cleanly() {
    for f in ["views_legacy.pt", "views.pt", "array_f32.npy", "arrays.npz"] {
        let full = std::fs::read(fix(f)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        for cut in (0..full.len()).step_by(13) {
            std::fs::write(&p, &full[..cut]).unwrap();
            // Must fail or succeed cleanly, never panic; what converts must verify.
            let out = dir.path().join("o.safetensors");
            let opts = Options {
                overwrite: true,
                verify: Verify::Full,
                ..Options::default()
            };
            let _ = to_safetensors(&p, &out, &opts, &mut |_| {});
        }
    }
}

#[test]
fn a_record_shorter_than_its_reference_is_refused() {
    // small.pt with every storage member cut to 4 bytes: torch refuses the
    // file (record size does not match), before any view is looked at.
    let src = std::fs::read(fix("small.pt")).unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(src)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("short.pt");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let name = f.name().to_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut data).unwrap();
        if name.contains("/data/") {
            data.truncate(4);
        }
        w.start_file(
            name,
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored),
        )
        .unwrap();
        w.write_all(&data).unwrap();
    }
    w.finish().unwrap();
    let out = dir.path().join("o.safetensors");
    let e = to_safetensors(&p, &out, &verified(), &mut |_| {})
        .err()
        .unwrap();
    assert!(matches!(e, ConvertError::Format { .. }), "{e}");
    assert!(e.to_string().contains("record size does not match"), "{e}");
    assert!(!out.exists());
}

#[test]
fn round_trip_through_torch_format() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("a.safetensors");
    to_safetensors(&fix("every_dtype.pt"), &st, &verified(), &mut |_| {}).unwrap();
    let pt = dir.path().join("a.pt");
    let report = to_torch(&st, &pt, true, false, Durability::Sync).unwrap();
    assert!(report.verified);
    let st2 = dir.path().join("b.safetensors");
    to_safetensors(&pt, &st2, &verified(), &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(&st).unwrap(), std::fs::read(&st2).unwrap());
}

fn write_npy(path: &Path, shape: &[usize], fortran: bool, data: &[i32]) {
    let shape_txt = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut h = format!(
        "{{'descr': '<i4', 'fortran_order': {}, 'shape': {shape_txt}, }}",
        if fortran { "True" } else { "False" }
    );
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((h.len() as u16).to_le_bytes());
    b.extend(h.as_bytes());
    for x in data {
        b.extend(x.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Fortran-ordered arrays exercise the strided walker: the output must
    /// be the row-major order of the same logical array.
    #[test]
    fn fortran_order_is_materialised_row_major(shape in prop::collection::vec(1usize..5, 1..4)) {
        let n: usize = shape.iter().product();
        // Logical element at multi-index idx is its row-major position.
        let mut fdata = vec![0i32; n];
        let nd = shape.len();
        for (pos, slot) in fdata.iter_mut().enumerate() {
            // Decode pos as a Fortran index, re-encode row-major.
            let mut rem = pos;
            let mut idx = vec![0; nd];
            for d in 0..nd {
                idx[d] = rem % shape[d];
                rem /= shape[d];
            }
            let mut c = 0;
            for d in 0..nd {
                c = c * shape[d] + idx[d];
            }
            *slot = c as i32;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        write_npy(&p, &shape, true, &fdata);
        let out = dir.path().join("a.safetensors");
        to_safetensors(&p, &out, &verified(), &mut |_| {}).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let t = st.tensor("a").unwrap();
        prop_assert_eq!(t.shape(), shape.as_slice());
        let got: Vec<i32> = t.data().chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let want: Vec<i32> = (0..n as i32).collect();
        prop_assert_eq!(got, want);
    }
}

#[test]
fn numpy_arrays_inside_a_checkpoint_become_tensors() {
    let flat = Options {
        flatten: true,
        verify: Verify::Full,
        ..Options::default()
    };
    let (_d, bytes) = convert(&fix("numpy_inside.pt"), &flat);
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let f = st.tensor("np_f32").unwrap();
    assert_eq!((f.dtype(), f.shape()), (Dtype::F32, &[2usize, 3][..]));
    assert_eq!(f32s(f.data()), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    // Big-endian int16 is swapped; Fortran order is made row-major.
    let i = st.tensor("np_be_i16").unwrap();
    assert_eq!(i.data(), &[0, 0, 1, 0, 2, 0, 3, 0]);
    let fo = st.tensor("np_fortran").unwrap();
    let v: Vec<f64> = fo
        .data()
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(v, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(st.tensor("np_bool").unwrap().data(), &[1, 0]);
}

/// Flips one byte inside tensor `name`'s data in the safetensors file at `p`.
fn corrupt(p: &Path, name: &str) {
    let mut bytes = std::fs::read(p).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let start = header[name]["data_offsets"][0].as_u64().unwrap() as usize;
    let end = header[name]["data_offsets"][1].as_u64().unwrap() as usize;
    assert!(end > start, "{name} is empty");
    let at = 8 + n + (start + end) / 2;
    bytes[at] ^= 0x01;
    std::fs::write(p, bytes).unwrap();
}

/// Fixtures the verification tests convert and then corrupt.
const VERIFIED_FIXTURES: [&str; 4] = [
    "views.pt",
    "views_legacy.pt",
    "every_dtype.pt",
    "arrays.npz",
];

fn verify_error_name(e: ConvertError) -> (String, String) {
    match e {
        ConvertError::Verify { name, why, .. } => (name, why),
        other => panic!("expected a verification error, got {other:?}"),
    }
}

#[test]
fn checksum_verification_detects_a_corrupted_output() {
    for f in VERIFIED_FIXTURES {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.safetensors");
        let report = to_safetensors(&fix(f), &out, &verified(), &mut |_| {}).unwrap();
        assert!(report.verified);
        // Every tensor was re-read from the output before the rename.
        #[cfg(unix)]
        assert_eq!(report.checked_before_rename, report.tensors, "{f}");
        assert_eq!(report.written.len(), 1);
        let written = &report.written[0];
        assert_eq!(written.len(), report.tensors);
        let meta = SafeTensors::deserialize(&std::fs::read(&out).unwrap())
            .unwrap()
            .metadata()
            .cloned();
        // The intact file passes.
        verify_checksums(&out, written, meta.as_ref()).unwrap();
        // A flipped byte in any non-empty tensor is caught and named.
        let victim = written.iter().rev().find(|w| w.len > 0).unwrap();
        corrupt(&out, &victim.name);
        let (name, why) =
            verify_error_name(verify_checksums(&out, written, meta.as_ref()).unwrap_err());
        assert_eq!(name, victim.name, "{f}");
        assert!(why.contains("XXH3-128"), "{why}");
    }
}

#[test]
fn checksum_verification_checks_dtype_shape_names_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.safetensors");
    let report = to_safetensors(&fix("small.pt"), &out, &verified(), &mut |_| {}).unwrap();
    let written = report.written[0].clone();
    let first = written[0].name.clone();
    let mut w = written.clone();
    w[0].dtype = if w[0].dtype == Dtype::F64 {
        Dtype::I64
    } else {
        Dtype::F64
    };
    let (name, why) = verify_error_name(verify_checksums(&out, &w, None).unwrap_err());
    assert_eq!(
        (name.as_str(), why.starts_with("is ")),
        (first.as_str(), true)
    );
    let mut w = written.clone();
    w[0].shape.push(1);
    let (name, _) = verify_error_name(verify_checksums(&out, &w, None).unwrap_err());
    assert_eq!(name, first);
    let mut w = written.clone();
    w[0].name = "not_there".into();
    let (name, why) = verify_error_name(verify_checksums(&out, &w, None).unwrap_err());
    assert_eq!(
        (name.as_str(), why.as_str()),
        ("not_there", "is missing from the output")
    );
    // One tensor fewer expected than the file holds.
    let (name, why) = verify_error_name(verify_checksums(&out, &written[1..], None).unwrap_err());
    assert_eq!(name, "*");
    assert!(why.contains("tensors"), "{why}");
    let other = std::collections::BTreeMap::from([("format".to_owned(), "np".to_owned())]);
    let (name, why) =
        verify_error_name(verify_checksums(&out, &written, Some(&other)).unwrap_err());
    assert_eq!(name, "*");
    assert!(why.contains("metadata"), "{why}");
}

#[test]
fn full_verification_detects_a_corrupted_output() {
    for f in VERIFIED_FIXTURES {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.safetensors");
        let report = to_safetensors(&fix(f), &out, &full(), &mut |_| {}).unwrap();
        assert!(report.verified);
        assert!(report.written.is_empty());
        let inputs = vec![fix(f)];
        let Plan {
            checkpoints: cks,
            tensors: planned,
            ..
        } = plan(&inputs, &full()).unwrap();
        let pairs = || planned.iter().map(|p| (p, &cks[p.input]));
        verify_against_input(&out, pairs()).unwrap();
        let victim = planned
            .iter()
            .rev()
            .find(|p| p.tensor.byte_len().unwrap() > 0)
            .unwrap();
        corrupt(&out, &victim.name);
        let (name, why) = verify_error_name(verify_against_input(&out, pairs()).unwrap_err());
        assert_eq!(name, victim.name, "{f}");
        assert!(why.contains("differs from the input"), "{why}");
    }
}

#[test]
fn verification_off_writes_the_same_bytes_and_checks_nothing() {
    let off = Options {
        verify: Verify::Off,
        ..Options::default()
    };
    let (_a, plain) = convert(&fix("every_dtype.pt"), &off);
    let (_b, checked) = convert(&fix("every_dtype.pt"), &verified());
    let (_c, fully) = convert(&fix("every_dtype.pt"), &full());
    assert_eq!(plain, checked);
    assert_eq!(plain, fully);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.safetensors");
    let report = to_safetensors(&fix("every_dtype.pt"), &out, &off, &mut |_| {}).unwrap();
    assert!(!report.verified && report.written.is_empty());
}

/// A safetensors file whose tensors span several read-ahead pieces (1 MiB),
/// with a partial last piece, turned into a torch zip (stored members: the
/// pipelined positioned-read path) and back: same bytes.
#[test]
fn large_tensors_stream_through_the_read_ahead_pipeline() {
    use tensorseal_format::write::{FileWriter, TensorSpec, WriteOptions};
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("big.safetensors");
    // 3.5 MiB, exactly 1 MiB, 1 MiB + 4 bytes, and a small one.
    let sizes = [(3 << 20) + (1 << 19), 1 << 20, (1 << 20) + 4, 12];
    let data: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            (0..n)
                .map(|i: usize| (i.wrapping_mul(31) ^ (i >> 9) ^ k) as u8)
                .collect()
        })
        .collect();
    let specs: Vec<TensorSpec> = sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| TensorSpec {
            name: format!("t{k}"),
            dtype: Dtype::U8,
            shape: vec![n / 4, 4],
        })
        .collect();
    FileWriter::create(&st, &specs, &WriteOptions::new())
        .unwrap()
        .fill_and_commit(|i, w| w.write_all(&data[i]))
        .unwrap();
    let pt = dir.path().join("big.pt");
    to_torch(&st, &pt, true, false, Durability::NoSync).unwrap();
    for opts in [verified(), full()] {
        let back = dir.path().join("back.safetensors");
        let _ = std::fs::remove_file(&back);
        let report = to_safetensors(&pt, &back, &opts, &mut |_| {}).unwrap();
        assert!(report.verified);
        #[cfg(unix)]
        assert_eq!(
            report.checked_before_rename,
            if report.written.is_empty() { 0 } else { 4 }
        );
        let bytes = std::fs::read(&back).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        for (k, d) in data.iter().enumerate() {
            assert_eq!(
                file.tensor(&format!("t{k}")).unwrap().data(),
                &d[..],
                "t{k}"
            );
        }
    }
}

/// Verification runs on several threads; with several corrupted tensors the
/// error still names the first one in file order, every time.
#[test]
fn checksum_verification_reports_the_first_bad_tensor_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.safetensors");
    let report = to_safetensors(&fix("every_dtype.pt"), &out, &verified(), &mut |_| {}).unwrap();
    let written = &report.written[0];
    let nonempty: Vec<&str> = written
        .iter()
        .filter(|w| w.len > 0)
        .map(|w| w.name.as_str())
        .collect();
    assert!(nonempty.len() >= 4, "{nonempty:?}");
    // Corrupt every other non-empty tensor, starting with the second.
    for name in nonempty.iter().skip(1).step_by(2) {
        corrupt(&out, name);
    }
    let meta = SafeTensors::deserialize(&std::fs::read(&out).unwrap())
        .unwrap()
        .metadata()
        .cloned();
    for _ in 0..20 {
        let (name, _) =
            verify_error_name(verify_checksums(&out, written, meta.as_ref()).unwrap_err());
        assert_eq!(name, nonempty[1]);
    }
}

fn convert_err(src: &Path, opts: &Options) -> (tempfile::TempDir, ConvertError) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.safetensors");
    let e = to_safetensors(src, &out, opts, &mut |_| {}).unwrap_err();
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{src:?} left {left:?}");
    (dir, e)
}

#[test]
fn every_spelling_of_a_big_endian_record_converts_to_the_little_endian_bytes() {
    let (_a, little) = convert(&fix("exact/bo_little.pt"), &verified());
    for f in [
        "bo_big.pt",
        "bo_big_upper_record.pt",
        "bo_big_mixed_record.pt",
        "bo_absent.pt",
    ] {
        let (_b, other) = convert(&fix(&format!("exact/{f}")), &full());
        assert_eq!(little, other, "{f}");
    }
    assert!(Checkpoint::open(fix("exact/bo_big_upper_record.pt"))
        .unwrap()
        .big_endian());
    for f in ["bo_big_newline.pt", "bo_big_upper_value.pt", "bo_empty.pt"] {
        let (_d, e) = convert_err(&fix(&format!("exact/{f}")), &verified());
        assert!(
            e.to_string().contains("neither `little` nor `big`"),
            "{f}: {e}"
        );
    }
    let (_d, e) = convert_err(&fix("exact/bo_twice.pt"), &verified());
    assert!(e.to_string().contains("differ only in case"), "{e}");
}

#[test]
fn colliding_key_names_are_errors_naming_both_keys() {
    let (_d, e) = convert_err(&fix("exact/keys_int_vs_str.pt"), &verified());
    assert!(e.to_string().contains("1 and '1'"), "{e}");
    let (_d, e) = convert_err(&fix("exact/keys_dotted_path.pt"), &verified());
    let m = e.to_string();
    assert!(m.contains("['a.b']") && m.contains("['a']['b']"), "{m}");
}

#[test]
fn the_output_size_is_bounded_before_anything_is_written() {
    let src = fix("exact/views_huge_expand.pt");
    let (_d, e) = convert_err(&src, &verified());
    match e {
        ConvertError::OutputTooLarge {
            total,
            limit,
            default,
            ..
        } => {
            assert_eq!(total, 4 << 40);
            assert!(default);
            let len = std::fs::metadata(&src).unwrap().len();
            assert_eq!(limit, tensorseal_convert::default_max_output_size(len));
        }
        e => panic!("{e:?}"),
    }
    let small = Options {
        max_output_size: Some(1000),
        ..verified()
    };
    let (_d, e) = convert_err(&fix("exact/views_overlap.pt"), &small);
    assert!(
        matches!(e, ConvertError::OutputTooLarge { limit: 1000, .. }),
        "{e:?}"
    );
}

#[test]
fn a_cancelled_conversion_removes_its_temporary_file() {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let opts = Options {
        cancel: Some(flag),
        ..verified()
    };
    let (_d, e) = convert_err(&fix("exact/views_overlap.pt"), &opts);
    assert!(matches!(e, ConvertError::Interrupted), "{e:?}");
    // Mid-write failure: a storage missing after earlier tensors were written.
    let (_d, e) = convert_err(&fix("exact/missing_storage.pt"), &verified());
    assert!(e.to_string().contains("not in the file"), "{e}");
}

#[test]
fn a_torch_index_is_read_by_the_strict_safetensors_index_reader() {
    let dir = tempfile::tempdir().unwrap();
    let ix = dir.path().join("pytorch_model.bin.index.json");
    let refused = [
        (
            r#"{"weight_map": {"a": "x.bin", "a": "y.bin"}}"#,
            "duplicate key",
        ),
        (
            r#"{"weight_map": {"a": "../x.bin"}}"#,
            "not a plain relative path",
        ),
        (r#"{"weight_map": {"a": 1}}"#, "not a file name"),
        (r#"{"weight_map": {}}"#, "index names no shards"),
    ];
    for (text, why) in refused {
        std::fs::write(&ix, text).unwrap();
        let e = tensorseal_convert::resolve_inputs(dir.path()).unwrap_err();
        assert!(e.to_string().contains(why), "{text}: {e}");
    }
    std::fs::write(
        &ix,
        r#"{"weight_map": {"b": "2.bin", "a": "1.bin", "c": "2.bin"}}"#,
    )
    .unwrap();
    let shards = tensorseal_convert::resolve_inputs(&ix).unwrap();
    assert_eq!(shards, [dir.path().join("1.bin"), dir.path().join("2.bin")]);
}
