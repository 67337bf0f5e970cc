//! Sparse tensors by the convention of docs/sparse.md: component tensors
//! `W.indices`/`W.values` (COO), `W.crow_indices`/`W.col_indices`/`W.values`
//! (CSR), `W.ccol_indices`/`W.row_indices`/`W.values` (CSC),
//! `W.values`/`W.meta` (2:4), described by the `__sparse__` metadata key.
//!
//! [`describe`] reads and checks the description against the header;
//! [`densify`] validates the components and writes the dense equivalent.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::Path;

use serde_json::Value;
use tensorseal_format::{
    Dtype, Durability, FileWriter, MmapFile, ReadTensors, TensorSpec, WriteOptions,
};

use crate::QuantError;

/// The metadata key holding the description.
pub const KEY: &str = "__sparse__";

/// A sparse layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Coordinate list.
    Coo,
    /// Compressed sparse rows.
    Csr,
    /// Compressed sparse columns.
    Csc,
    /// 2:4 semi-structured (2 values kept in every group of 4 columns).
    TwoFour,
}

impl Layout {
    fn parse(s: &str) -> Option<Layout> {
        Some(match s {
            "coo" => Layout::Coo,
            "csr" => Layout::Csr,
            "csc" => Layout::Csc,
            "2:4" => Layout::TwoFour,
            _ => return None,
        })
    }
    /// The name used in `__sparse__`.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Coo => "coo",
            Layout::Csr => "csr",
            Layout::Csc => "csc",
            Layout::TwoFour => "2:4",
        }
    }
    /// Component suffixes, in order.
    pub fn components(self) -> &'static [&'static str] {
        match self {
            Layout::Coo => &["indices", "values"],
            Layout::Csr => &["crow_indices", "col_indices", "values"],
            Layout::Csc => &["ccol_indices", "row_indices", "values"],
            Layout::TwoFour => &["values", "meta"],
        }
    }
}

/// One logical sparse tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseTensor {
    /// Logical name.
    pub name: String,
    /// Layout.
    pub layout: Layout,
    /// Dense shape.
    pub shape: Vec<usize>,
    /// dtype of the values.
    pub dtype: Dtype,
    /// Stored values.
    pub nnz: u64,
    /// Whether COO indices are declared sorted and unique.
    pub coalesced: bool,
    /// Component tensor names.
    pub components: Vec<String>,
}

impl SparseTensor {
    /// Dense elements.
    pub fn elements(&self) -> u64 {
        self.shape
            .iter()
            .fold(1u64, |a, &d| a.saturating_mul(d as u64))
    }
    /// Stored values over dense elements (0 for an empty tensor).
    pub fn density(&self) -> f64 {
        let n = self.elements();
        if n == 0 {
            0.0
        } else {
            self.nnz as f64 / n as f64
        }
    }
}

fn invalid(name: &str, why: impl Into<String>) -> QuantError {
    QuantError::Config {
        file: format!("sparse tensor {name:?}"),
        reason: why.into(),
    }
}

/// The sparse tensors a file's metadata describes, checked against its
/// header (rules 1–3 of docs/sparse.md and the component shapes). Empty if
/// the file has no `__sparse__` key.
pub fn describe(file: &MmapFile) -> Result<Vec<SparseTensor>, QuantError> {
    let Some(text) = file.metadata().and_then(|m| m.get(KEY)) else {
        return Ok(Vec::new());
    };
    let desc: Value = serde_json::from_str(text)
        .map_err(|e| invalid(KEY, format!("metadata {KEY:?} is not valid JSON: {e}")))?;
    let Value::Object(map) = desc else {
        return Err(invalid(
            KEY,
            format!("metadata {KEY:?} is not a JSON object"),
        ));
    };
    let header = file.header();
    let mut out = Vec::new();
    for (name, d) in &map {
        let layout = d
            .get("layout")
            .and_then(Value::as_str)
            .and_then(Layout::parse)
            .ok_or_else(|| {
                invalid(
                    name,
                    format!(
                        "layout {} is not coo, csr, csc or 2:4",
                        d.get("layout").unwrap_or(&Value::Null)
                    ),
                )
            })?;
        let shape: Vec<usize> = d
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .map(|x| x.as_u64().and_then(|x| usize::try_from(x).ok()))
                    .collect()
            })
            .ok_or_else(|| {
                invalid(
                    name,
                    format!(
                        "shape {} is not a list of non-negative integers",
                        d.get("shape").unwrap_or(&Value::Null)
                    ),
                )
            })?;
        if shape
            .iter()
            .try_fold(1usize, |a, &x| a.checked_mul(x))
            .is_none()
        {
            return Err(invalid(name, format!("shape {shape:?} overflows")));
        }
        if header.get(name).is_some() {
            return Err(invalid(name, "the name is also a plain tensor"));
        }
        let mut components = Vec::new();
        for c in layout.components() {
            let cname = format!("{name}.{c}");
            if header.get(&cname).is_none() {
                return Err(invalid(name, format!("component {cname:?} is missing")));
            }
            components.push(cname);
        }
        let info = |i: usize| {
            header
                .get(&components[i])
                .cloned()
                .ok_or_else(|| invalid(name, "component vanished"))
        };
        let is_index = |d: Dtype| matches!(d, Dtype::I32 | Dtype::I64);
        let (values, nnz) = match layout {
            Layout::Coo => {
                let (ind, val) = (info(0)?, info(1)?);
                let nnz = val.shape.first().copied().unwrap_or(0);
                if val.shape.len() != 1 || ind.shape != [shape.len(), nnz] || !is_index(ind.dtype) {
                    return Err(invalid(name, format!("COO needs I32/I64 indices [{}, nnz] and 1-D values, found {:?} {:?} and {:?}", shape.len(), ind.dtype, ind.shape, val.shape)));
                }
                (val, nnz)
            }
            Layout::Csr | Layout::Csc => {
                let (comp, plain, val) = (info(0)?, info(1)?, info(2)?);
                let [rows, cols] = shape[..] else {
                    return Err(invalid(name, format!("shape {shape:?} is not 2-D")));
                };
                let major = if layout == Layout::Csr { rows } else { cols };
                let nnz = val.shape.first().copied().unwrap_or(0);
                if val.shape.len() != 1
                    || comp.shape != [major + 1]
                    || plain.shape != [nnz]
                    || !is_index(comp.dtype)
                    || !is_index(plain.dtype)
                {
                    return Err(invalid(
                        name,
                        format!(
                            "{} needs I32/I64 compressed indices [{}], indices and values [nnz]",
                            layout.name(),
                            major + 1
                        ),
                    ));
                }
                (val, nnz)
            }
            Layout::TwoFour => {
                let (val, meta) = (info(0)?, info(1)?);
                let [rows, cols] = shape[..] else {
                    return Err(invalid(name, format!("shape {shape:?} is not 2-D")));
                };
                if cols % 4 != 0
                    || val.shape != [rows, cols / 2]
                    || meta.dtype != Dtype::U8
                    || meta.shape != [rows, cols.div_ceil(8)]
                {
                    return Err(invalid(name, format!("2:4 needs cols divisible by 4, values [{rows}, {}] and U8 meta [{rows}, {}]", cols / 2, cols.div_ceil(8))));
                }
                (val.clone(), rows * cols / 2)
            }
        };
        if values.dtype.byte_size().is_none() {
            return Err(invalid(
                name,
                format!(
                    "values of sub-byte dtype {} are not supported",
                    values.dtype
                ),
            ));
        }
        out.push(SparseTensor {
            name: name.clone(),
            layout,
            shape,
            dtype: values.dtype,
            nnz: nnz as u64,
            coalesced: d.get("coalesced").and_then(Value::as_bool).unwrap_or(false),
            components,
        });
    }
    Ok(out)
}

fn indices(dtype: Dtype, data: &[u8]) -> Vec<i64> {
    match dtype {
        Dtype::I32 => data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
            .collect(),
        _ => data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
    }
}

/// Adds element `src` into `dst` (both one element of `dtype`): duplicate
/// COO entries sum, as torch's `to_dense()` does.
fn add_into(dtype: Dtype, dst: &mut [u8], src: &[u8]) {
    macro_rules! num {
        ($t:ty, $n:expr, $add:expr) => {{
            let a = <$t>::from_le_bytes(dst[..$n].try_into().unwrap_or([0; $n]));
            let b = <$t>::from_le_bytes(src[..$n].try_into().unwrap_or([0; $n]));
            let add: fn($t, $t) -> $t = $add;
            dst[..$n].copy_from_slice(&add(a, b).to_le_bytes());
        }};
    }
    match dtype {
        Dtype::F32 => num!(f32, 4, |a, b| a + b),
        Dtype::F64 => num!(f64, 8, |a, b| a + b),
        Dtype::F16 => {
            let a = half::f16::from_le_bytes([dst[0], dst[1]]).to_f32();
            let b = half::f16::from_le_bytes([src[0], src[1]]).to_f32();
            dst[..2].copy_from_slice(&half::f16::from_f32(a + b).to_le_bytes());
        }
        Dtype::BF16 => {
            let a = half::bf16::from_le_bytes([dst[0], dst[1]]).to_f32();
            let b = half::bf16::from_le_bytes([src[0], src[1]]).to_f32();
            dst[..2].copy_from_slice(&half::bf16::from_f32(a + b).to_le_bytes());
        }
        Dtype::I8 => num!(i8, 1, <i8>::wrapping_add),
        Dtype::U8 => num!(u8, 1, <u8>::wrapping_add),
        Dtype::I16 => num!(i16, 2, <i16>::wrapping_add),
        Dtype::U16 => num!(u16, 2, <u16>::wrapping_add),
        Dtype::I32 => num!(i32, 4, <i32>::wrapping_add),
        Dtype::U32 => num!(u32, 4, <u32>::wrapping_add),
        Dtype::I64 => num!(i64, 8, <i64>::wrapping_add),
        Dtype::U64 => num!(u64, 8, <u64>::wrapping_add),
        Dtype::BOOL => dst[0] |= src[0],
        // Other dtypes have no addition here: the later entry wins.
        _ => dst.copy_from_slice(src),
    }
}

/// The dense bytes of one sparse tensor, checking rules 4–6.
fn dense_bytes(file: &MmapFile, t: &SparseTensor) -> Result<Vec<u8>, QuantError> {
    let esize = t.dtype.byte_size().unwrap_or(1);
    let n = usize::try_from(t.elements()).map_err(|_| invalid(&t.name, "too large"))?;
    let total = n
        .checked_mul(esize)
        .ok_or_else(|| invalid(&t.name, "too large"))?;
    let comp = |i: usize| -> Result<(Dtype, &[u8]), QuantError> {
        let v = file.tensor(&t.components[i])?;
        Ok((v.dtype(), v.data()))
    };
    // The dense size comes from the metadata: ask for it fallibly, so that
    // a shape no memory can hold is an error naming the tensor, not an abort.
    let mut out = Vec::new();
    out.try_reserve_exact(total).map_err(|_| {
        invalid(
            &t.name,
            format!("its dense form of {total} bytes does not fit in memory"),
        )
    })?;
    out.resize(total, 0);
    match t.layout {
        Layout::Coo => {
            let (idt, id) = comp(0)?;
            let (_, vals) = comp(1)?;
            let ind = indices(idt, id);
            let nnz = t.nnz as usize;
            let mut prev: Option<u128> = None;
            for k in 0..nnz {
                let mut lin: usize = 0;
                for (d, &size) in t.shape.iter().enumerate() {
                    let i = ind.get(d * nnz + k).copied().unwrap_or(-1);
                    if i < 0 || i as u64 >= size as u64 {
                        return Err(invalid(&t.name, format!("index {i} of entry {k} is out of bounds for dimension {d} of size {size}")));
                    }
                    lin = lin * size + i as usize;
                }
                if t.coalesced && prev.is_some_and(|p| p >= lin as u128) {
                    return Err(invalid(
                        &t.name,
                        "marked coalesced but its indices are not sorted and unique",
                    ));
                }
                prev = Some(lin as u128);
                let src = vals
                    .get(k * esize..(k + 1) * esize)
                    .ok_or_else(|| invalid(&t.name, "values too short"))?;
                add_into(t.dtype, &mut out[lin * esize..(lin + 1) * esize], src);
            }
        }
        Layout::Csr | Layout::Csc => {
            let (cdt, cd) = comp(0)?;
            let (pdt, pd) = comp(1)?;
            let (_, vals) = comp(2)?;
            let (ptr, idx) = (indices(cdt, cd), indices(pdt, pd));
            let (rows, cols) = (t.shape[0], t.shape[1]);
            let (major, minor) = if t.layout == Layout::Csr {
                (rows, cols)
            } else {
                (cols, rows)
            };
            let nnz = t.nnz as i64;
            if ptr.first() != Some(&0)
                || ptr.last() != Some(&nnz)
                || ptr.windows(2).any(|w| w[1] < w[0])
            {
                return Err(invalid(
                    &t.name,
                    format!("compressed indices must start at 0, never decrease and end at {nnz}"),
                ));
            }
            for m in 0..major {
                let (a, b) = (ptr[m] as usize, ptr[m + 1] as usize);
                let mut last = -1i64;
                for k in a..b {
                    let i = idx[k];
                    if i < 0 || i as u64 >= minor as u64 {
                        return Err(invalid(
                            &t.name,
                            format!("index {i} is out of bounds for size {minor}"),
                        ));
                    }
                    if i <= last {
                        return Err(invalid(
                            &t.name,
                            format!(
                                "indices of {} {m} do not strictly increase",
                                if t.layout == Layout::Csr {
                                    "row"
                                } else {
                                    "column"
                                }
                            ),
                        ));
                    }
                    last = i;
                    let (r, c) = if t.layout == Layout::Csr {
                        (m, i as usize)
                    } else {
                        (i as usize, m)
                    };
                    let at = (r * cols + c) * esize;
                    out[at..at + esize].copy_from_slice(&vals[k * esize..(k + 1) * esize]);
                }
            }
        }
        Layout::TwoFour => {
            let (_, vals) = comp(0)?;
            let (_, meta) = comp(1)?;
            let (rows, cols) = (t.shape[0], t.shape[1]);
            let mbytes = cols.div_ceil(8);
            for r in 0..rows {
                for g in 0..cols / 4 {
                    let b = meta[r * mbytes + g / 2];
                    let code = if g % 2 == 0 { b & 0xF } else { b >> 4 };
                    let (p0, p1) = ((code & 3) as usize, (code >> 2) as usize);
                    if p0 >= p1 {
                        return Err(invalid(&t.name, format!("row {r} group {g}: meta code {code:#x} does not name two increasing positions")));
                    }
                    for (j, p) in [p0, p1].into_iter().enumerate() {
                        let v = (r * cols / 2 + g * 2 + j) * esize;
                        let at = (r * cols + g * 4 + p) * esize;
                        out[at..at + esize].copy_from_slice(&vals[v..v + esize]);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// What [`densify`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DensifySummary {
    /// Sparse tensors made dense.
    pub densified: usize,
    /// Tensors copied unchanged.
    pub copied: usize,
}

/// Writes the dense equivalent of the single file `src` to `dst`: each
/// sparse tensor as one dense tensor (one at a time in memory), every other
/// tensor unchanged, the metadata without `__sparse__`.
pub fn densify(
    src: &Path,
    dst: &Path,
    durability: Durability,
) -> Result<DensifySummary, QuantError> {
    let file = MmapFile::open(src)?;
    let sparse = describe(&file)?;
    let consumed: HashSet<&str> = sparse
        .iter()
        .flat_map(|s| s.components.iter().map(String::as_str))
        .collect();
    enum Item<'a> {
        Copy(&'a str),
        Dense(&'a SparseTensor),
    }
    let mut specs = Vec::new();
    let mut items = Vec::new();
    for (name, info) in file.header().tensors() {
        if !consumed.contains(name.as_str()) {
            specs.push(TensorSpec {
                name: name.clone(),
                dtype: info.dtype,
                shape: info.shape.clone(),
            });
            items.push(Item::Copy(name));
        }
    }
    for s in &sparse {
        // Validate everything before writing.
        dense_bytes(&file, s)?;
        specs.push(TensorSpec {
            name: s.name.clone(),
            dtype: s.dtype,
            shape: s.shape.clone(),
        });
        items.push(Item::Dense(s));
    }
    let mut meta: BTreeMap<String, String> = file.metadata().cloned().unwrap_or_default();
    meta.remove(KEY);
    let meta = (!meta.is_empty()).then_some(meta);
    let wopts = WriteOptions::new()
        .with_metadata_opt(meta)
        .with_durability(durability);
    FileWriter::create(dst, &specs, &wopts)?.fill_and_commit(|i, w: &mut dyn Write| match items
        .get(i)
    {
        Some(Item::Copy(n)) => w.write_all(file.tensor(n).map_err(std::io::Error::other)?.data()),
        Some(Item::Dense(s)) => w.write_all(&dense_bytes(&file, s).map_err(std::io::Error::other)?),
        None => Ok(()),
    })?;
    Ok(DensifySummary {
        densified: sparse.len(),
        copied: items.len() - sparse.len(),
    })
}
