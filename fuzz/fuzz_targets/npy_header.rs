//! Fuzzes the shared `.npy` header reader (tensorseal-npy): the input is read as a whole
//! `.npy`, as a version 1.0 header body, and as literal text in both modes, then the
//! scanner runs on it. Nothing may panic; offsets must stay inside the input; a dtype
//! judged plain must never be an object spelling.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorseal_npy::{classify_descr, literal_eval, parse_header, read_preamble, Value, Verdict};
use tensorseal_scan::{Config, Scanner};

fn check(bytes: &[u8]) {
    if let Ok(h) = parse_header(bytes, 1 << 16) {
        assert!(h.data_offset() <= bytes.len() as u64);
        assert!(h.header_chars as u64 <= h.preamble.header_len);
        let v = h.dtype_verdict();
        assert_eq!(v, classify_descr(&h.descr));
        if let (Verdict::Plain, Value::Str(s)) = (&v, &h.descr) {
            assert!(
                !s.trim_start_matches(['<', '>', '|', '=']).starts_with('O'),
                "{s:?} plain"
            );
        }
        let _ = h.numeric().map(|n| n.big_endian());
    }
    let _ = read_preamble(bytes);
}

fuzz_target!(|data: &[u8]| {
    check(data);
    // The input as the header of a version 1.0 file.
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let body = data.get(..usize::from(u16::MAX)).unwrap_or(data);
    npy.extend_from_slice(&(body.len() as u16).to_le_bytes());
    npy.extend_from_slice(body);
    check(&npy);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = literal_eval(text, false);
        let _ = literal_eval(text, true);
    }
    let cfg = Config {
        max_depth: 2,
        max_pickle_bytes: 1 << 16,
        ..Config::default()
    };
    let report = Scanner::new(cfg).scan_bytes("fuzz", "fuzz.npy", &npy);
    for f in &report.findings {
        if let Some(off) = f.offset {
            assert!(
                off <= npy.len() as u64,
                "{} offset {off} past {}",
                f.rule,
                npy.len()
            );
        }
    }
});
