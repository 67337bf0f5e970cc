//! Fuzzes the scanner's content identification and its hand-written zip record reader,
//! then a whole scan of the input under small limits. Nothing may panic; findings must
//! point inside the input; nesting must stay within the depth limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorseal_scan::identify::{identify, PREFIX_LEN};
use tensorseal_scan::{zipread, Config, Scanner};

fuzz_target!(|data: &[u8]| {
    let prefix = data.get(..PREFIX_LEN.min(data.len())).unwrap_or(data);
    let _ = identify(prefix, data.len() as u64, false);
    let _ = identify(prefix, data.len() as u64, true);
    let src: &[u8] = data;
    if let Ok(eocd) = zipread::read_eocd(&src) {
        if let Ok(entries) = zipread::read_central(&src, &eocd, 256) {
            for e in entries {
                if let Ok(l) = zipread::read_local(&src, e.local_offset) {
                    assert!(l.data_start <= data.len() as u64 + 65_536 * 2 + 30);
                    let _ = zipread::read_descriptor(
                        &src,
                        l.data_start.saturating_add(e.csize),
                        l.zip64,
                    );
                    let _ =
                        zipread::inflate(&src, l.data_start, e.csize, e.method, e.usize, 1 << 16);
                }
            }
        }
    }
    let cfg = Config {
        max_depth: 2,
        max_member_bytes: 1 << 20,
        max_total_bytes: 4 << 20,
        max_members: 256,
        max_pickle_bytes: 1 << 20,
        ..Config::default()
    };
    let report = Scanner::new(cfg).scan_bytes("fuzz", "fuzz.bin", data);
    for f in &report.findings {
        assert!(f.member.len() <= 8, "nesting {:?}", f.member);
        if f.member.is_empty() {
            if let Some(off) = f.offset {
                assert!(
                    off <= data.len() as u64,
                    "{} offset {off} past {}",
                    f.rule,
                    data.len()
                );
            }
        }
    }
});
