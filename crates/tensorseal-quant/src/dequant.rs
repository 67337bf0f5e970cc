//! Dequantizing a checkpoint into a dense one.
//!
//! [`dequantize`] reads a single file, an index or a directory, recognises
//! the quantized layers ([`crate::scheme`]) and writes every tensor again:
//! each quantized layer as one dense `<prefix>.weight` in the chosen
//! [`OutDtype`], every other tensor byte for byte unchanged. Inputs are
//! memory-mapped; each output tensor is produced in chunks of at most
//! [`Options::chunk_bytes`] and written before the next chunk is made, so
//! memory stays bounded whatever the size of the checkpoint. The output is
//! split into shards of at most [`Options::max_shard_size`] bytes with an
//! index, like the Hugging Face layout.
//!
//! The formulas, per scheme (all in f32, then rounded once to the output
//! dtype; `v` is the decoded code, `s` the scale in f32):
//!
//! | scheme | dense weight |
//! |---|---|
//! | GPTQ v1 | `s[g,n] * (q - ((z + 1) & mask))` |
//! | GPTQ v2 | `s[g,n] * (q - z)` |
//! | AWQ GEMM | `s[g,n] * (q - z)` (nibbles 0,2,4,6,1,3,5,7) |
//! | block FP8 | `v * scale_inv[r/br, c/bc]` |
//! | FP8 / int8 scaled | `(v - zp) * s` (per tensor, channel, group or block) |
//! | ct pack-quantized | `(q - zp) * s`, q signed (stored + 2^(bits-1)) |
//! | ct nvfp4 | `v * (s / global_scale)` |
//! | ModelOpt NVFP4 | `v * (s * weight_scale_2)` |
//! | MXFP4 (ct, gpt-oss) | `v * 2^(e - 127)` |
//! | bnb nf4 / fp4 | `quant_map[q] * absmax[i / blocksize]` |
//! | bnb int8 | `(q * SCB[r]) * 7.874015718698502e-3` |

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::Value;
use tensorseal_format::index::{open_path, Checkpoint};
use tensorseal_format::shard::{index_json, plan_shards, shard_name};
use tensorseal_format::{
    Dtype, Durability, FileWriter, MmapFile, ReadTensors, TensorSpec, WriteOptions,
};

use crate::float::{code_table, OutDtype, F4_E2M1};
use crate::scheme::{
    grouping_of, recognize, Configs, Grouping, QuantLayer, QuantReport, Scheme, TensorMeta,
};
use crate::QuantError;

/// A checkpoint opened for reading: every shard mapped.
pub struct Source {
    files: Vec<MmapFile>,
    tensors: Vec<TensorMeta>,
    /// Tensor name -> (file, index in `tensors`).
    map: HashMap<String, (usize, usize)>,
    dir: Option<PathBuf>,
    metadata: Option<BTreeMap<String, String>>,
}

impl Source {
    /// Opens a `.safetensors` file, an index, or a directory holding either.
    pub fn open(path: impl AsRef<Path>) -> Result<Source, QuantError> {
        let path = path.as_ref();
        let (paths, dir) = match open_path(path)? {
            Checkpoint::Single(p) => {
                let dir = if path.is_dir() {
                    Some(path.to_owned())
                } else {
                    p.parent().map(Path::to_owned)
                };
                (vec![p], dir)
            }
            Checkpoint::Sharded(index) => {
                let dir = index.dir().to_owned();
                let files: Vec<PathBuf> = index
                    .validate()?
                    .into_iter()
                    .map(|s| s.reader.path().to_owned())
                    .collect();
                (files, Some(dir))
            }
        };
        let mut files = Vec::new();
        let mut tensors = Vec::new();
        let mut map = HashMap::new();
        let mut metadata = None;
        for p in paths {
            let f = MmapFile::open(&p)?;
            if metadata.is_none() {
                metadata = f.metadata().cloned();
            }
            for (name, info) in f.header().tensors() {
                map.insert(name.clone(), (files.len(), tensors.len()));
                tensors.push(TensorMeta {
                    name: name.clone(),
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                });
            }
            files.push(f);
        }
        Ok(Source {
            files,
            tensors,
            map,
            dir,
            metadata,
        })
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> &[TensorMeta] {
        &self.tensors
    }

    /// The directory the configs are read from.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The first file's `__metadata__`.
    pub fn metadata(&self) -> Option<&BTreeMap<String, String>> {
        self.metadata.as_ref()
    }

    /// A tensor's description and bytes.
    pub fn get(&self, name: &str) -> Option<(&TensorMeta, &[u8])> {
        let &(f, t) = self.map.get(name)?;
        let meta = self.tensors.get(t)?;
        let view = self.files.get(f)?.tensor(name).ok()?;
        Some((meta, view.data()))
    }

    /// Recognises the layers, reading the configs next to the checkpoint
    /// and completing what headers alone cannot say (bitsandbytes shapes).
    pub fn recognize(&self) -> Result<QuantReport, QuantError> {
        let configs = match &self.dir {
            Some(d) => Configs::load(d)?,
            None => Configs::default(),
        };
        Ok(self.recognize_with(&configs))
    }

    /// [`Source::recognize`] with given configs.
    pub fn recognize_with(&self, configs: &Configs) -> QuantReport {
        let mut report = recognize(&self.tensors, configs);
        for l in &mut report.layers {
            if matches!(l.scheme, Scheme::BnbNf4 | Scheme::BnbFp4) {
                let state = l
                    .tensors
                    .iter()
                    .find(|t| t.contains(".quant_state.bitsandbytes__"))
                    .and_then(|t| self.get(t))
                    .and_then(|(_, d)| serde_json::from_slice::<Value>(d).ok());
                if let Some(shape) = state
                    .as_ref()
                    .and_then(|s| s.get("shape"))
                    .and_then(Value::as_array)
                    .and_then(|a| {
                        a.iter()
                            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                            .collect::<Option<Vec<_>>>()
                    })
                {
                    l.shape = shape;
                }
                l.quant_state = state;
            }
            // compressed-tensors stores the dense shape as a tensor: the
            // packed shape alone cannot tell padding from columns.
            if l.scheme == Scheme::CtPackQuantized {
                let shape = l
                    .tensors
                    .iter()
                    .find(|t| t.ends_with(".weight_shape"))
                    .and_then(|t| self.get(t))
                    .and_then(|(t, d)| int_values(t, d))
                    .and_then(|v| {
                        v.iter()
                            .map(|&d| usize::try_from(d).ok())
                            .collect::<Option<Vec<_>>>()
                    });
                // Only a shape the packed words can hold (else dequantize
                // refuses the layer, and inspect keeps the packed shape's).
                let packed = l
                    .tensors
                    .iter()
                    .find(|t| t.ends_with(".weight_packed"))
                    .and_then(|t| self.get(t))
                    .map(|(t, _)| t.shape.clone());
                let bits = u128::from(l.bits);
                let fits = |s: &Vec<usize>| match (s.as_slice(), packed.as_deref()) {
                    ([r, c], Some([pr, pc])) => {
                        r == pr && (*c as u128 * bits).div_ceil(32) == *pc as u128
                    }
                    _ => false,
                };
                if let Some(shape) = shape.filter(fits) {
                    let scale = l
                        .tensors
                        .iter()
                        .find(|t| t.ends_with(".weight_scale"))
                        .and_then(|t| self.get(t));
                    if let Some((scale, _)) = scale {
                        l.grouping = grouping_of(shape[0], shape[1], scale);
                    }
                    l.shape = shape;
                }
            }
        }
        report
    }
}

/// The values of an I64 or I32 tensor (`None` for other dtypes).
fn int_values(t: &TensorMeta, d: &[u8]) -> Option<Vec<i64>> {
    match t.dtype {
        Dtype::I64 => Some(
            d.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        Dtype::I32 => Some(
            d.chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap_or([0; 4]))))
                .collect(),
        ),
        _ => None,
    }
}

/// Options of [`dequantize`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Output element type of dequantized tensors.
    pub dtype: OutDtype,
    /// Largest output shard in bytes (tensors are never split).
    pub max_shard_size: u64,
    /// Bytes of output produced per step (bounds memory).
    pub chunk_bytes: usize,
    /// Fsync the output before returning.
    pub durability: Durability,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dtype: OutDtype::BF16,
            max_shard_size: 5_000_000_000,
            // Measured (BENCHMARKS.md): with chunks of 2 MiB the buffer
            // stays in cache between filling and write(2); 8 and 64 MiB were
            // up to 3x slower, mostly in the kernel's copy.
            chunk_bytes: 2 << 20,
            durability: Durability::Sync,
        }
    }
}

/// What [`dequantize`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Layers dequantized.
    pub dequantized: usize,
    /// Tensors copied unchanged.
    pub copied: usize,
    /// Files written (shards, not counting the index).
    pub files: Vec<PathBuf>,
    /// Bytes of tensor data written.
    pub bytes: u64,
}

fn bad_shape(t: &TensorMeta, reason: impl Into<String>) -> QuantError {
    QuantError::BadShape {
        tensor: t.name.clone(),
        shape: t.shape.clone(),
        reason: reason.into(),
    }
}

fn bad_dtype(t: &TensorMeta, scheme: Scheme, expected: &str) -> QuantError {
    QuantError::BadDtype {
        tensor: t.name.clone(),
        scheme: scheme.name().to_owned(),
        found: t.dtype,
        expected: expected.to_owned(),
    }
}

/// A tensor of a layer, decoded to f32 (scales, zeros: small tensors).
fn floats(t: &TensorMeta, data: &[u8], scheme: Scheme) -> Result<Vec<f32>, QuantError> {
    let n = usize::try_from(t.elements()).map_err(|_| bad_shape(t, "too many elements"))?;
    let out: Option<Vec<f32>> = match t.dtype {
        Dtype::F32 => Some(
            data.chunks_exact(4)
                .take(n)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        Dtype::F16 => Some(
            data.chunks_exact(2)
                .take(n)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        ),
        Dtype::BF16 => Some(
            data.chunks_exact(2)
                .take(n)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        ),
        Dtype::I8 => Some(data.iter().take(n).map(|&b| b as i8 as f32).collect()),
        d => crate::float::decode_f32(d, data, n),
    };
    match out {
        Some(v) if v.len() == n => Ok(v),
        _ => Err(bad_dtype(t, scheme, "F32, F16, BF16, I8 or an 8-bit float")),
    }
}

fn i32s(t: &TensorMeta, data: &[u8], scheme: Scheme) -> Result<Vec<i32>, QuantError> {
    if t.dtype != Dtype::I32 && t.dtype != Dtype::U32 {
        return Err(bad_dtype(t, scheme, "I32"));
    }
    Ok(data
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Builds dense rows of one quantized layer: `rows(r0, r1, out)` fills the
/// rows `r0..r1` of the `[rows, cols]` dense matrix.
trait Rows: Sync {
    fn rows(&self, r0: usize, r1: usize, out: &mut [f32]);

    /// Fills rows `r0..r1` in `dt` (little-endian bytes, `out` holds exactly
    /// those rows). The default goes through one row of f32 at a time;
    /// schemes with a faster kernel override it, bit for bit the same.
    fn fill(&self, r0: usize, r1: usize, dt: OutDtype, out: &mut [u8]) {
        fill_via_f32(self, r0, r1, dt, out);
    }
}

fn fill_via_f32<R: Rows + ?Sized>(b: &R, r0: usize, r1: usize, dt: OutDtype, out: &mut [u8]) {
    let n = r1.saturating_sub(r0);
    if n == 0 || out.is_empty() {
        return;
    }
    let row_bytes = out.len() / n;
    // One row of f32 at a time: the scratch stays in cache.
    let mut vals = vec![0f32; row_bytes / dt.size()];
    for (i, orow) in out.chunks_exact_mut(row_bytes).enumerate() {
        b.rows(r0 + i, r0 + i + 1, &mut vals);
        dt.store(&vals, orow);
    }
}

/// `with_encoder!(dt, obj, method, args..)` calls `obj.method::<W>(args.., enc)` with the encoder of `$dt`: a
/// function from f32 to the `W` little-endian bytes of one output element
/// (rounding as [`OutDtype::store`] does).
macro_rules! with_encoder {
    ($dt:expr, $obj:expr, $method:ident, $($arg:expr),*) => {
        match $dt {
            OutDtype::F32 => $obj.$method::<4>($($arg,)* |v: f32| v.to_le_bytes()),
            OutDtype::BF16 => {
                $obj.$method::<2>($($arg,)* |v: f32| half::bf16::from_f32(v).to_le_bytes())
            }
            OutDtype::F16 => {
                $obj.$method::<2>($($arg,)* |v: f32| half::f16::from_f32(v).to_le_bytes())
            }
        }
    };
}

/// Unpacks `bits`-bit field `i` of a little-endian bit stream of u32 words.
#[inline]
fn field(words: &[u32], i: usize, bits: u32) -> u32 {
    strided_field(bits, i, |w| words.get(w).copied().unwrap_or(0))
}

/// The little-endian u32 word `i` of `data` (0 past the end).
#[inline]
fn word(data: &[u8], i: usize) -> u32 {
    i.checked_mul(4)
        .and_then(|o| data.get(o..o.checked_add(4)?))
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes)
}

/// Field `k` of a little-endian stream of `bits`-bit fields laid over u32
/// words that need not be adjacent in memory (`get(i)` is word `i`; GPTQ's
/// `qweight` holds a channel's words one row apart): how GPTQ packs every
/// width.
/// For widths dividing 32 this is field `k % (32 / bits)` of word
/// `k / (32 / bits)`; 3-bit fields 10 and 21 of every 32 straddle two words.
#[inline]
fn strided_field(bits: u32, k: usize, get: impl Fn(usize) -> u32) -> u32 {
    let bit = k.saturating_mul(bits as usize);
    let (w, shift) = (bit / 32, (bit % 32) as u32);
    let mut v = get(w) >> shift;
    if shift + bits > 32 {
        v |= get(w + 1) << (32 - shift);
    }
    v & ((1u32 << bits) - 1)
}

struct Gptq<'a> {
    /// `qweight`: `[in_f * bits / 32, out_f]` little-endian words.
    q: &'a [u8],
    zeros: Vec<u32>,
    scales: Vec<f32>,
    gidx: Vec<usize>,
    /// `Some(gs)` when `gidx[k] == k / gs` with `gs` a multiple of the
    /// values per word (no act-order): groups are runs of whole words.
    group_size: Option<usize>,
    bits: u32,
    v1: bool,
    out_f: usize,
    in_f: usize,
    zwords: usize,
}

impl Gptq<'_> {
    fn groups(&self) -> usize {
        self.scales.len() / self.out_f.max(1)
    }

    /// Scale and zero (as f32) of group `g` of output channel `n`.
    #[inline]
    fn scale_zero(&self, g: usize, n: usize) -> (f32, f32) {
        let mask = (1u32 << self.bits) - 1;
        let row = g * self.zwords;
        let mut z = strided_field(self.bits, n, |i| {
            if i < self.zwords {
                self.zeros.get(row + i).copied().unwrap_or(0)
            } else {
                0
            }
        });
        if self.v1 {
            z = (z + 1) & mask;
        }
        let s = self.scales.get(g * self.out_f + n).copied().unwrap_or(0.0);
        (s, z as f32)
    }

    /// 2- and 4-bit kernel. `qweight` is column-major for the output, so
    /// a tile of `TILE` output channels (one cache line of each word row)
    /// is first gathered into a contiguous scratch, one line read per word
    /// row, instead of one strided (cache-aliasing) word per value. Then
    /// per channel, a 16-entry table per group of the encoded
    /// `s * (q - z)` for every code `q`, and one table look-up per value.
    fn fill_w<const W: usize>(
        &self,
        r0: usize,
        r1: usize,
        out: &mut [u8],
        enc: impl Fn(f32) -> [u8; W],
    ) {
        // The width as a constant: shifts and the values per word are then
        // known to the compiler, which unrolls the per-word loop.
        if self.bits == 2 {
            self.fill_wb::<W, 2>(r0, r1, out, enc)
        } else {
            self.fill_wb::<W, 4>(r0, r1, out, enc)
        }
    }

    fn fill_wb<const W: usize, const BITS: u32>(
        &self,
        r0: usize,
        r1: usize,
        out: &mut [u8],
        enc: impl Fn(f32) -> [u8; W],
    ) {
        const TILE: usize = 16;
        let bits = BITS;
        let mask = (1u32 << bits) - 1;
        let pack = (32 / bits) as usize;
        let kpn = self.in_f / pack;
        let mut luts = vec![[[0u8; W]; 16]; self.groups()];
        let mut tile = vec![0u32; TILE * kpn];
        let row_bytes = self.in_f * W;
        let mut orows = out.chunks_exact_mut(row_bytes);
        let mut n0 = r0;
        while n0 < r1 {
            let n1 = ((n0 / TILE + 1) * TILE).min(r1);
            for kp in 0..kpn {
                let base = (kp * self.out_f + n0) * 4;
                let src = self.q.get(base..base + (n1 - n0) * 4).unwrap_or_default();
                for (t, c) in src.chunks_exact(4).enumerate() {
                    if let Some(dst) = tile.get_mut(t * kpn + kp) {
                        *dst = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    }
                }
            }
            for (n, words) in (n0..n1).zip(tile.chunks_exact(kpn.max(1))) {
                let Some(orow) = orows.next() else { return };
                for (g, lut) in luts.iter_mut().enumerate() {
                    let (s, z) = self.scale_zero(g, n);
                    for (q, e) in lut.iter_mut().enumerate().take(mask as usize + 1) {
                        *e = enc(s * (q as f32 - z));
                    }
                }
                match self.group_size {
                    Some(gs) => {
                        // Whole words per group: the table is fixed per run.
                        let runs = orow.chunks_mut(gs * W).zip(words.chunks(gs / pack));
                        for ((run, ws), lut) in runs.zip(&luts) {
                            for (vals, &w) in run.chunks_exact_mut(pack * W).zip(ws) {
                                for (j, o) in vals.chunks_exact_mut(W).enumerate() {
                                    let code = (w >> (bits * j as u32)) & mask & 15;
                                    o.copy_from_slice(&lut[code as usize]);
                                }
                            }
                        }
                    }
                    None => {
                        let vals = orow.chunks_exact_mut(pack * W).zip(words);
                        for (kp, (vals, &w)) in vals.enumerate() {
                            for (j, o) in vals.chunks_exact_mut(W).enumerate() {
                                let g = self.gidx.get(kp * pack + j).copied().unwrap_or(0);
                                let code = (w >> (bits * j as u32)) & mask & 15;
                                if let Some(lut) = luts.get(g) {
                                    o.copy_from_slice(&lut[code as usize]);
                                }
                            }
                        }
                    }
                }
            }
            n0 = n1;
        }
    }
}

impl Rows for Gptq<'_> {
    fn rows(&self, r0: usize, r1: usize, out: &mut [f32]) {
        let mut sz = vec![(0f32, 0f32); self.groups()];
        for n in r0..r1 {
            // This output channel's scale and zero of every group.
            for (g, cell) in sz.iter_mut().enumerate() {
                *cell = self.scale_zero(g, n);
            }
            let row = &mut out[(n - r0) * self.in_f..(n - r0 + 1) * self.in_f];
            for (k, o) in row.iter_mut().enumerate() {
                let (s, z) = sz[self.gidx[k]];
                let q = strided_field(self.bits, k, |i| word(self.q, i * self.out_f + n));
                *o = s * (q as f32 - z);
            }
        }
    }

    fn fill(&self, r0: usize, r1: usize, dt: OutDtype, out: &mut [u8]) {
        // The table kernel takes whole 2- or 4-bit fields per word; 3-bit
        // fields straddle words, and 8-bit codes would need 256-entry
        // tables per group.
        if !matches!(self.bits, 2 | 4) {
            return fill_via_f32(self, r0, r1, dt, out);
        }
        with_encoder!(dt, self, fill_w, r0, r1, out)
    }
}

const AWQ_ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

struct Awq {
    q: Vec<u32>,
    zeros: Vec<u32>,
    scales: Vec<f32>,
    group: usize,
    out_f: usize,
    in_f: usize,
}

impl Rows for Awq {
    fn rows(&self, r0: usize, r1: usize, out: &mut [f32]) {
        let words = self.out_f / 8;
        for n in r0..r1 {
            // Channel n sits in word n/8 at nibble position p where ORDER[p] == n%8.
            let p = AWQ_ORDER.iter().position(|&o| o == n % 8).unwrap_or(0) as u32;
            let row = &mut out[(n - r0) * self.in_f..(n - r0 + 1) * self.in_f];
            for (k, o) in row.iter_mut().enumerate() {
                let g = k / self.group;
                let q = (self.q[k * words + n / 8] >> (4 * p)) & 0xF;
                let z = (self.zeros[g * words + n / 8] >> (4 * p)) & 0xF;
                *o = self.scales[g * self.out_f + n] * (q as f32 - z as f32);
            }
        }
    }
}

/// `v * s` or `(v - zp) * s` over a `[rows, cols]` matrix of codes with
/// scales indexed by `(r / br, c / bc)` in a `[sr, sc]` grid.
struct Scaled<'a> {
    codes: Codes<'a>,
    scales: Vec<f32>,
    zeros: Option<Vec<f32>>,
    /// Divide the scale by this before use (ct nvfp4 global scale).
    div: Option<f32>,
    /// Multiply the scale by this before use (ModelOpt weight_scale_2).
    mul: Option<f32>,
    cols: usize,
    br: usize,
    bc: usize,
    sc: usize,
}

/// Where a scaled scheme's values come from.
enum Codes<'a> {
    /// One byte per value through a 256-entry table (FP8).
    Table(&'a [u8], &'static [u32]),
    /// Signed bytes (int8).
    I8(&'a [u8]),
    /// Two F4 codes per byte, low nibble first, `cols / 2` bytes per row.
    F4(&'a [u8]),
    /// Packed ints in a little-endian u32 bit stream per row (ct pack).
    Packed(Vec<u32>, usize, u32),
}

impl Scaled<'_> {
    /// The effective scale (and zero point) of scale cell `i`.
    #[inline]
    fn cell(&self, i: usize) -> (f32, f32) {
        let mut s = self.scales[i];
        if let Some(d) = self.div {
            s /= d;
        }
        if let Some(m) = self.mul {
            s *= m;
        }
        (s, self.zeros.as_ref().map_or(0.0, |z| z[i]))
    }
}

impl Scaled<'_> {
    /// Whether a 256-entry table per scale cell pays off: byte codes, and
    /// cells of at least 64 columns and 1024 values (block FP8: 128x128,
    /// per-channel and per-tensor scales).
    fn table_kernel(&self) -> bool {
        matches!(self.codes, Codes::Table(..) | Codes::I8(_))
            && self.bc >= 64
            && self.br.saturating_mul(self.bc) >= 1024
    }

    /// Byte-code kernel: for each row of scale cells, every code's encoded
    /// `(v - z) * s` per cell, then one table look-up per value.
    fn fill_w<const W: usize>(
        &self,
        r0: usize,
        r1: usize,
        out: &mut [u8],
        enc: impl Fn(f32) -> [u8; W],
    ) {
        let (data, table) = match &self.codes {
            Codes::Table(d, t) => (*d, Some(*t)),
            Codes::I8(d) => (*d, None),
            _ => return,
        };
        let value = |c: usize| -> f32 {
            match table {
                Some(t) => f32::from_bits(t.get(c).copied().unwrap_or(0)),
                None => c as u8 as i8 as f32,
            }
        };
        let cols = self.cols;
        let mut luts = vec![[[0u8; W]; 256]; self.sc];
        let mut built = None;
        for (r, orow) in (r0..r1).zip(out.chunks_exact_mut(cols * W)) {
            let sr = r / self.br;
            if built != Some(sr) {
                for (b, lut) in luts.iter_mut().enumerate() {
                    let (s, z) = self.cell(sr * self.sc + b);
                    for (c, e) in lut.iter_mut().enumerate() {
                        *e = enc((value(c) - z) * s);
                    }
                }
                built = Some(sr);
            }
            let src = data.get(r * cols..(r + 1) * cols).unwrap_or_default();
            let runs = orow.chunks_mut(self.bc * W).zip(src.chunks(self.bc));
            for ((run, codes), lut) in runs.zip(&luts) {
                for (o, &c) in run.chunks_exact_mut(W).zip(codes) {
                    o.copy_from_slice(&lut[c as usize]);
                }
            }
        }
    }
}

impl Rows for Scaled<'_> {
    fn fill(&self, r0: usize, r1: usize, dt: OutDtype, out: &mut [u8]) {
        if !self.table_kernel() {
            return fill_via_f32(self, r0, r1, dt, out);
        }
        with_encoder!(dt, self, fill_w, r0, r1, out)
    }

    fn rows(&self, r0: usize, r1: usize, out: &mut [f32]) {
        let cols = self.cols;
        for r in r0..r1 {
            let row = &mut out[(r - r0) * cols..(r - r0 + 1) * cols];
            let srow = (r / self.br) * self.sc;
            // One scale cell per run of `bc` columns: no division per value.
            for (b, run) in row.chunks_mut(self.bc).enumerate() {
                let (s, z) = self.cell(srow + b);
                let c0 = b * self.bc;
                match &self.codes {
                    Codes::Table(d, t) => {
                        let src = &d[r * cols + c0..r * cols + c0 + run.len()];
                        for (o, &code) in run.iter_mut().zip(src) {
                            *o = (f32::from_bits(t[code as usize]) - z) * s;
                        }
                    }
                    Codes::I8(d) => {
                        let src = &d[r * cols + c0..r * cols + c0 + run.len()];
                        for (o, &q) in run.iter_mut().zip(src) {
                            *o = (q as i8 as f32 - z) * s;
                        }
                    }
                    Codes::F4(d) => {
                        let base = r * (cols / 2);
                        for (j, o) in run.iter_mut().enumerate() {
                            let c = c0 + j;
                            let byte = d[base + c / 2];
                            let code = if c.is_multiple_of(2) {
                                byte & 0xF
                            } else {
                                byte >> 4
                            };
                            *o = (f32::from_bits(F4_E2M1[code as usize]) - z) * s;
                        }
                    }
                    Codes::Packed(words, per_row, bits) => {
                        let w = &words[r * per_row..(r + 1) * per_row];
                        let off = 1i32 << (bits - 1);
                        for (j, o) in run.iter_mut().enumerate() {
                            let q = (field(w, c0 + j, *bits) as i32 - off) as f32;
                            *o = (q - z) * s;
                        }
                    }
                }
            }
        }
    }
}

/// MXFP4 (ct and gpt-oss): F4 codes, low nibble first, one E8M0 exponent
/// per 32 values.
struct Mx<'a> {
    codes: &'a [u8],
    exps: &'a [u8],
    cols: usize,
}

impl Rows for Mx<'_> {
    fn rows(&self, r0: usize, r1: usize, out: &mut [f32]) {
        let cols = self.cols;
        let groups = cols / 32;
        for r in r0..r1 {
            let row = &mut out[(r - r0) * cols..(r - r0 + 1) * cols];
            for (c, o) in row.iter_mut().enumerate() {
                let b = self.codes[(r * cols + c) / 2];
                let code = if c.is_multiple_of(2) { b & 0xF } else { b >> 4 };
                let e = self.exps[r * groups + c / 32];
                let scale = f32::from_bits(crate::float::F8_E8M0[e as usize]);
                *o = f32::from_bits(F4_E2M1[code as usize]) * scale;
            }
        }
    }
}

/// bitsandbytes 4-bit: a flat run of codes (high nibble first) through
/// `quant_map`, times one absmax per `block` values.
struct Bnb4<'a> {
    codes: &'a [u8],
    map: Vec<f32>,
    absmax: Vec<f32>,
    block: usize,
    cols: usize,
}

impl Rows for Bnb4<'_> {
    fn rows(&self, r0: usize, r1: usize, out: &mut [f32]) {
        let base = r0 * self.cols;
        let _ = r1;
        for (j, o) in out.iter_mut().enumerate() {
            let i = base + j;
            let b = self.codes[i / 2];
            let code = if i.is_multiple_of(2) { b >> 4 } else { b & 0xF };
            *o = self.map[code as usize] * self.absmax[i / self.block];
        }
    }
}

struct BnbInt8<'a> {
    q: &'a [u8],
    scb: Vec<f32>,
    cols: usize,
}

impl Rows for BnbInt8<'_> {
    fn rows(&self, r0: usize, r1: usize, out: &mut [f32]) {
        for r in r0..r1 {
            let s = self.scb[r];
            for c in 0..self.cols {
                out[(r - r0) * self.cols + c] =
                    (self.q[r * self.cols + c] as i8 as f32 * s) * 7.874_016e-3;
            }
        }
    }
}

fn need<'s>(
    src: &'s Source,
    l: &QuantLayer,
    suffix: &str,
) -> Result<(&'s TensorMeta, &'s [u8]), QuantError> {
    let name = format!("{}{}", l.prefix, suffix);
    src.get(&name).ok_or_else(|| QuantError::MissingTensor {
        layer: l.prefix.clone(),
        scheme: l.scheme.name().to_owned(),
        tensor: name,
    })
}

fn opt<'s>(src: &'s Source, l: &QuantLayer, suffix: &str) -> Option<(&'s TensorMeta, &'s [u8])> {
    src.get(&format!("{}{}", l.prefix, suffix))
}

fn check_len(t: &TensorMeta, have: usize, want: usize, what: &str) -> Result<(), QuantError> {
    if have != want {
        return Err(bad_shape(
            t,
            format!("{what}: expected {want} elements, found {have}"),
        ));
    }
    Ok(())
}

/// Scale grid `(br, bc, sr, sc)` for a `[rows, cols]` weight and a scale
/// tensor of `n` elements and shape `shape`.
fn grid(
    t: &TensorMeta,
    rows: usize,
    cols: usize,
    n: usize,
) -> Result<(usize, usize, usize), QuantError> {
    // returns (br, bc, sc)
    if n == 1 {
        return Ok((rows.max(1), cols.max(1), 1));
    }
    let (sr, sc) = match t.shape.as_slice() {
        [r] => (*r, 1),
        [r, c] => (*r, *c),
        _ => return Err(bad_shape(t, "a scale must have 0, 1 or 2 dimensions")),
    };
    if sr == 0 || sc == 0 {
        return Err(bad_shape(t, "empty scale"));
    }
    let br = rows.div_ceil(sr).max(1);
    let bc = cols.div_ceil(sc).max(1);
    if rows.div_ceil(br) != sr || cols.div_ceil(bc) != sc {
        return Err(bad_shape(
            t,
            format!("does not tile a [{rows}, {cols}] weight"),
        ));
    }
    Ok((br, bc, sc))
}

fn dims2(t: &TensorMeta) -> Result<(usize, usize), QuantError> {
    match t.shape.as_slice() {
        [r, c] => Ok((*r, *c)),
        _ => Err(bad_shape(t, "expected 2 dimensions")),
    }
}

/// The dense-row builder of one layer, checked against the tensors' sizes.
fn builder<'s>(
    src: &'s Source,
    l: &QuantLayer,
) -> Result<(Box<dyn Rows + 's>, usize, usize), QuantError> {
    let s = l.scheme;
    match s {
        Scheme::GptqV1 | Scheme::GptqV2 => {
            let (qt, qd) = need(src, l, ".qweight")?;
            let (zt, zd) = need(src, l, ".qzeros")?;
            let (st, sd) = need(src, l, ".scales")?;
            let bits = l.bits;
            if !matches!(bits, 2 | 3 | 4 | 8) {
                return Err(QuantError::Unsupported {
                    layer: l.prefix.clone(),
                    scheme: format!("{s} with {bits} bits"),
                });
            }
            let (qr, out_f) = dims2(qt)?;
            // Rows of 32-bit words hold 32 / bits values each (3-bit: 32
            // values in every 3 rows).
            if !(qr as u128 * 32).is_multiple_of(bits as u128) {
                return Err(bad_shape(
                    qt,
                    format!("{qr} rows of words do not hold whole {bits}-bit values"),
                ));
            }
            let in_f = qr.saturating_mul(32) / bits as usize;
            let (groups, so) = dims2(st)?;
            if so != out_f || groups == 0 {
                return Err(bad_shape(st, format!("expected [groups, {out_f}]")));
            }
            let zwords = out_f.saturating_mul(bits as usize).div_ceil(32);
            check_len(
                zt,
                zt.elements() as usize,
                groups.saturating_mul(zwords),
                "qzeros",
            )?;
            let scales = floats(st, sd, s)?;
            let gidx: Vec<usize> = match opt(src, l, ".g_idx") {
                Some((gt, gd)) => {
                    let v = i32s(gt, gd, s)?;
                    check_len(gt, v.len(), in_f, "g_idx")?;
                    v.into_iter()
                        .map(|g| usize::try_from(g).ok().filter(|&g| g < groups))
                        .collect::<Option<_>>()
                        .ok_or_else(|| {
                            bad_shape(gt, format!("a group index is outside 0..{groups}"))
                        })?
                }
                None => {
                    let gs = in_f.div_ceil(groups).max(1);
                    (0..in_f).map(|k| k / gs).collect()
                }
            };
            if qt.dtype != Dtype::I32 && qt.dtype != Dtype::U32 {
                return Err(bad_dtype(qt, s, "I32"));
            }
            if (qd.len() as u128) < qr as u128 * out_f as u128 * 4 {
                return Err(bad_shape(qt, format!("{} bytes are too few", qd.len())));
            }
            let zeros: Vec<u32> = i32s(zt, zd, s)?.into_iter().map(|v| v as u32).collect();
            let gs = in_f.div_ceil(groups).max(1);
            let pack = (32 / bits) as usize;
            let group_size = (gs % pack == 0 && gidx.iter().enumerate().all(|(k, &g)| g == k / gs))
                .then_some(gs);
            Ok((
                Box::new(Gptq {
                    q: qd,
                    zeros,
                    scales,
                    gidx,
                    group_size,
                    bits,
                    v1: s == Scheme::GptqV1,
                    out_f,
                    in_f,
                    zwords,
                }),
                out_f,
                in_f,
            ))
        }
        Scheme::AwqGemm => {
            let (qt, qd) = need(src, l, ".qweight")?;
            let (zt, zd) = need(src, l, ".qzeros")?;
            let (st, sd) = need(src, l, ".scales")?;
            if l.bits != 4 {
                return Err(QuantError::Unsupported {
                    layer: l.prefix.clone(),
                    scheme: format!("{s} with {} bits", l.bits),
                });
            }
            let (in_f, words) = dims2(qt)?;
            let out_f = words.saturating_mul(8);
            let (groups, so) = dims2(st)?;
            if so != out_f || groups == 0 || in_f % groups != 0 {
                return Err(bad_shape(
                    st,
                    format!("expected [groups dividing {in_f}, {out_f}]"),
                ));
            }
            check_len(
                zt,
                zt.elements() as usize,
                groups.saturating_mul(words),
                "qzeros",
            )?;
            let q = i32s(qt, qd, s)?.into_iter().map(|v| v as u32).collect();
            let zeros = i32s(zt, zd, s)?.into_iter().map(|v| v as u32).collect();
            let scales = floats(st, sd, s)?;
            Ok((
                Box::new(Awq {
                    q,
                    zeros,
                    scales,
                    group: in_f / groups,
                    out_f,
                    in_f,
                }),
                out_f,
                in_f,
            ))
        }
        Scheme::Fp8Block | Scheme::Fp8Scaled | Scheme::IntScaled => {
            let (wt, wd) = need(src, l, ".weight")?;
            let scale_suffix = if s == Scheme::Fp8Block {
                ".weight_scale_inv"
            } else {
                ".weight_scale"
            };
            let (st, sd) = need(src, l, scale_suffix)?;
            let (rows, cols) = dims2(wt)?;
            let codes = match (s, code_table(wt.dtype)) {
                (Scheme::IntScaled, _) if wt.dtype == Dtype::I8 => Codes::I8(wd),
                (Scheme::Fp8Block | Scheme::Fp8Scaled, Some(t)) if wt.dtype.bits() == 8 => {
                    Codes::Table(wd, t)
                }
                _ => return Err(bad_dtype(wt, s, "an 8-bit float (or I8)")),
            };
            let scales = floats(st, sd, s)?;
            let (br, bc, sc) = match (s, &l.grouping, st.shape.as_slice()) {
                // Block sizes from the config: the grid alone is ambiguous
                // when blocks do not divide the weight.
                (Scheme::Fp8Block, Grouping::Block(br, bc), [sr, sc])
                    if *br > 0
                        && *bc > 0
                        && rows.div_ceil(*br) == *sr
                        && cols.div_ceil(*bc) == *sc
                        && scales.len() == sr * sc =>
                {
                    (*br, *bc, *sc)
                }
                (Scheme::Fp8Block, g, _) => {
                    return Err(bad_shape(
                        st,
                        format!("does not tile a [{rows}, {cols}] weight in {g} blocks"),
                    ))
                }
                _ => grid(st, rows, cols, scales.len())?,
            };
            let zeros = match opt(src, l, ".weight_zero_point") {
                Some((zt, zd)) => {
                    let z = floats(zt, zd, s)?;
                    check_len(zt, z.len(), scales.len(), "zero point")?;
                    Some(z)
                }
                None => None,
            };
            Ok((
                Box::new(Scaled {
                    codes,
                    scales,
                    zeros,
                    div: None,
                    mul: None,
                    cols,
                    br,
                    bc,
                    sc,
                }),
                rows,
                cols,
            ))
        }
        Scheme::CtPackQuantized => {
            let (pt, pd) = need(src, l, ".weight_packed")?;
            let (st, sd) = need(src, l, ".weight_scale")?;
            let bits = l.bits;
            if !(1..=8).contains(&bits) {
                return Err(QuantError::Unsupported {
                    layer: l.prefix.clone(),
                    scheme: format!("{s} with {bits} bits"),
                });
            }
            let (rows, per_row) = dims2(pt)?;
            let cols = match opt(src, l, ".weight_shape") {
                Some((t, d)) => {
                    let Some(v) = int_values(t, d) else {
                        return Err(bad_dtype(t, s, "I64 or I32"));
                    };
                    match v.as_slice() {
                        [r, c] if usize::try_from(*r) == Ok(rows) && *c >= 0 => *c as usize,
                        _ => {
                            return Err(bad_shape(
                                t,
                                format!("weight_shape {v:?} does not match {rows} rows"),
                            ))
                        }
                    }
                }
                None => per_row.saturating_mul(32) / bits as usize,
            };
            // Each row packs exactly its `cols` values (padded to a word).
            if ((cols as u128) * bits as u128).div_ceil(32) != per_row as u128 {
                return Err(bad_shape(
                    pt,
                    format!("{per_row} words per row do not pack {cols} values of {bits} bits"),
                ));
            }
            let words: Vec<u32> = i32s(pt, pd, s)?.into_iter().map(|v| v as u32).collect();
            let scales = floats(st, sd, s)?;
            let (br, bc, sc) = grid(st, rows, cols, scales.len())?;
            let zeros = match opt(src, l, ".weight_zero_point") {
                Some((zt, zd)) if zt.dtype == Dtype::I32 => {
                    // Packed along dim 0: [ceil(sr*bits/32), sc].
                    let zw: Vec<u32> = i32s(zt, zd, s)?.into_iter().map(|v| v as u32).collect();
                    let (zr, zc) = dims2(zt)?;
                    let sr = scales.len() / sc.max(1);
                    if zc != sc || (zr as u128) * 32 < (sr as u128) * bits as u128 {
                        return Err(bad_shape(
                            zt,
                            format!(
                                "expected a zero point packed to [{sr} rows of {bits} bits, {sc}]"
                            ),
                        ));
                    }
                    let off = 1i32 << (bits - 1);
                    let mut z = vec![0f32; sr * sc];
                    for c in 0..sc {
                        let column: Vec<u32> = (0..zr).map(|r| zw[r * zc + c]).collect();
                        for r in 0..sr {
                            z[r * sc + c] = (field(&column, r, bits) as i32 - off) as f32;
                        }
                    }
                    Some(z)
                }
                Some((zt, zd)) => {
                    let z = floats(zt, zd, s)?;
                    check_len(zt, z.len(), scales.len(), "zero point")?;
                    Some(z)
                }
                None => None,
            };
            Ok((
                Box::new(Scaled {
                    codes: Codes::Packed(words, per_row, bits),
                    scales,
                    zeros,
                    div: None,
                    mul: None,
                    cols,
                    br,
                    bc,
                    sc,
                }),
                rows,
                cols,
            ))
        }
        Scheme::CtNvfp4 | Scheme::ModeloptNvfp4 | Scheme::CtMxfp4 => {
            let wsuf = if s == Scheme::ModeloptNvfp4 {
                ".weight"
            } else {
                ".weight_packed"
            };
            let (wt, wd) = need(src, l, wsuf)?;
            let (st, sd) = need(src, l, ".weight_scale")?;
            if wt.dtype != Dtype::U8 {
                return Err(bad_dtype(wt, s, "U8 (two F4 codes per byte)"));
            }
            let (rows, half) = dims2(wt)?;
            let cols = half.saturating_mul(2);
            if s == Scheme::CtMxfp4 {
                if cols % 32 != 0
                    || st.elements() as usize != rows.saturating_mul(cols / 32)
                    || st.dtype.bits() != 8
                {
                    return Err(bad_shape(
                        st,
                        format!("expected an 8-bit [{rows}, {}] exponent tensor", cols / 32),
                    ));
                }
                return Ok((
                    Box::new(Mx {
                        codes: wd,
                        exps: sd,
                        cols,
                    }),
                    rows,
                    cols,
                ));
            }
            let scales = floats(st, sd, s)?;
            let (br, bc, sc) = grid(st, rows, cols, scales.len())?;
            let (div, mul) = if s == Scheme::CtNvfp4 {
                let (gt, gd) = need(src, l, ".weight_global_scale")?;
                let g = floats(gt, gd, s)?;
                check_len(gt, g.len(), 1, "global scale")?;
                (Some(g[0]), None)
            } else {
                let (gt, gd) = need(src, l, ".weight_scale_2")?;
                let g = floats(gt, gd, s)?;
                check_len(gt, g.len(), 1, "weight_scale_2")?;
                (None, Some(g[0]))
            };
            Ok((
                Box::new(Scaled {
                    codes: Codes::F4(wd),
                    scales,
                    zeros: None,
                    div,
                    mul,
                    cols,
                    br,
                    bc,
                    sc,
                }),
                rows,
                cols,
            ))
        }
        Scheme::Mxfp4GptOss => {
            let (bt, bd) = need(src, l, "_blocks")?;
            let (st, sd) = need(src, l, "_scales")?;
            let n = bt.shape.len();
            let groups = bt.shape.get(n.wrapping_sub(2)).copied().unwrap_or(0);
            let rows: usize = bt
                .shape
                .iter()
                .take(n.saturating_sub(2))
                .fold(1usize, |a, &d| a.saturating_mul(d));
            let cols = groups.saturating_mul(32);
            if bt.dtype != Dtype::U8
                || bt.shape.last() != Some(&16)
                || st.dtype.bits() != 8
                || st.elements() as usize != rows.saturating_mul(groups)
                || bd.len() as u128 * 2 != rows as u128 * cols as u128
            {
                return Err(bad_shape(
                    bt,
                    "expected U8 [..., groups, 16] blocks and 8-bit [..., groups] scales",
                ));
            }
            Ok((
                Box::new(Mx {
                    codes: bd,
                    exps: sd,
                    cols,
                }),
                rows,
                cols,
            ))
        }
        Scheme::BnbInt8 => {
            let (wt, wd) = need(src, l, ".weight")?;
            let (st, sd) = need(src, l, ".SCB")?;
            let (rows, cols) = dims2(wt)?;
            let scb = floats(st, sd, s)?;
            check_len(st, scb.len(), rows, "SCB")?;
            Ok((Box::new(BnbInt8 { q: wd, scb, cols }), rows, cols))
        }
        Scheme::BnbNf4 | Scheme::BnbFp4 => {
            let (wt, wd) = need(src, l, ".weight")?;
            let (mt, md) = need(src, l, ".weight.quant_map")?;
            let (at, ad) = need(src, l, ".weight.absmax")?;
            let state = l
                .quant_state
                .as_ref()
                .ok_or_else(|| bad_shape(wt, "quant_state is not valid JSON"))?;
            let block = state
                .get("blocksize")
                .and_then(Value::as_u64)
                .filter(|&b| b > 0)
                .ok_or_else(|| bad_shape(wt, "quant_state has no positive blocksize"))?
                as usize;
            let map = floats(mt, md, s)?;
            check_len(mt, map.len(), 16, "quant_map")?;
            let n = l
                .shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| {
                    bad_shape(wt, format!("quant_state shape {:?} overflows", l.shape))
                })?;
            if wd.len() * 2 < n {
                return Err(bad_shape(
                    wt,
                    format!("{} bytes cannot hold {n} 4-bit codes", wd.len()),
                ));
            }
            let absmax = match opt(src, l, ".weight.nested_absmax") {
                Some((nt, nd)) => {
                    let (qt, qd) = need(src, l, ".weight.nested_quant_map")?;
                    let nblock = state
                        .get("nested_blocksize")
                        .and_then(Value::as_u64)
                        .filter(|&b| b > 0)
                        .ok_or_else(|| {
                            bad_shape(nt, "quant_state has no positive nested_blocksize")
                        })? as usize;
                    let offset = state
                        .get("nested_offset")
                        .and_then(Value::as_f64)
                        .unwrap_or(0.0) as f32;
                    let nabs = floats(nt, nd, s)?;
                    let nmap = floats(qt, qd, s)?;
                    check_len(qt, nmap.len(), 256, "nested_quant_map")?;
                    if at.dtype != Dtype::U8 || nabs.len() < ad.len().div_ceil(nblock) {
                        return Err(bad_shape(at, "nested absmax must be U8 codes with one nested_absmax per nested block"));
                    }
                    ad.iter()
                        .enumerate()
                        .map(|(i, &c)| nmap[c as usize] * nabs[i / nblock] + offset)
                        .collect()
                }
                None => floats(at, ad, s)?,
            };
            if absmax.len() < n.div_ceil(block) {
                return Err(bad_shape(
                    at,
                    format!(
                        "{} absmax values for {n} codes in blocks of {block}",
                        absmax.len()
                    ),
                ));
            }
            let cols = l.shape.last().copied().unwrap_or(n).max(1);
            let rows = if n == 0 { 0 } else { n / cols };
            Ok((
                Box::new(Bnb4 {
                    codes: wd,
                    map,
                    absmax,
                    block,
                    cols,
                }),
                rows,
                cols,
            ))
        }
    }
}

/// Dequantizes one layer and returns its dense f32 values (tests, small
/// layers; [`dequantize`] streams instead).
pub fn dequantize_layer(src: &Source, l: &QuantLayer) -> Result<Vec<f32>, QuantError> {
    let (b, rows, cols) = builder(src, l)?;
    let mut out = vec![0f32; rows * cols];
    b.rows(0, rows, &mut out);
    Ok(out)
}

/// Writes one layer's dense bytes in `opts.dtype` to `w`, chunk by chunk
/// (what [`dequantize`] does for each layer).
pub fn write_layer_to(
    src: &Source,
    l: &QuantLayer,
    opts: &Options,
    w: &mut dyn Write,
) -> std::io::Result<()> {
    write_layer(src, l, opts, w)
}

enum Item<'r> {
    Copy(String),
    Layer(&'r QuantLayer),
}

/// Dequantizes the checkpoint at `src` into `dst`: a `.safetensors` path
/// (one file) or a directory (shards of at most `opts.max_shard_size` and an
/// index when more than one; `config.json` copied without its
/// `quantization_config`).
pub fn dequantize(
    src: impl AsRef<Path>,
    dst: impl AsRef<Path>,
    opts: &Options,
) -> Result<Summary, QuantError> {
    let source = Source::open(src.as_ref())?;
    let report = source.recognize()?;
    dequantize_source(&source, &report, dst.as_ref(), opts)
}

/// [`dequantize`] of an opened source with its report.
pub fn dequantize_source(
    source: &Source,
    report: &QuantReport,
    dst: &Path,
    opts: &Options,
) -> Result<Summary, QuantError> {
    let consumed = report.consumed();
    let mut items: Vec<(TensorSpec, Item<'_>)> = Vec::new();
    let by_first: HashMap<&str, &QuantLayer> = report
        .layers
        .iter()
        .filter_map(|l| l.tensors.first().map(|t| (t.as_str(), l)))
        .collect();
    for t in source.tensors() {
        if let Some(l) = by_first.get(t.name.as_str()) {
            items.push((
                TensorSpec {
                    name: l.output.clone(),
                    dtype: opts.dtype.dtype(),
                    shape: l.shape.clone(),
                },
                Item::Layer(l),
            ));
        } else if !consumed.contains(t.name.as_str()) {
            items.push((
                TensorSpec {
                    name: t.name.clone(),
                    dtype: t.dtype,
                    shape: t.shape.clone(),
                },
                Item::Copy(t.name.clone()),
            ));
        }
    }
    // Builders are checked before anything is written.
    for (_, it) in &items {
        if let Item::Layer(l) = it {
            builder(source, l)?;
        }
    }
    let sizes: Vec<u64> = items
        .iter()
        .map(|(s, _)| {
            s.shape
                .iter()
                .fold(1u64, |a, &d| a.saturating_mul(d as u64))
                .saturating_mul(s.dtype.bits() as u64)
                / 8
        })
        .collect();
    let single_file = dst.extension().is_some_and(|e| e == "safetensors");
    let groups = if single_file {
        vec![(0..items.len()).collect()]
    } else {
        plan_shards(&sizes, opts.max_shard_size)
    };
    let groups: Vec<Vec<usize>> = if groups.is_empty() {
        vec![Vec::new()]
    } else {
        groups
    };
    if !single_file {
        std::fs::create_dir_all(dst).map_err(|e| QuantError::Io {
            path: dst.display().to_string(),
            source: e,
        })?;
    }
    let mut summary = Summary::default();
    let mut weight_map = BTreeMap::new();
    let n = groups.len();
    let mut metadata = source.metadata().cloned().unwrap_or_default();
    metadata
        .entry("format".to_owned())
        .or_insert_with(|| "pt".to_owned());
    for (gi, group) in groups.iter().enumerate() {
        let path = if single_file {
            dst.to_owned()
        } else if n == 1 {
            dst.join("model.safetensors")
        } else {
            dst.join(shard_name(gi, n))
        };
        let specs: Vec<TensorSpec> = group.iter().map(|&i| items[i].0.clone()).collect();
        let fill = |si: usize, w: &mut dyn Write| -> std::io::Result<()> {
            let Some(&ii) = group.get(si) else {
                return Ok(());
            };
            match &items[ii].1 {
                Item::Copy(name) => {
                    let (_, data) = source.get(name).ok_or_else(|| {
                        std::io::Error::other(format!("tensor {name:?} vanished"))
                    })?;
                    w.write_all(data)
                }
                Item::Layer(l) => write_layer(source, l, opts, w),
            }
        };
        let wopts = WriteOptions::new()
            .with_metadata(metadata.clone())
            .with_durability(opts.durability);
        FileWriter::create(&path, &specs, &wopts)?.fill_and_commit(fill)?;
        for s in &specs {
            if let Some(f) = path.file_name() {
                weight_map.insert(s.name.clone(), f.to_string_lossy().into_owned());
            }
        }
        summary.files.push(path);
    }
    for ((_, it), sz) in items.iter().zip(&sizes) {
        summary.bytes += sz;
        match it {
            Item::Copy(_) => summary.copied += 1,
            Item::Layer(_) => summary.dequantized += 1,
        }
    }
    if !single_file {
        if n > 1 {
            let p = dst.join("model.safetensors.index.json");
            std::fs::write(&p, index_json(summary.bytes, &weight_map)).map_err(|e| {
                QuantError::Io {
                    path: p.display().to_string(),
                    source: e,
                }
            })?;
        }
        if let Some(cfg) = source
            .dir()
            .map(|d| d.join("config.json"))
            .filter(|p| p.is_file())
        {
            let text = std::fs::read(&cfg).map_err(|e| QuantError::Io {
                path: cfg.display().to_string(),
                source: e,
            })?;
            if let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(&text) {
                m.remove("quantization_config");
                let torch = match opts.dtype {
                    OutDtype::F32 => "float32",
                    OutDtype::BF16 => "bfloat16",
                    OutDtype::F16 => "float16",
                };
                m.insert("torch_dtype".to_owned(), Value::from(torch));
                let p = dst.join("config.json");
                let body = serde_json::to_string_pretty(&Value::Object(m)).unwrap_or_default();
                std::fs::write(&p, body + "\n").map_err(|e| QuantError::Io {
                    path: p.display().to_string(),
                    source: e,
                })?;
            }
        }
    }
    Ok(summary)
}

fn write_layer(
    source: &Source,
    l: &QuantLayer,
    opts: &Options,
    w: &mut dyn Write,
) -> std::io::Result<()> {
    let (b, rows, cols) = builder(source, l).map_err(std::io::Error::other)?;
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let out_size = opts.dtype.size();
    let row_bytes = cols * out_size;
    let chunk_rows = (opts.chunk_bytes / row_bytes).clamp(1, rows);
    let task_rows = chunk_rows.div_ceil(rayon::current_num_threads() * 4).max(1);
    // Fills `buf` with the rows from `r0` on, in parallel.
    let fill = |buf: &mut [u8], r0: usize| {
        buf.par_chunks_mut(task_rows * row_bytes)
            .enumerate()
            .for_each(|(t, out)| {
                let r = r0 + t * task_rows;
                b.fill(r, r + out.len() / row_bytes, opts.dtype, out);
            });
    };
    // Two buffers: the next chunk is computed while this one is written, so
    // the time is about the larger of computing and writing, not their sum.
    let mut cur = vec![0u8; chunk_rows * row_bytes];
    let mut next = vec![0u8; if chunk_rows < rows { cur.len() } else { 0 }];
    let (mut r0, mut r1) = (0, chunk_rows);
    fill(&mut cur[..r1 * row_bytes], 0);
    loop {
        let len = (r1 - r0) * row_bytes;
        if r1 >= rows {
            return w.write_all(&cur[..len]);
        }
        let (n0, n1) = (r1, (r1 + chunk_rows).min(rows));
        let ahead = &mut next[..(n1 - n0) * row_bytes];
        let written = std::thread::scope(|s| {
            let filling = s.spawn(|| fill(ahead, n0));
            let written = w.write_all(&cur[..len]);
            if let Err(panic) = filling.join() {
                std::panic::resume_unwind(panic);
            }
            written
        });
        written?;
        std::mem::swap(&mut cur, &mut next);
        (r0, r1) = (n0, n1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DTYPES: [OutDtype; 3] = [OutDtype::F32, OutDtype::BF16, OutDtype::F16];

    fn noise(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// The kernel of `b` against the f32 path, rows split unevenly.
    fn same_as_f32(b: &dyn Rows, rows: usize, cols: usize, what: &str) {
        for dt in DTYPES {
            let mut want = vec![0u8; rows * cols * dt.size()];
            fill_via_f32(b, 0, rows, dt, &mut want);
            let mut got = vec![0u8; want.len()];
            let split = rows / 3;
            let (a, c) = got.split_at_mut(split * cols * dt.size());
            b.fill(0, split, dt, a);
            b.fill(split, rows, dt, c);
            assert!(got == want, "{what} {dt}");
        }
    }

    #[test]
    fn table_kernel_matches_the_f32_path() {
        let (rows, cols) = (300, 384);
        // Every code, NaNs and infinities included, and odd scales.
        let codes = noise(rows * cols, 7);
        let scales: Vec<f32> = noise(3 * 3, 9)
            .iter()
            .map(|&b| f32::from_bits(0x3000_0000 + ((b as u32) << 19)))
            .collect();
        for (table, dtype) in [
            (&crate::float::F8_E4M3, "e4m3"),
            (&crate::float::F8_E5M2, "e5m2"),
        ] {
            let s = Scaled {
                codes: Codes::Table(&codes, table),
                scales: scales.clone(),
                zeros: None,
                div: None,
                mul: None,
                cols,
                br: 128,
                bc: 128,
                sc: 3,
            };
            assert!(s.table_kernel());
            same_as_f32(&s, rows, cols, dtype);
        }
        let s = Scaled {
            codes: Codes::I8(&codes),
            scales: scales[..1].to_vec(),
            zeros: Some(vec![3.0]),
            div: None,
            mul: None,
            cols,
            br: rows,
            bc: cols,
            sc: 1,
        };
        assert!(s.table_kernel());
        same_as_f32(&s, rows, cols, "int8 with zero point");
    }

    #[test]
    fn gptq_kernel_matches_the_f32_path() {
        let (in_f, out_f) = (256, 48);
        for bits in [2u32, 4, 8] {
            let pack = (32 / bits) as usize;
            let q = noise(in_f / pack * out_f * 4, bits as u64);
            let groups = 4;
            let zwords = out_f.div_ceil(pack);
            let zeros: Vec<u32> = noise(groups * zwords * 4, 5)
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let scales: Vec<f32> = noise(groups * out_f, 11)
                .iter()
                .map(|&b| f32::from_bits(0x3A00_0000 + ((b as u32) << 15)))
                .collect();
            let contiguous: Vec<usize> = (0..in_f).map(|k| k / (in_f / groups)).collect();
            let act_order: Vec<usize> = (0..in_f).map(|k| (k * 7) % groups).collect();
            for (gidx, group_size) in [(contiguous, Some(in_f / groups)), (act_order, None)] {
                for v1 in [false, true] {
                    let g = Gptq {
                        q: &q,
                        zeros: zeros.clone(),
                        scales: scales.clone(),
                        gidx: gidx.clone(),
                        group_size,
                        bits,
                        v1,
                        out_f,
                        in_f,
                        zwords,
                    };
                    same_as_f32(&g, out_f, in_f, &format!("{bits} bits {group_size:?} {v1}"));
                }
            }
        }
    }
}
