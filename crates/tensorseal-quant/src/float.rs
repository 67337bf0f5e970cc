//! Exact decoding of the 8-, 6- and 4-bit float dtypes.
//!
//! Every code of every format maps to one f32 exactly (all of them are
//! representable), built here from the bit layout with integer arithmetic
//! only. NaN codes decode to the quiet NaN `0x7FC0_0000` with the code's sign
//! bit, as ml_dtypes does; torch agrees on every other code but gives NaNs
//! other payloads. Conversion to bf16 and f16 rounds the f32 to nearest, ties
//! to even (exact for every format but F8_E8M0 into f16, whose range exceeds
//! f16's: large codes become infinity, small ones round to zero or a
//! subnormal, as torch and ml_dtypes do).
//!
//! Sub-byte packing (see docs/quant.md): F4 holds element `2i` in the low
//! nibble of byte `i` and `2i+1` in the high nibble; F6 packs four elements in
//! three bytes as a little-endian 24-bit word, element `k` in bits
//! `6k..6k+6`.

use tensorseal_format::Dtype;

const QNAN: u32 = 0x7FC0_0000;

/// How a format spends its special codes.
#[derive(Clone, Copy)]
enum Special {
    /// IEEE-style: all-ones exponent is infinity (mantissa 0) or NaN.
    Ieee,
    /// "fn": only all-ones exponent and mantissa is NaN, no infinity.
    AllOnesNan,
    /// "fnuz": the negative-zero code is the only NaN, no infinity.
    NegZeroNan,
    /// No NaN, no infinity (F4, F6).
    Finite,
}

/// f32 bits of the value `(-1)^sign * 2^(e - bias) * 1.m` (normal) or
/// `2^(1 - bias) * 0.m` (subnormal, `e == 0`) with `mbits` mantissa bits.
const fn compose(sign: u32, e: u32, m: u32, mbits: u32, bias: i32) -> u32 {
    let s = sign << 31;
    if e == 0 && m == 0 {
        return s;
    }
    // Value = mant * 2^(exp) with mant an integer of mbits+1 bits.
    let (mut mant, mut exp) = if e == 0 {
        (m, 1 - bias - mbits as i32)
    } else {
        (m | (1 << mbits), e as i32 - bias - mbits as i32)
    };
    // Normalise so that the leading one sits at bit 23.
    let mut lead = 31 - mant.leading_zeros();
    while lead < 23 {
        mant <<= 1;
        exp -= 1;
        lead += 1;
    }
    // Unbiased exponent of the leading bit.
    let e2 = exp + 23;
    if e2 >= -126 {
        s | (((e2 + 127) as u32) << 23) | (mant & 0x7F_FFFF)
    } else {
        // f32 subnormal (only F8_E8M0's 2^-127 gets here).
        s | (mant >> ((-126 - e2) as u32))
    }
}

const fn minifloat(code: u32, ebits: u32, mbits: u32, bias: i32, special: Special) -> u32 {
    let width = 1 + ebits + mbits;
    let sign = (code >> (width - 1)) & 1;
    let e = (code >> mbits) & ((1 << ebits) - 1);
    let m = code & ((1 << mbits) - 1);
    let emax = (1 << ebits) - 1;
    match special {
        Special::Ieee if e == emax => {
            if m == 0 {
                (sign << 31) | 0x7F80_0000
            } else {
                (sign << 31) | QNAN
            }
        }
        Special::AllOnesNan if e == emax && m == (1 << mbits) - 1 => (sign << 31) | QNAN,
        Special::NegZeroNan if sign == 1 && e == 0 && m == 0 => (1 << 31) | QNAN,
        _ => compose(sign, e, m, mbits, bias),
    }
}

const fn e8m0(code: u32) -> u32 {
    match code {
        0xFF => QNAN,
        // 2^-127 is an f32 subnormal: the top mantissa bit.
        0 => 0x0040_0000,
        // 2^(code-127) has f32 biased exponent `code`.
        c => c << 23,
    }
}

const fn table<const N: usize>(ebits: u32, mbits: u32, bias: i32, special: Special) -> [u32; N] {
    let mut t = [0u32; N];
    let mut i = 0;
    while i < N {
        t[i] = minifloat(i as u32, ebits, mbits, bias, special);
        i += 1;
    }
    t
}

const fn e8m0_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = e8m0(i as u32);
        i += 1;
    }
    t
}

/// F8_E4M3 (OCP "E4M3FN"): bias 7, no infinity, `S.1111.111` is NaN.
pub static F8_E4M3: [u32; 256] = table(4, 3, 7, Special::AllOnesNan);
/// F8_E5M2: bias 15, IEEE infinities and NaNs.
pub static F8_E5M2: [u32; 256] = table(5, 2, 15, Special::Ieee);
/// F8_E4M3FNUZ: bias 8, `0x80` is the only NaN, no negative zero.
pub static F8_E4M3FNUZ: [u32; 256] = table(4, 3, 8, Special::NegZeroNan);
/// F8_E5M2FNUZ: bias 16, `0x80` is the only NaN, no negative zero.
pub static F8_E5M2FNUZ: [u32; 256] = table(5, 2, 16, Special::NegZeroNan);
/// F8_E8M0 (OCP MX scale): unsigned power of two `2^(code-127)`, `0xFF` NaN.
pub static F8_E8M0: [u32; 256] = e8m0_table();
/// F4 (E2M1): bias 1, finite only; values 0, 0.5, 1, 1.5, 2, 3, 4, 6.
pub static F4_E2M1: [u32; 16] = table(2, 1, 1, Special::Finite);
/// F6_E2M3: bias 1, finite only, max 7.5.
pub static F6_E2M3: [u32; 64] = table(2, 3, 1, Special::Finite);
/// F6_E3M2: bias 3, finite only, max 28.
pub static F6_E3M2: [u32; 64] = table(3, 2, 3, Special::Finite);

/// The f32 value of every 4-bit code as f32 numbers (F4 E2M1).
pub fn f4_values() -> [f32; 16] {
    F4_E2M1.map(f32::from_bits)
}

/// The code table (f32 bits, indexed by code) of a float dtype this crate
/// decodes, or `None` for any other dtype.
pub fn code_table(dtype: Dtype) -> Option<&'static [u32]> {
    Some(match dtype {
        Dtype::F8_E4M3 => &F8_E4M3,
        Dtype::F8_E5M2 => &F8_E5M2,
        Dtype::F8_E4M3FNUZ => &F8_E4M3FNUZ,
        Dtype::F8_E5M2FNUZ => &F8_E5M2FNUZ,
        Dtype::F8_E8M0 => &F8_E8M0,
        Dtype::F4 => &F4_E2M1,
        Dtype::F6_E2M3 => &F6_E2M3,
        Dtype::F6_E3M2 => &F6_E3M2,
        _ => return None,
    })
}

/// Whether [`decode`] handles `dtype`.
pub fn is_decodable(dtype: Dtype) -> bool {
    code_table(dtype).is_some()
}

/// The output element types of decoding and dequantization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutDtype {
    /// IEEE single precision.
    F32,
    /// bfloat16, rounded to nearest even from f32.
    BF16,
    /// IEEE half precision, rounded to nearest even from f32.
    F16,
}

impl OutDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            OutDtype::F32 => 4,
            OutDtype::BF16 | OutDtype::F16 => 2,
        }
    }

    /// The safetensors dtype.
    pub fn dtype(self) -> Dtype {
        match self {
            OutDtype::F32 => Dtype::F32,
            OutDtype::BF16 => Dtype::BF16,
            OutDtype::F16 => Dtype::F16,
        }
    }

    /// Parses `f32`, `bf16`, `f16` (also the safetensors spellings and
    /// torch's `float32`, `bfloat16`, `float16`), case-insensitively.
    pub fn parse(s: &str) -> Option<OutDtype> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "float" => Some(OutDtype::F32),
            "bf16" | "bfloat16" => Some(OutDtype::BF16),
            "f16" | "float16" | "half" => Some(OutDtype::F16),
            _ => None,
        }
    }

    /// Appends `v` in this dtype, little-endian, to `out`.
    #[inline]
    pub fn push(self, v: f32, out: &mut Vec<u8>) {
        match self {
            OutDtype::F32 => out.extend_from_slice(&v.to_le_bytes()),
            OutDtype::BF16 => out.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
            OutDtype::F16 => out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
        }
    }

    /// Writes `vals` in this dtype into `out`, which must hold exactly
    /// `vals.len() * self.size()` bytes.
    #[inline]
    pub fn store(self, vals: &[f32], out: &mut [u8]) {
        match self {
            OutDtype::F32 => {
                for (v, o) in vals.iter().zip(out.chunks_exact_mut(4)) {
                    o.copy_from_slice(&v.to_le_bytes());
                }
            }
            OutDtype::BF16 => {
                for (v, o) in vals.iter().zip(out.chunks_exact_mut(2)) {
                    o.copy_from_slice(&half::bf16::from_f32(*v).to_le_bytes());
                }
            }
            OutDtype::F16 => {
                for (v, o) in vals.iter().zip(out.chunks_exact_mut(2)) {
                    o.copy_from_slice(&half::f16::from_f32(*v).to_le_bytes());
                }
            }
        }
    }
}

impl std::fmt::Display for OutDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutDtype::F32 => "f32",
            OutDtype::BF16 => "bf16",
            OutDtype::F16 => "f16",
        })
    }
}

/// The codes of `count` elements of `dtype` packed in `data`: one byte each
/// for 8-bit dtypes, nibbles for F4, 6-bit fields for F6 (module docs).
/// Returns `None` when `data` holds fewer than `count` elements.
pub fn codes(dtype: Dtype, data: &[u8], count: usize) -> Option<Vec<u8>> {
    let bits = dtype.bits();
    if (data.len() as u128) * 8 < (count as u128) * bits as u128 {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    match bits {
        8 => out.extend_from_slice(data.get(..count)?),
        4 => {
            for i in 0..count {
                let b = *data.get(i / 2)?;
                out.push(if i.is_multiple_of(2) {
                    b & 0x0F
                } else {
                    b >> 4
                });
            }
        }
        6 => {
            for i in 0..count {
                let bit = i * 6;
                let byte = bit / 8;
                let lo = *data.get(byte)? as u16;
                let hi = data.get(byte + 1).copied().unwrap_or(0) as u16;
                out.push((((lo | (hi << 8)) >> (bit % 8)) & 0x3F) as u8);
            }
        }
        _ => return None,
    }
    Some(out)
}

/// Decodes `count` elements of float dtype `dtype` packed in `data` to f32.
/// `None` if the dtype is not one of the eight this crate decodes or `data`
/// is too short.
pub fn decode_f32(dtype: Dtype, data: &[u8], count: usize) -> Option<Vec<f32>> {
    let table = code_table(dtype)?;
    let codes = codes(dtype, data, count)?;
    codes
        .iter()
        .map(|&c| table.get(c as usize).map(|&b| f32::from_bits(b)))
        .collect()
}

/// Decodes to `out` (f32, bf16 or f16, little-endian bytes).
pub fn decode(dtype: Dtype, data: &[u8], count: usize, out: OutDtype) -> Option<Vec<u8>> {
    let vals = decode_f32(dtype, data, count)?;
    let mut bytes = vec![0u8; vals.len() * out.size()];
    out.store(&vals, &mut bytes);
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let f = |t: &[u32], c: usize| f32::from_bits(t[c]);
        assert_eq!(f(&F8_E4M3, 0x7E), 448.0);
        assert!(f(&F8_E4M3, 0x7F).is_nan());
        assert_eq!(f(&F8_E4M3, 0x01), 2f32.powi(-9));
        assert_eq!(f(&F8_E5M2, 0x7B), 57344.0);
        assert_eq!(f(&F8_E5M2, 0x7C), f32::INFINITY);
        assert_eq!(f(&F8_E4M3FNUZ, 0x7F), 240.0);
        assert_eq!(f(&F8_E5M2FNUZ, 0x01), 2f32.powi(-17));
        assert_eq!(f(&F8_E8M0, 0), 2f32.powi(-127));
        assert_eq!(f(&F8_E8M0, 254), 2f32.powi(127));
        assert_eq!(f4_values()[..8], [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]);
        assert_eq!(f(&F6_E2M3, 0x1F), 7.5);
        assert_eq!(f(&F6_E3M2, 0x1F), 28.0);
        assert_eq!(f(&F6_E3M2, 0x01), 0.0625);
    }

    #[test]
    fn packing() {
        assert_eq!(codes(Dtype::F4, &[0x21, 0x43], 4).unwrap(), [1, 2, 3, 4]);
        // Four 6-bit codes 1, 2, 3, 4 as a little-endian 24-bit word.
        let w: u32 = 1 | (2 << 6) | (3 << 12) | (4 << 18);
        let b = w.to_le_bytes();
        assert_eq!(codes(Dtype::F6_E2M3, &b[..3], 4).unwrap(), [1, 2, 3, 4]);
        assert!(codes(Dtype::F6_E2M3, &b[..2], 4).is_none());
        assert!(decode_f32(Dtype::F32, &[0; 4], 1).is_none());
    }
}
