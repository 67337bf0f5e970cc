//! The committed corpus (scripts/gen_scan_fixtures.py): every malicious sample yields its
//! specific findings (rule id + global), every benign sample yields none.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use tensorseal_scan::{Config, Policy, Scanner};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/scan")
}

fn expected() -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(corpus().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("valid json")
}

fn scan(rel: &str, cfg: Config) -> tensorseal_scan::FileReport {
    Scanner::new(cfg).scan_file(&corpus().join(rel), rel)
}

#[test]
fn every_sample_has_its_findings() {
    let exp = expected();
    assert!(exp.len() >= 60, "corpus too small: {}", exp.len());
    let mut failures = Vec::new();
    for (rel, e) in &exp {
        let r = scan(rel, Config::default());
        let fmt = e["format"].as_str().unwrap();
        if r.format.as_str() != fmt {
            failures.push(format!("{rel}: format {} != {fmt}", r.format));
        }
        let clean = e["clean"].as_bool().unwrap();
        if clean == r.fails_policy() {
            failures.push(format!(
                "{rel}: expected clean={clean}, findings: {:#?}",
                r.findings
            ));
        }
        let wants = e["expect"].as_array().unwrap();
        if rel.starts_with("benign/") && !r.findings.is_empty() {
            failures.push(format!(
                "{rel}: benign sample has findings {:#?}",
                r.findings
            ));
        }
        for w in wants {
            let rule = w[0].as_str().unwrap();
            let global = w[1].as_str();
            let hit = r
                .findings
                .iter()
                .any(|f| f.rule == rule && (global.is_none() || f.global.as_deref() == global));
            if !hit {
                failures.push(format!(
                    "{rel}: missing {rule} {global:?}; got {:?}",
                    r.findings
                        .iter()
                        .map(|f| (f.rule, f.global.clone()))
                        .collect::<Vec<_>>()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn allow_accepts_an_unknown_global_but_never_a_dangerous_one() {
    let rel = "malicious/unknown_global.pkl";
    assert!(scan(rel, Config::default()).fails_policy());
    for allow in ["mypkg.models.Net", "mypkg.models.*", "mypkg.*"] {
        let cfg = Config {
            allow: vec![allow.into()],
            ..Config::default()
        };
        let r = scan(rel, cfg);
        assert!(r.findings.is_empty(), "{allow}: {:?}", r.findings);
    }
    let cfg = Config {
        allow: vec!["mypkg.model".into(), "mypkg.models.Ne".into()],
        ..Config::default()
    };
    assert!(scan(rel, cfg).fails_policy());
    let cfg = Config {
        allow: vec!["os.system".into(), "os.*".into()],
        ..Config::default()
    };
    let r = scan("malicious/memo_dup_stack_global.pkl", cfg);
    assert!(r
        .findings
        .iter()
        .any(|f| f.rule == "pickle-dangerous-global" && f.global.as_deref() == Some("os.system")));
}

#[test]
fn safetensors_only_fails_every_other_weight_format() {
    let strict = || Config {
        policy: Policy::SafetensorsOnly,
        ..Config::default()
    };
    for rel in [
        "benign/state_dict_all_dtypes.pt",
        "benign/state_dict_legacy.pt",
        "benign/array_float32.npy",
        "benign/arrays.npz",
        "benign/plain_data.pkl",
    ] {
        assert!(!scan(rel, Config::default()).fails_policy(), "{rel}");
        let r = scan(rel, strict());
        assert!(
            r.findings
                .iter()
                .any(|f| f.rule == "policy-not-safetensors" && f.fails_policy),
            "{rel}: {:?}",
            r.findings
        );
    }
    for rel in ["benign/model.safetensors", "benign/config.json"] {
        assert!(scan(rel, strict()).findings.is_empty(), "{rel}");
    }
}

#[test]
fn max_depth_bounds_nested_archives() {
    let rel = "malicious/nested_archives.zip"; // zip > tar.gz > tar > zip > pickle
    let shallow = Config {
        max_depth: 1,
        ..Config::default()
    };
    let r = scan(rel, shallow);
    assert!(r
        .findings
        .iter()
        .any(|f| f.rule == "archive-limit-exceeded"));
    assert!(!r
        .findings
        .iter()
        .any(|f| f.rule == "pickle-dangerous-global"));
    let deep = Config {
        max_depth: 10,
        ..Config::default()
    };
    let r = scan("malicious/too_deep.zip", deep);
    assert!(r
        .findings
        .iter()
        .any(|f| f.rule == "pickle-dangerous-global" && f.member.len() == 6));
}

/// A hand-made zip of (name, content, deflate?, recorded CRC override) members.
fn zip_of(members: &[(&str, &[u8], bool, Option<u32>)]) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data, deflate, crc_override) in members {
        let comp = if *deflate {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        } else {
            data.to_vec()
        };
        let crc = crc_override.unwrap_or_else(|| crc32fast::hash(data));
        let method: u16 = if *deflate { 8 } else { 0 };
        let offset = out.len() as u32;
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        for v in [20u16, 0, method, 0, 0x21] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, comp.len() as u32, data.len() as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&comp);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        for v in [20u16, 20, 0, method, 0, 0x21] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, comp.len() as u32, data.len() as u32] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [name.len() as u16, 0, 0, 0, 0] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        central.extend_from_slice(&0u32.to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    let n = members.len() as u16;
    for v in [0u16, 0, n, n] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fn one_member_zip(name: &str, data: &[u8], deflate: bool) -> Vec<u8> {
    zip_of(&[(name, data, deflate, None)])
}

#[test]
fn decompression_is_bounded() {
    // 64 MiB of zeros deflate to ~64 KiB: a small zip bomb.
    let zeros = vec![0u8; 64 << 20];
    let bomb = one_member_zip("zeros.bin", &zeros, true);
    assert!(bomb.len() < 200_000);
    let cfg = Config {
        max_member_bytes: 1 << 20,
        ..Config::default()
    };
    let r = Scanner::new(cfg).scan_bytes("bomb.zip", "bomb.zip", &bomb);
    assert!(
        r.findings
            .iter()
            .any(|f| f.rule == "archive-limit-exceeded" && f.fails_policy),
        "{:?}",
        r.findings
    );
    // The total budget bounds many members too.
    let inner = one_member_zip("zeros.bin", &zeros[..4 << 20], true);
    let cfg = Config {
        max_total_bytes: 2 << 20,
        ..Config::default()
    };
    let r =
        Scanner::new(cfg).scan_bytes("b.zip", "b.zip", &one_member_zip("in.zip", &inner, false));
    assert!(r
        .findings
        .iter()
        .any(|f| f.rule == "archive-limit-exceeded"));
    // Within limits a clean member is clean.
    let ok = one_member_zip("notes.txt", b"hello", true);
    assert!(Scanner::default()
        .scan_bytes("ok.zip", "ok.zip", &ok)
        .findings
        .is_empty());
}

#[test]
fn torch_storages_are_never_read() {
    let pk: &[u8] = b"\x80\x02}q\x00.";
    let storage: &[u8] = &[1, 2, 3, 4];
    // A plain zip: the member with a wrong CRC is read and reported.
    let plain = zip_of(&[
        ("m/other.pkl", pk, false, None),
        ("m/data/0", storage, false, Some(7)),
    ]);
    let r = Scanner::default().scan_bytes("x.zip", "x.zip", &plain);
    assert!(
        r.findings.iter().any(|f| f.rule == "zip-bad-crc"),
        "{:?}",
        r.findings
    );
    // A torch checkpoint (m/data.pkl present): the storage member is not read at all.
    let torch = zip_of(&[
        ("m/data.pkl", pk, false, None),
        ("m/data/0", storage, false, Some(7)),
    ]);
    let r = Scanner::default().scan_bytes("x.pt", "x.pt", &torch);
    assert_eq!(r.format.as_str(), "torch_zip");
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert!(
        r.members.iter().all(|m| !m.member[0].contains("/data/")),
        "{:?}",
        r.members
    );
}

#[test]
fn corrupted_samples_never_panic() {
    // Flip bytes all over every sample: the scanner must report, never panic.
    let exp = expected();
    for rel in exp.keys() {
        let bytes = std::fs::read(corpus().join(rel)).unwrap();
        for step in [1usize, 7, 31] {
            let mut b = bytes.clone();
            let mut i = step % b.len().max(1);
            while i < b.len() {
                b[i] ^= 0x5a;
                i += step * 13 + 1;
            }
            let _ = Scanner::default().scan_bytes(rel, rel, &b);
            for cut in [b.len() / 2, b.len().saturating_sub(1), 9] {
                let _ = Scanner::default().scan_bytes(rel, rel, &bytes[..cut.min(bytes.len())]);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048), prefix in 0usize..6) {
        let mut d = data;
        let heads: [&[u8]; 6] = [b"PK\x03\x04", b"\x80\x04", b"\x93NUMPY\x01\x00", b"GGUF\x03\x00\x00\x00", b"\x1f\x8b", b""];
        let mut v = heads[prefix].to_vec();
        v.append(&mut d);
        let _ = Scanner::default().scan_bytes("p", "p", &v);
    }
}

/// A zip64 archive (all sizes and offsets in zip64 extra fields, zip64 EOCD record and
/// locator), as large checkpoints are written: read correctly, no structural findings.
#[test]
fn zip64_records_are_followed() {
    let payload: &[u8] = b"cos\nsystem\n(S'id'\ntR.";
    let name = b"archive/data.pkl";
    let crc = crc32fast::hash(payload);
    let n = payload.len() as u64;
    let mut out = Vec::new();
    // Local header with zip64 extra.
    out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    for v in [45u16, 0, 0, 0, 0x21] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&u32::MAX.to_le_bytes());
    out.extend_from_slice(&u32::MAX.to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&20u16.to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(payload);
    // Central entry with zip64 extra (usize, csize, offset).
    let cd = out.len() as u64;
    out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    for v in [45u16, 45, 0, 0, 0, 0x21] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&u32::MAX.to_le_bytes());
    out.extend_from_slice(&u32::MAX.to_le_bytes());
    for v in [name.len() as u16, 28, 0, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&u32::MAX.to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&24u16.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    let cd_len = out.len() as u64 - cd;
    // zip64 EOCD record.
    let rec = out.len() as u64;
    out.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
    out.extend_from_slice(&44u64.to_le_bytes());
    for v in [45u16, 45] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes());
    out.extend_from_slice(&cd_len.to_le_bytes());
    out.extend_from_slice(&cd.to_le_bytes());
    // Locator.
    out.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&rec.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    // EOCD with the 0xFFFF / 0xFFFFFFFF escapes.
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, u16::MAX, u16::MAX] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&u32::MAX.to_le_bytes());
    out.extend_from_slice(&u32::MAX.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    let r = Scanner::default().scan_bytes("z64.pt", "z64.pt", &out);
    assert_eq!(r.format.as_str(), "torch_zip");
    let rules: Vec<_> = r.findings.iter().map(|f| f.rule).collect();
    assert_eq!(rules, ["pickle-dangerous-global"], "{:#?}", r.findings);
    assert_eq!(r.findings[0].member, ["archive/data.pkl"]);
}

#[test]
fn structural_errors_are_specific() {
    let base = one_member_zip("a.pkl", b"\x80\x02}q\x00.", false);
    assert!(Scanner::default()
        .scan_bytes("z", "z.zip", &base)
        .findings
        .is_empty());
    let eocd = base.len() - 22;
    let rules = |b: &[u8]| -> Vec<(&'static str, String)> {
        Scanner::default()
            .scan_bytes("z", "z.zip", b)
            .findings
            .into_iter()
            .map(|f| (f.rule, f.message))
            .collect()
    };
    // Central directory points the member's local header past the end of the file.
    let mut b = base.clone();
    let cd = u32::from_le_bytes(b[eocd + 16..eocd + 20].try_into().unwrap()) as usize;
    b[cd + 42..cd + 46].copy_from_slice(&9_999u32.to_le_bytes());
    let r = rules(&b);
    assert!(
        r.iter()
            .any(|(rule, m)| *rule == "zip-invalid" && m.contains("local header unreadable")),
        "{r:?}"
    );
    // The local entry at offset 0 is now not referenced: reported as hidden, and scanned.
    assert!(
        r.iter().any(|(rule, _)| *rule == "zip-hidden-member"),
        "{r:?}"
    );
    // EOCD declares two entries, the directory holds one.
    let mut b = base.clone();
    b[eocd + 10..eocd + 12].copy_from_slice(&2u16.to_le_bytes());
    let r = rules(&b);
    assert!(
        r.iter()
            .any(|(rule, m)| *rule == "zip-invalid" && m.contains("declares 2 entries")),
        "{r:?}"
    );
    // Bytes after the end of the archive.
    let mut b = base.clone();
    b.extend_from_slice(b"trailing");
    let r = rules(&b);
    assert!(
        r.iter()
            .any(|(rule, m)| *rule == "zip-hidden-member" && m.contains("8 bytes after")),
        "{r:?}"
    );
    // A compression method no loader reads: reported unscannable, not silently skipped.
    let mut b = base.clone();
    b[8..10].copy_from_slice(&9u16.to_le_bytes());
    b[cd + 10..cd + 12].copy_from_slice(&9u16.to_le_bytes());
    let r = rules(&b);
    assert!(
        r.iter()
            .any(|(rule, m)| *rule == "archive-unscannable" && m.contains("deflate64")),
        "{r:?}"
    );
    // bzip2 is read (zipfile reads it): stored bytes relabelled bzip2 are corrupt, which
    // fails the policy.
    let mut b = base.clone();
    b[8..10].copy_from_slice(&12u16.to_le_bytes());
    b[cd + 10..cd + 12].copy_from_slice(&12u16.to_le_bytes());
    let r = rules(&b);
    assert!(
        r.iter()
            .any(|(rule, m)| *rule == "zip-invalid" && m.contains("bzip2 data is corrupt")),
        "{r:?}"
    );
}

/// `builtins.exec("x")` behind `pad` bytes of a BINBYTES argument that is popped: the
/// payload runs under pickle.load wherever it lies.
fn payload_after(pad: usize) -> Vec<u8> {
    let mut p = b"\x80\x04B".to_vec();
    p.extend_from_slice(&(pad as u32).to_le_bytes());
    p.extend(std::iter::repeat_n(b'x', pad));
    p.extend_from_slice(b"0\x8c\x08builtins\x8c\x04exec\x93\x8c\x01x\x85R.");
    p
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Each limit, once exceeded, is a finding that fails the default policy: nothing past a
/// limit is ever taken as clean.
#[test]
fn every_limit_fails_closed() {
    let fails = |cfg: Config, name: &str, bytes: &[u8]| {
        let r = Scanner::new(cfg).scan_bytes(name, name, bytes);
        assert!(r.fails_policy(), "{name}: {:?}", r.findings);
        r
    };
    // Sanity: with default limits the payload itself is found.
    let r = fails(Config::default(), "p.pkl", &payload_after(5000));
    assert!(r
        .findings
        .iter()
        .any(|f| f.global.as_deref() == Some("builtins.exec")));
    // The pickle byte limit: the payload lies past it.
    let cfg = Config {
        max_pickle_bytes: 1000,
        ..Config::default()
    };
    fails(cfg, "p.pkl", &payload_after(5000));
    // The member count.
    let members: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("m{i}.txt"), b"hi".to_vec()))
        .collect();
    let spec: Vec<(&str, &[u8], bool, Option<u32>)> = members
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice(), false, None))
        .collect();
    let cfg = Config {
        max_members: 3,
        ..Config::default()
    };
    fails(cfg, "many.zip", &zip_of(&spec));
    // A compressed wrapper larger than the member limit once decoded.
    let big = gzip(&vec![0u8; 4 << 20]);
    let cfg = Config {
        max_member_bytes: 1 << 20,
        ..Config::default()
    };
    fails(cfg, "big.gz", &big);
    // The per-file budget across nested wrappers.
    let cfg = Config {
        max_total_bytes: 1 << 20,
        ..Config::default()
    };
    fails(cfg, "big2.gz", &gzip(&big));
    // Nesting deeper than --max-depth.
    let deep = gzip(&gzip(&gzip(&payload_after(10))));
    let cfg = Config {
        max_depth: 1,
        ..Config::default()
    };
    fails(cfg, "deep.gz", &deep);
}
