//! Fuzzes the compressed-wrapper path: every decoder of `tensorseal-codec` (wrappers and
//! zip member methods) under small limits, then a scan of the input as a compressed file.
//! Nothing may panic; no decoder may return more than its limit; a limit error must only
//! come from a stream that really reached the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorseal_codec::{decode_slice, read_bounded, sniff, zip_member, Codec, CodecError, Limits};
use tensorseal_scan::{Config, Scanner};

const CODECS: [Codec; 7] = [
    Codec::Gzip,
    Codec::Zlib,
    Codec::Bzip2,
    Codec::Xz,
    Codec::LzmaAlone,
    Codec::Zstd,
    Codec::Lz4,
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_output: 1 << 16,
        max_memory: 1 << 20,
    };
    // The first byte picks a decoder, so that each one sees arbitrary bytes, not only
    // bytes that start with its magic.
    let codec = CODECS[usize::from(sel) % CODECS.len()];
    let d = decode_slice(codec, body, limits);
    assert!(d.data.len() as u64 <= limits.max_output);
    if matches!(d.error, Some(CodecError::ExceedsLimit { .. })) {
        assert_eq!(d.data.len() as u64, limits.max_output);
    }
    let method = [0u16, 8, 12, 14][usize::from(sel >> 4) % 4];
    if let Ok(r) = zip_member(method, body, u64::from(sel) << 8, limits.max_memory) {
        let d = read_bounded(r, limits.max_output, "zip");
        assert!(d.data.len() as u64 <= limits.max_output);
    }
    // The scanner on the input itself, and on the input behind a real magic number.
    let cfg = Config {
        max_depth: 3,
        max_member_bytes: 1 << 18,
        max_total_bytes: 1 << 20,
        max_members: 64,
        max_pickle_bytes: 1 << 18,
        ..Config::default()
    };
    let scanner = Scanner::new(cfg);
    let r = scanner.scan_bytes("fuzz", "fuzz.pkl.gz", body);
    if sniff(body).is_some() {
        assert!(!r.findings.iter().any(|f| f.rule == "archive-unscannable"));
    }
    for f in &r.findings {
        assert!(f.member.len() <= 8, "nesting {:?}", f.member);
    }
});
