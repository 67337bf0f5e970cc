//! Every code of every float dtype decodes bit for bit like ml_dtypes, and
//! like torch on every code torch defines except NaN payloads (torch's NaNs
//! differ from one conversion to the next; ours are ml_dtypes' quiet NaNs).
//! Fixtures: scripts/gen_quant_fixtures.py.

use serde_json::Value;
use tensorseal_format::Dtype;
use tensorseal_quant::float::{code_table, decode};
use tensorseal_quant::OutDtype;

fn fixture() -> Value {
    let text = include_str!("../../../tests/fixtures/quant/codes.json");
    serde_json::from_str(text).unwrap()
}

fn hexes(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| u32::from_str_radix(h.as_str().unwrap(), 16).unwrap())
        .collect()
}

/// All codes of `dtype`, packed the way the dtype is stored.
fn packed(dtype: Dtype, n: usize) -> Vec<u8> {
    match dtype.bits() {
        8 => (0..n as u32).map(|c| c as u8).collect(),
        4 => (0..n / 2)
            .map(|i| (2 * i as u8) | ((2 * i as u8 + 1) << 4))
            .collect(),
        6 => {
            let mut out = Vec::new();
            for chunk in (0..n as u32).collect::<Vec<_>>().chunks(4) {
                let w = chunk
                    .iter()
                    .enumerate()
                    .fold(0u32, |w, (k, &c)| w | (c << (6 * k)));
                out.extend_from_slice(&w.to_le_bytes()[..3]);
            }
            out
        }
        _ => unreachable!(),
    }
}

fn decoded(dtype: Dtype, n: usize, out: OutDtype) -> Vec<u32> {
    let bytes = decode(dtype, &packed(dtype, n), n, out).unwrap();
    match out {
        OutDtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        _ => bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect(),
    }
}

fn is_nan(bits: u32, out: OutDtype) -> bool {
    match out {
        OutDtype::F32 => f32::from_bits(bits).is_nan(),
        OutDtype::BF16 => (bits & 0x7F80) == 0x7F80 && (bits & 0x7F) != 0,
        OutDtype::F16 => (bits & 0x7C00) == 0x7C00 && (bits & 0x3FF) != 0,
    }
}

#[test]
fn every_code_matches_the_references() {
    let fx = fixture();
    let dtypes = fx["dtypes"].as_object().unwrap();
    assert_eq!(dtypes.len(), 8);
    let mut compared = 0;
    for (name, entry) in dtypes {
        let dtype: Dtype = name.parse().unwrap();
        let n = code_table(dtype).unwrap().len();
        for (key, out) in [
            ("f32", OutDtype::F32),
            ("bf16", OutDtype::BF16),
            ("f16", OutDtype::F16),
        ] {
            let ours = decoded(dtype, n, out);
            let ml = hexes(&entry["ml_dtypes"][key]);
            assert_eq!(ours.len(), ml.len(), "{name} {key}");
            for c in 0..n {
                assert_eq!(
                    ours[c], ml[c],
                    "{name} code {c:#x} to {key}: ours {:#x}, ml_dtypes {:#x}",
                    ours[c], ml[c]
                );
                compared += 1;
            }
            if let Some(t) = entry.get("torch") {
                let t = hexes(&t[key]);
                for c in 0..n {
                    if is_nan(t[c], out) {
                        assert!(
                            is_nan(ours[c], out),
                            "{name} code {c:#x} to {key}: torch NaN, ours {:#x}",
                            ours[c]
                        );
                    } else {
                        assert_eq!(
                            ours[c], t[c],
                            "{name} code {c:#x} to {key}: ours {:#x}, torch {:#x}",
                            ours[c], t[c]
                        );
                    }
                    compared += 1;
                }
            }
        }
    }
    // 5 float8 dtypes x 256 codes x 3 outputs x 2 references + (16 + 64 + 64) x 3.
    assert_eq!(compared, 5 * 256 * 3 * 2 + 144 * 3);
}
