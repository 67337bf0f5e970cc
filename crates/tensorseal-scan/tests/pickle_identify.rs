//! Identification of pickles by running the machine, not by start bytes: generated opcode
//! streams that are valid by construction (each opcode pushes one value, optional PROTO and
//! FRAME in either order, optional long first opcode, trailing bytes) are scanned as pickles
//! whatever their first opcode, and a call made before the stream breaks is reported.

use proptest::prelude::*;
use tensorseal_scan::{Format, Scanner};

/// One opcode that pushes one value (and its argument).
fn leaf() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"N".to_vec()),
        Just(vec![0x88]),
        Just(vec![0x89]),
        any::<u8>().prop_map(|b| vec![b'K', b]),
        any::<u16>().prop_map(|v| {
            let mut o = vec![b'M'];
            o.extend_from_slice(&v.to_le_bytes());
            o
        }),
        any::<i32>().prop_map(|v| format!("I{v}\n").into_bytes()),
        any::<f64>().prop_map(|v| {
            let mut o = vec![b'G'];
            o.extend_from_slice(&v.to_be_bytes());
            o
        }),
        "[a-z]{0,40}".prop_map(|s| {
            let mut o = vec![0x8c, s.len() as u8];
            o.extend_from_slice(s.as_bytes());
            o
        }),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| {
            let mut o = vec![b'B'];
            o.extend_from_slice(&(b.len() as u32).to_le_bytes());
            o.extend_from_slice(&b);
            o
        }),
        Just(b"]".to_vec()),
        Just(b"}".to_vec()),
        Just(b")".to_vec()),
        Just(vec![0x8f]),
    ]
}

fn stream() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec((leaf(), any::<bool>()), 1..12),
        proptest::option::of(0u8..=5),
        0u8..3,
        any::<bool>(),
        prop_oneof![
            Just(Vec::new()),
            Just(vec![0xff, 0xff]),
            Just(b"text\n".to_vec())
        ],
    )
        .prop_map(|(ops, proto, layout, long_first, tail)| {
            let mut body = Vec::new();
            if long_first {
                body.push(b'X');
                body.extend_from_slice(&70_000u32.to_le_bytes());
                body.extend(std::iter::repeat_n(b'a', 70_000));
                body.push(b'0');
            }
            for (i, (op, memo)) in ops.iter().enumerate() {
                body.extend_from_slice(op);
                if *memo {
                    body.extend_from_slice(&[b'q', i as u8]);
                }
                if i + 1 < ops.len() {
                    body.push(b'0'); // POP: one value left at STOP
                }
            }
            body.push(b'.');
            let proto: Vec<u8> = proto.map(|p| vec![0x80, p]).unwrap_or_default();
            let framed = |b: &[u8]| {
                let mut o = vec![0x95];
                o.extend_from_slice(&(b.len() as u64).to_le_bytes());
                o.extend_from_slice(b);
                o
            };
            let mut out = match layout {
                0 => [proto.clone(), framed(&body)].concat(),
                1 => framed(&[proto.clone(), body.clone()].concat()),
                _ => [proto, body].concat(),
            };
            out.extend_from_slice(&tail);
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn valid_streams_are_pickles(data in stream()) {
        let r = Scanner::default().scan_bytes("s", "s.bin", &data);
        prop_assert!(matches!(r.format, Format::Pickle | Format::TorchLegacy), "{:?}", r.format);
    }
}

#[test]
fn a_call_before_the_stream_breaks_fails_the_policy() {
    // NEWTRUE, POP, then builtins.exec("x") by STACK_GLOBAL, then an unknown opcode.
    let mut data = vec![0x88, b'0', 0x8c, 8];
    data.extend_from_slice(b"builtins");
    data.extend_from_slice(&[0x8c, 4]);
    data.extend_from_slice(b"exec");
    data.extend_from_slice(&[0x93, 0x8c, 1, b'x', 0x85, b'R', 0xff]);
    let r = Scanner::default().scan_bytes("s", "s.bin", &data);
    assert_eq!(r.format, Format::Pickle);
    assert!(r.fails_policy(), "{:?}", r.findings);
}

#[test]
fn a_global_that_is_never_called_in_broken_text_is_not_a_finding() {
    let r = Scanner::default().scan_bytes("s", "README.md", b"code of conduct\nread me\n\xff");
    assert_eq!(r.format, Format::Unknown);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
}

fn fixture(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/scan/benign")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `builtins.exec("x")` as a complete protocol-2 pickle.
fn payload() -> Vec<u8> {
    b"\x80\x02cbuiltins\nexec\nX\x01\x00\x00\x00x\x85R.".to_vec()
}

#[test]
fn legacy_storages_are_walked_and_a_trailing_pickle_is_analysed() {
    let clean = fixture("state_dict_legacy.pt");
    let r = Scanner::default().scan_bytes("s", "s.pt", &clean);
    assert_eq!(r.format, Format::TorchLegacy);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    let mut bad = clean.clone();
    bad.extend_from_slice(&payload());
    let r = Scanner::default().scan_bytes("s", "s.pt", &bad);
    let hit = r
        .findings
        .iter()
        .find(|f| f.global.as_deref() == Some("builtins.exec"))
        .unwrap_or_else(|| panic!("{:?}", r.findings));
    assert_eq!(hit.offset, Some(clean.len() as u64 + 2));
    // Raw data after the storages that does not run as a pickle is data.
    let mut data = clean;
    data.extend_from_slice(&[0u8; 64]);
    let r = Scanner::default().scan_bytes("s", "s.pt", &data);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
}

#[test]
fn legacy_storage_running_past_the_end_fails_closed() {
    let mut data = fixture("state_dict_legacy.pt");
    data.truncate(data.len() - 1);
    let r = Scanner::default().scan_bytes("s", "s.pt", &data);
    assert!(
        r.findings.iter().any(|f| f.rule == "torch-invalid"),
        "{:?}",
        r.findings
    );
    assert!(r.fails_policy());
}

#[test]
fn a_stream_longer_than_the_machine_follows_fails_closed() {
    // Over a million NONEs (past the machine's stack limit, not CPython's), then a call:
    // CPython gets there, the machine stops first.
    let mut data = b"N".repeat(1_100_000);
    data.extend_from_slice(b"cbuiltins\nexec\n(S'x'\ntR.");
    let r = Scanner::default().scan_bytes("s", "s.bin", &data);
    assert_eq!(r.format, Format::Pickle);
    assert!(r.fails_policy(), "{:?}", r.findings);
}

/// Found by the CPython property test: these bytes are a complete pickle and also pass
/// liblzma's plausibility checks for an lzma-alone header. pickle.load runs them, so the
/// scanner names them a pickle (and still tries the lzma view).
#[test]
fn lzma_alone_lookalike_that_is_a_complete_pickle_is_a_pickle() {
    let bytes = b"B\x02\x00\x00\x00J\xb4).\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
    let report = tensorseal_scan::Scanner::default().scan_bytes("x", "x", bytes);
    assert_eq!(report.format, tensorseal_scan::Format::Pickle, "{report:?}");
}
