//! `.npy` headers are judged with numpy's semantics (scanner item 5): object dtypes
//! behind duplicate keys, escapes or nesting are found, numeric near misses stay clean,
//! and headers the reader cannot evaluate fail closed with their data analysed.

use tensorseal_scan::{Config, Scanner};

/// A protocol-2 pickle that calls builtins.exec (never run here).
const PAYLOAD: &[u8] = b"\x80\x02cbuiltins\nexec\nX\x04\x00\x00\x00passq\x00\x85R.";

fn npy(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
    let mut b = b"\x93NUMPY".to_vec();
    b.extend_from_slice(&[version, 0]);
    if version == 1 {
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        b.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

fn rules(bytes: &[u8]) -> Vec<&'static str> {
    let r = Scanner::new(Config::default()).scan_bytes("t", "t.npy", bytes);
    r.findings.iter().map(|f| f.rule).collect()
}

#[test]
fn hidden_object_dtypes_are_found_and_analysed() {
    for descr in [
        "'<f4', 'descr': '|O'",
        "'\\x4f'",
        "'\\u004f' '8'",
        "'object'",
        "[('a', '<f4'), ('b', [('c', ('|O', (2,)))])]",
        "'f4,O'",
        "'\\x11'",
    ] {
        let h = format!("{{'descr': {descr}, 'fortran_order': False, 'shape': (1,)}}\n");
        for v in [1, 3] {
            let got = rules(&npy(v, &h, PAYLOAD));
            assert!(got.contains(&"numpy-object-array"), "{descr}: {got:?}");
            assert!(got.contains(&"pickle-dangerous-global"), "{descr}: {got:?}");
        }
    }
}

#[test]
fn numeric_near_misses_are_clean() {
    for h in [
        "{'descr': '|O', 'fortran_order': False, 'shape': (2,), 'descr': '<f4'}",
        "{'descr': '\\x3cf4', 'fortran_order': False, 'shape': (2L,)}",
        "{'descr': [('O', '<f4')], 'fortran_order': True, 'shape': (1,)}",
    ] {
        assert_eq!(rules(&npy(2, h, &[0; 8])), Vec::<&str>::new(), "{h}");
    }
}

#[test]
fn unevaluable_headers_fail_closed_with_data_analysed() {
    // numpy reads \N{...}; tensorseal does not evaluate it.
    let h = "{'descr': '\\N{LATIN CAPITAL LETTER O}', 'fortran_order': False, 'shape': (1,)}";
    let got = rules(&npy(1, h, PAYLOAD));
    assert!(
        got.contains(&"numpy-invalid") && got.contains(&"pickle-dangerous-global"),
        "{got:?}"
    );
    // A header past the reader's limit (numpy with allow_pickle=True has none).
    let big = format!(
        "{{'descr': '|O', 'fortran_order': False, 'shape': (1,)}}{}",
        " ".repeat(tensorseal_npy::DEFAULT_MAX_HEADER + 1)
    );
    let got = rules(&npy(2, &big, PAYLOAD));
    assert!(
        got.contains(&"numpy-invalid") && got.contains(&"pickle-dangerous-global"),
        "{got:?}"
    );
    // numpy itself refuses these: reported, nothing more to analyse.
    for bad in [
        "{'descr': '<f4', 'fortran_order': 0, 'shape': ()}",
        "{'descr': '<f4'",
    ] {
        assert_eq!(rules(&npy(1, bad, &[])), vec!["numpy-invalid"], "{bad}");
    }
}
