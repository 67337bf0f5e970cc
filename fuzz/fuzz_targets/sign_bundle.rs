//! Fuzzes the signature-file parsers of tensorseal-sign: the Sigstore bundle
//! (verify_bundle with a fixed key), the in-toto statement (parse_statement,
//! reached directly since random payloads never carry a valid signature) and
//! PEM key parsing. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorseal_sign::keys::{PrivateKey, PublicKey};
use tensorseal_sign::{bundle, verify_bundle};

const KEY: &str = include_str!("../../tests/fixtures/sign/p256-pub.pem");

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = PublicKey::from_pem(KEY.as_bytes(), "fixture") {
        let _ = verify_bundle(data, &key);
    }
    let _ = bundle::parse_bundle(data);
    let _ = bundle::parse_statement("application/vnd.in-toto+json", data);
    let _ = PublicKey::from_pem(data, "fuzz");
    let _ = PrivateKey::from_pem(data, Some(b"pw"), "fuzz");
});
