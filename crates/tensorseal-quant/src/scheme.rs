//! Recognising quantization layouts from tensor names, dtypes and shapes,
//! and from `config.json` (`quantization_config`), `quantize_config.json`
//! and `hf_quant_config.json`.
//!
//! Each quantized layer is found from an anchor tensor (`qweight`,
//! `weight_scale_inv`, `weight_packed`, `weight_scale`, `*_blocks`, `SCB`,
//! `weight.quant_state.bitsandbytes__*`) and the tensors around it; configs
//! settle what shapes cannot (GPTQ v1 or v2, compressed-tensors' format
//! name, the FP8 block size).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde_json::Value;
use tensorseal_format::Dtype;

use crate::QuantError;

/// One tensor as a header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorMeta {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
}

impl TensorMeta {
    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.shape
            .iter()
            .fold(1u64, |a, &d| a.saturating_mul(d as u64))
    }
    /// Bytes of data.
    pub fn bytes(&self) -> u64 {
        self.elements().saturating_mul(self.dtype.bits() as u64) / 8
    }
}

/// A quantization scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// GPTQ with the v1 zero-point offset (stored zeros are zero - 1).
    GptqV1,
    /// GPTQ v2 (zeros stored as they are).
    GptqV2,
    /// AWQ GEMM (nibble order 0,2,4,6,1,3,5,7 within each int32).
    AwqGemm,
    /// Block FP8 in the style of DeepSeek-V3: `weight_scale_inv` per block.
    Fp8Block,
    /// FP8 weights with a per-tensor, per-channel or per-group `weight_scale`
    /// (compressed-tensors float-quantized, ModelOpt FP8).
    Fp8Scaled,
    /// Integer (int8) weights with `weight_scale` (compressed-tensors
    /// int-quantized / naive-quantized).
    IntScaled,
    /// compressed-tensors pack-quantized: ints packed into int32.
    CtPackQuantized,
    /// compressed-tensors nvfp4-pack-quantized.
    CtNvfp4,
    /// compressed-tensors mxfp4-pack-quantized.
    CtMxfp4,
    /// NVIDIA ModelOpt NVFP4 (`weight_scale` FP8 per 16, `weight_scale_2`).
    ModeloptNvfp4,
    /// MXFP4 as gpt-oss ships it (`*_blocks`, `*_scales`).
    Mxfp4GptOss,
    /// bitsandbytes NF4.
    BnbNf4,
    /// bitsandbytes FP4.
    BnbFp4,
    /// bitsandbytes LLM.int8 (`SCB` row scales).
    BnbInt8,
}

impl Scheme {
    /// A short stable name (used in reports and `--json`).
    pub fn name(self) -> &'static str {
        match self {
            Scheme::GptqV1 => "gptq",
            Scheme::GptqV2 => "gptq_v2",
            Scheme::AwqGemm => "awq-gemm",
            Scheme::Fp8Block => "fp8-block",
            Scheme::Fp8Scaled => "fp8-scaled",
            Scheme::IntScaled => "int-scaled",
            Scheme::CtPackQuantized => "ct-pack-quantized",
            Scheme::CtNvfp4 => "ct-nvfp4-pack-quantized",
            Scheme::CtMxfp4 => "ct-mxfp4-pack-quantized",
            Scheme::ModeloptNvfp4 => "modelopt-nvfp4",
            Scheme::Mxfp4GptOss => "mxfp4-gpt-oss",
            Scheme::BnbNf4 => "bnb-nf4",
            Scheme::BnbFp4 => "bnb-fp4",
            Scheme::BnbInt8 => "bnb-int8",
        }
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the scales are grouped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    /// One scale for the whole tensor.
    Tensor,
    /// One scale per output channel (row).
    Channel,
    /// One scale per `n` consecutive input elements.
    Group(usize),
    /// One scale per `rows x cols` block.
    Block(usize, usize),
}

impl std::fmt::Display for Grouping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Grouping::Tensor => f.write_str("tensor"),
            Grouping::Channel => f.write_str("channel"),
            Grouping::Group(n) => write!(f, "{n}"),
            Grouping::Block(r, c) => write!(f, "{r}x{c}"),
        }
    }
}

/// One quantized layer.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantLayer {
    /// The layer's name prefix (`model.layers.0.mlp.down_proj`), or for
    /// gpt-oss the tensor name without `_blocks`.
    pub prefix: String,
    /// The dense tensor dequantization writes (`<prefix>.weight`, or for
    /// gpt-oss the prefix itself).
    pub output: String,
    /// The scheme.
    pub scheme: Scheme,
    /// Bits per quantized value.
    pub bits: u32,
    /// Scale grouping.
    pub grouping: Grouping,
    /// The dense tensor's shape.
    pub shape: Vec<usize>,
    /// The tensors this layer consumes (all replaced by `output`).
    pub tensors: Vec<String>,
    /// Bytes of those tensors.
    pub stored_bytes: u64,
    /// For bitsandbytes 4-bit: the quant_state JSON.
    pub quant_state: Option<Value>,
}

impl QuantLayer {
    /// Weights in the dense tensor.
    pub fn elements(&self) -> u64 {
        self.shape
            .iter()
            .fold(1u64, |a, &d| a.saturating_mul(d as u64))
    }
    /// Stored bits (values, scales, zeros, indices) per dense weight.
    pub fn effective_bits(&self) -> f64 {
        let n = self.elements();
        if n == 0 {
            0.0
        } else {
            self.stored_bytes as f64 * 8.0 / n as f64
        }
    }
}

/// The config files next to a checkpoint.
#[derive(Debug, Clone, Default)]
pub struct Configs {
    /// `config.json`.
    pub config: Option<Value>,
    /// `quantize_config.json` (AutoGPTQ / AutoAWQ).
    pub quantize_config: Option<Value>,
    /// `hf_quant_config.json` (ModelOpt).
    pub hf_quant_config: Option<Value>,
}

impl Configs {
    /// Reads whichever of the three files exist in `dir`.
    pub fn load(dir: &Path) -> Result<Configs, QuantError> {
        let read = |name: &str| -> Result<Option<Value>, QuantError> {
            let path = dir.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    serde_json::from_slice(&bytes)
                        .map(Some)
                        .map_err(|e| QuantError::Config {
                            file: path.display().to_string(),
                            reason: format!("not valid JSON: {e}"),
                        })
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(QuantError::Io {
                    path: path.display().to_string(),
                    source: e,
                }),
            }
        };
        Ok(Configs {
            config: read("config.json")?,
            quantize_config: read("quantize_config.json")?,
            hf_quant_config: read("hf_quant_config.json")?,
        })
    }

    /// `config.json`'s `quantization_config`, else `quantize_config.json`.
    pub fn quantization(&self) -> Option<&Value> {
        self.config
            .as_ref()
            .and_then(|c| c.get("quantization_config"))
            .filter(|v| v.is_object())
            .or(self.quantize_config.as_ref().filter(|v| v.is_object()))
    }

    fn quant_str(&self, key: &str) -> Option<String> {
        self.quantization()
            .and_then(|q| q.get(key))
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
    }

    fn quant_u64(&self, key: &str) -> Option<i64> {
        self.quantization()
            .and_then(|q| q.get(key))
            .and_then(Value::as_i64)
    }

    /// GPTQ checkpoint format is v2 (`checkpoint_format: "gptq_v2"`).
    fn gptq_v2(&self) -> bool {
        self.quant_str("checkpoint_format").as_deref() == Some("gptq_v2")
    }

    /// compressed-tensors `format`, if the checkpoint is compressed-tensors.
    pub fn ct_format(&self) -> Option<String> {
        if self.quant_str("quant_method").as_deref() != Some("compressed-tensors") {
            return None;
        }
        self.quant_str("format")
    }

    /// The `weight_block_size` of a block-FP8 config.
    fn fp8_block(&self) -> Option<(usize, usize)> {
        let b = self.quantization()?.get("weight_block_size")?.as_array()?;
        let r = usize::try_from(b.first()?.as_u64()?).ok()?;
        let c = usize::try_from(b.get(1)?.as_u64()?).ok()?;
        (r > 0 && c > 0).then_some((r, c))
    }
}

/// What [`recognize`] found.
#[derive(Debug, Clone, Default)]
pub struct QuantReport {
    /// Quantized layers, in tensor order.
    pub layers: Vec<QuantLayer>,
    /// The quantization method named by the configs, if any.
    pub config_method: Option<String>,
}

impl QuantReport {
    /// Names of every tensor some layer consumes.
    pub fn consumed(&self) -> HashSet<&str> {
        self.layers
            .iter()
            .flat_map(|l| l.tensors.iter().map(String::as_str))
            .collect()
    }

    /// Per scheme: (layers, dense weights, stored bytes).
    pub fn totals(&self) -> BTreeMap<Scheme, (usize, u64, u64)> {
        let mut t = BTreeMap::new();
        for l in &self.layers {
            let e = t.entry(l.scheme).or_insert((0, 0, 0));
            e.0 += 1;
            e.1 += l.elements();
            e.2 += l.stored_bytes;
        }
        t
    }
}

struct Index<'a> {
    by_name: HashMap<&'a str, &'a TensorMeta>,
}

impl<'a> Index<'a> {
    fn get(&self, name: &str) -> Option<&'a TensorMeta> {
        self.by_name.get(name).copied()
    }
}

fn is_f8(d: Dtype) -> bool {
    matches!(
        d,
        Dtype::F8_E4M3 | Dtype::F8_E5M2 | Dtype::F8_E4M3FNUZ | Dtype::F8_E5M2FNUZ
    )
}

fn dim(t: &TensorMeta, i: usize) -> usize {
    t.shape.get(i).copied().unwrap_or(0)
}

/// The scale grouping of a `[rows, cols]` weight from its scale's shape.
pub(crate) fn grouping_of(rows: usize, cols: usize, scale: &TensorMeta) -> Grouping {
    let s = &scale.shape;
    let n: u64 = scale.elements();
    if n <= 1 {
        return Grouping::Tensor;
    }
    match s.as_slice() {
        [r, 1] | [r] if *r == rows => Grouping::Channel,
        [r, g] if *r == rows && *g > 0 => Grouping::Group(cols.div_ceil(*g)),
        _ => Grouping::Tensor,
    }
}

/// Recognises the quantized layers among `tensors`.
pub fn recognize(tensors: &[TensorMeta], configs: &Configs) -> QuantReport {
    let idx = Index {
        by_name: tensors.iter().map(|t| (t.name.as_str(), t)).collect(),
    };
    let mut layers = Vec::new();
    let mut taken: HashSet<String> = HashSet::new();
    let ct = configs.ct_format();
    for t in tensors {
        if taken.contains(&t.name) {
            continue;
        }
        if let Some(layer) = anchor(t, &idx, configs, ct.as_deref()) {
            taken.extend(layer.tensors.iter().cloned());
            layers.push(layer);
        }
    }
    let config_method = configs
        .quant_str("quant_method")
        .or_else(|| {
            configs
                .hf_quant_config
                .as_ref()
                .and_then(|h| h.get("quantization"))
                .and_then(|q| q.get("quant_algo"))
                .and_then(Value::as_str)
                .map(|s| format!("modelopt {s}"))
        })
        .or_else(|| configs.quantize_config.as_ref().map(|_| "gptq".to_owned()));
    QuantReport {
        layers,
        config_method,
    }
}

// One call site per scheme, each naming every field: a struct literal in
// disguise, kept as a function to collect the parts' sizes.
#[allow(clippy::too_many_arguments)]
fn layer(
    idx: &Index<'_>,
    prefix: &str,
    output: String,
    scheme: Scheme,
    bits: u32,
    grouping: Grouping,
    shape: Vec<usize>,
    parts: &[&str],
) -> QuantLayer {
    let mut tensors = Vec::new();
    let mut stored = 0;
    for p in parts {
        let name = if p.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}{p}")
        };
        if let Some(t) = idx.get(&name) {
            stored += t.bytes();
            tensors.push(name);
        }
    }
    QuantLayer {
        prefix: prefix.to_owned(),
        output,
        scheme,
        bits,
        grouping,
        shape,
        tensors,
        stored_bytes: stored,
        quant_state: None,
    }
}

fn anchor(t: &TensorMeta, idx: &Index<'_>, cfg: &Configs, ct: Option<&str>) -> Option<QuantLayer> {
    let name = t.name.as_str();
    if let Some(p) = name.strip_suffix(".qweight") {
        return gptq_or_awq(p, t, idx, cfg);
    }
    if let Some(p) = name.strip_suffix(".weight_scale_inv") {
        let w = idx.get(&format!("{p}.weight"))?;
        if !is_f8(w.dtype) || w.shape.len() != 2 || t.shape.len() != 2 {
            return None;
        }
        let (rows, cols) = (dim(w, 0), dim(w, 1));
        let (br, bc) = cfg.fp8_block().unwrap_or_else(|| {
            let (sr, sc) = (dim(t, 0).max(1), dim(t, 1).max(1));
            // DeepSeek's 128x128 when it fits the grid, else the smallest
            // block that does.
            if rows.div_ceil(128) == sr && cols.div_ceil(128) == sc {
                (128, 128)
            } else {
                (rows.div_ceil(sr), cols.div_ceil(sc))
            }
        });
        return Some(layer(
            idx,
            p,
            format!("{p}.weight"),
            Scheme::Fp8Block,
            8,
            Grouping::Block(br, bc),
            w.shape.clone(),
            &[".weight", ".weight_scale_inv"],
        ));
    }
    if let Some(p) = name.strip_suffix(".weight_packed") {
        let scale = idx.get(&format!("{p}.weight_scale"))?;
        let out = format!("{p}.weight");
        let parts: &[&str] = &[
            ".weight_packed",
            ".weight_scale",
            ".weight_zero_point",
            ".weight_global_scale",
            ".weight_shape",
            ".weight_g_idx",
        ];
        if t.dtype == Dtype::I32 {
            // Logical shape: weight_shape holds it; shapes give rows and
            // (packed cols * 32 / bits) — bits from the config, else 4.
            let bits = ct_bits(cfg).unwrap_or(4);
            let rows = dim(t, 0);
            // (Source::recognize_with replaces both with weight_shape's.)
            let cols = dim(t, 1).saturating_mul(32 / bits.max(1) as usize);
            let g = grouping_of(rows, cols, scale);
            return Some(layer(
                idx,
                p,
                out,
                Scheme::CtPackQuantized,
                bits,
                g,
                vec![rows, cols],
                parts,
            ));
        }
        if t.dtype == Dtype::U8 && t.shape.len() == 2 {
            let rows = dim(t, 0);
            let cols = dim(t, 1).saturating_mul(2);
            let nv = scale.dtype == Dtype::F8_E4M3
                || idx.get(&format!("{p}.weight_global_scale")).is_some()
                || ct == Some("nvfp4-pack-quantized");
            let (scheme, g) = if nv && ct != Some("mxfp4-pack-quantized") {
                (Scheme::CtNvfp4, Grouping::Group(16))
            } else {
                (Scheme::CtMxfp4, Grouping::Group(32))
            };
            return Some(layer(idx, p, out, scheme, 4, g, vec![rows, cols], parts));
        }
        return None;
    }
    if let Some(p) = name.strip_suffix(".weight_scale") {
        let w = idx.get(&format!("{p}.weight"))?;
        let out = format!("{p}.weight");
        if w.shape.len() != 2 {
            return None;
        }
        let (rows, cols) = (dim(w, 0), dim(w, 1));
        if w.dtype == Dtype::U8 && t.dtype == Dtype::F8_E4M3 {
            return Some(layer(
                idx,
                p,
                out,
                Scheme::ModeloptNvfp4,
                4,
                Grouping::Group(16),
                vec![rows, cols.saturating_mul(2)],
                &[".weight", ".weight_scale", ".weight_scale_2"],
            ));
        }
        if is_f8(w.dtype) {
            let g = if t.shape.len() == 2 && dim(t, 0) != rows && dim(t, 0) > 0 && dim(t, 1) > 0 {
                Grouping::Block(rows.div_ceil(dim(t, 0)), cols.div_ceil(dim(t, 1)))
            } else {
                grouping_of(rows, cols, t)
            };
            return Some(layer(
                idx,
                p,
                out,
                Scheme::Fp8Scaled,
                8,
                g,
                w.shape.clone(),
                &[".weight", ".weight_scale", ".weight_zero_point"],
            ));
        }
        if w.dtype == Dtype::I8 {
            let g = grouping_of(rows, cols, t);
            return Some(layer(
                idx,
                p,
                out,
                Scheme::IntScaled,
                8,
                g,
                w.shape.clone(),
                &[
                    ".weight",
                    ".weight_scale",
                    ".weight_zero_point",
                    ".weight_g_idx",
                ],
            ));
        }
        return None;
    }
    if let Some(p) = name.strip_suffix("_blocks") {
        let scales = idx.get(&format!("{p}_scales"))?;
        let n = t.shape.len();
        if t.dtype != Dtype::U8 || n < 2 || t.shape.last() != Some(&16) {
            return None;
        }
        let mut shape = t.shape[..n - 2].to_vec();
        shape.push(dim(t, n - 2).saturating_mul(32));
        let _ = scales;
        return Some(layer(
            idx,
            p,
            p.to_owned(),
            Scheme::Mxfp4GptOss,
            4,
            Grouping::Group(32),
            shape,
            &["_blocks", "_scales"],
        ));
    }
    if let Some(p) = name.strip_suffix(".SCB") {
        let w = idx.get(&format!("{p}.weight"))?;
        if w.dtype != Dtype::I8 || w.shape.len() != 2 {
            return None;
        }
        return Some(layer(
            idx,
            p,
            format!("{p}.weight"),
            Scheme::BnbInt8,
            8,
            Grouping::Channel,
            w.shape.clone(),
            &[".weight", ".SCB", ".weight_format"],
        ));
    }
    for (suffix, scheme) in [
        (".weight.quant_state.bitsandbytes__nf4", Scheme::BnbNf4),
        (".weight.quant_state.bitsandbytes__fp4", Scheme::BnbFp4),
    ] {
        if let Some(p) = name.strip_suffix(suffix) {
            return bnb4(p, t, idx, scheme);
        }
    }
    None
}

/// The bytes of a bitsandbytes quant_state tensor, parsed (set by the
/// reader: recognition sees only headers, so the caller fills it).
fn bnb4(p: &str, _state: &TensorMeta, idx: &Index<'_>, scheme: Scheme) -> Option<QuantLayer> {
    let w = idx.get(&format!("{p}.weight"))?;
    let absmax = idx.get(&format!("{p}.weight.absmax"))?;
    let n = w.elements().saturating_mul(2);
    let blocks = absmax.elements().max(1);
    let block = n.div_ceil(blocks) as usize;
    let state_suffix = if scheme == Scheme::BnbNf4 {
        ".weight.quant_state.bitsandbytes__nf4"
    } else {
        ".weight.quant_state.bitsandbytes__fp4"
    };
    Some(layer(
        idx,
        p,
        format!("{p}.weight"),
        scheme,
        4,
        Grouping::Group(block),
        // The real shape is in the quant_state JSON; the reader replaces this.
        vec![n as usize],
        &[
            ".weight",
            ".weight.absmax",
            ".weight.quant_map",
            ".weight.nested_absmax",
            ".weight.nested_quant_map",
            state_suffix,
        ],
    ))
}

fn ct_weights(cfg: &Configs) -> Option<&Value> {
    let groups = cfg.quantization()?.get("config_groups")?.as_object()?;
    groups
        .values()
        .find_map(|g| g.get("weights").filter(|w| w.is_object()))
}

/// `num_bits` as configured (0 when not a width at all): never replaced by
/// a default, which would unpack another width's fields as wrong weights.
fn ct_bits(cfg: &Configs) -> Option<u32> {
    let b = ct_weights(cfg)?.get("num_bits")?;
    Some(
        b.as_u64()
            .and_then(|b| u32::try_from(b).ok())
            .filter(|b| (1..=32).contains(b))
            .unwrap_or(0),
    )
}

fn gptq_or_awq(p: &str, q: &TensorMeta, idx: &Index<'_>, cfg: &Configs) -> Option<QuantLayer> {
    let scales = idx.get(&format!("{p}.scales"))?;
    if q.dtype != Dtype::I32 || q.shape.len() != 2 || scales.shape.len() != 2 {
        return None;
    }
    let out_features = dim(scales, 1);
    let groups = dim(scales, 0).max(1);
    let method = cfg.quant_str("quant_method");
    let awq = method.as_deref() == Some("awq")
        || (method.is_none()
            && dim(q, 1) != out_features
            && dim(q, 1).saturating_mul(8) == out_features);
    let parts: &[&str] = &[".qweight", ".qzeros", ".scales", ".g_idx"];
    if awq {
        let bits = cfg
            .quant_u64("bits")
            .or_else(|| cfg.quant_u64("w_bit"))
            .map_or(4, |b| u32::try_from(b).unwrap_or(0));
        let in_features = dim(q, 0);
        let g = Grouping::Group(in_features.div_ceil(groups));
        return Some(layer(
            idx,
            p,
            format!("{p}.weight"),
            Scheme::AwqGemm,
            bits,
            g,
            vec![out_features, in_features],
            parts,
        ));
    }
    // The configured width as given, even one GPTQ never packs: reading a
    // 5-bit checkpoint as 4-bit would write wrong weights, so dequantizing
    // refuses what it cannot unpack. Out-of-range values become 0 (refused).
    let bits = cfg.quant_u64("bits").map_or(4, |b| {
        u32::try_from(b)
            .ok()
            .filter(|b| (1..=32).contains(b))
            .unwrap_or(0)
    });
    let in_features = dim(q, 0).saturating_mul(32) / bits.max(1) as usize;
    let g = match cfg.quant_u64("group_size") {
        Some(-1) => Grouping::Channel,
        Some(n) if n > 0 => Grouping::Group(n as usize),
        _ => Grouping::Group(in_features.div_ceil(groups)),
    };
    let scheme = if cfg.gptq_v2() {
        Scheme::GptqV2
    } else {
        Scheme::GptqV1
    };
    Some(layer(
        idx,
        p,
        format!("{p}.weight"),
        scheme,
        bits,
        g,
        vec![out_features, in_features],
        parts,
    ))
}
