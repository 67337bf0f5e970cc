//! Sharding plans: an ordered list of (name pattern → rule), and an
//! optional pipeline-stage filter.
//!
//! # JSON schema
//!
//! ```json
//! {
//!   "rules": [
//!     {"pattern": "*.q_proj.weight", "rule": {"shard": 0}},
//!     {"regex": "\\.o_proj\\.weight$", "rule": {"shard": -1}},
//!     {"pattern": "*rotary_emb*", "rule": "skip"},
//!     {"pattern": "*", "rule": "replicate"}
//!   ],
//!   "default": "replicate",
//!   "pipeline": {"stages": 2, "layer_regex": "(?:^|\\.)(?:layers|h|blocks)\\.(\\d+)\\.", "non_layer": "keep"}
//! }
//! ```
//!
//! - `rules` (required, may be empty): tried in order, the first whose
//!   `pattern` (a glob over the whole name; `*` also matches `.`) or `regex`
//!   (searched, not anchored unless written so) matches decides. A rule is
//!   `"replicate"`, `"skip"`, `{"shard": DIM}` (negative dims count from the
//!   end) or, from Python only, `{"callable": INDEX}`.
//! - `default` (optional, `"replicate"` unless given): the rule of names no
//!   pattern matches.
//! - `pipeline` (optional): with `"stages": P`, the world of `W` ranks is
//!   `P` pipeline stages of `T = W / P` tensor-parallel ranks
//!   (`stage = rank / T`, tensor-parallel rank `rank % T`); shard rules split
//!   over the `T` ranks of a stage, and stage `s` keeps the layers of block
//!   `s` of `torch.tensor_split(range(num_layers), P)`, where `num_layers`
//!   is given or one more than the largest layer index in the checkpoint.
//!   With `"layers": [START, STOP]` instead, every rank keeps layers
//!   `START <= i < STOP` (for launchers that assign stages themselves).
//!   A layer index is the first capture group of `layer_regex` (default:
//!   `layers.N.`, `h.N.`, `blocks.N.`); names without one follow
//!   `non_layer`: `"keep"` (every stage, the default), `"skip"`, `"first"`
//!   (stage 0 only) or `"last"` (the last stage only).
//!
//! # Uneven sizes
//!
//! `shard(dim)` gives rank `r` block `r` of `world_size` contiguous blocks,
//! as `torch.tensor_split(t, world_size, dim)[r]` does: with `n = size`,
//! the first `n % world_size` blocks have `n / world_size + 1` elements, the
//! rest `n / world_size` (so a dimension smaller than the world size gives
//! some ranks an empty block).

use globset::{GlobBuilder, GlobMatcher};
use regex::Regex;
use serde::Deserialize;

use crate::ParallelError;

/// The default layer-index pattern: `layers.N.`, `h.N.` or `blocks.N.`.
pub const DEFAULT_LAYER_REGEX: &str = r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.";

/// Bounds of block `index` of `parts` blocks of `size` elements, as
/// `torch.tensor_split` cuts them: `(start, stop)`.
///
/// `parts` must be non-zero; `index >= parts` gives an empty block at the end.
pub fn tensor_split_block(size: usize, parts: usize, index: usize) -> (usize, usize) {
    if parts == 0 || index >= parts {
        return (size, size);
    }
    let q = size / parts;
    let rem = size % parts;
    let start = index * q + index.min(rem);
    let len = q + usize::from(index < rem);
    (start, start + len)
}

/// What a rank does with one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Block `rank` of `world_size` along this dimension (negative: from the end).
    Shard(i64),
    /// The whole tensor.
    Replicate,
    /// Nothing.
    Skip,
    /// Decided by caller-supplied code (the Python bindings' callables),
    /// identified by its index.
    Callable(usize),
}

/// A tensor-name pattern.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// A glob over the whole name.
    Glob(String, GlobMatcher),
    /// A regular expression, searched anywhere in the name.
    Regex(Regex),
}

impl Pattern {
    /// A glob; `*` matches any characters, dots included.
    pub fn glob(pattern: &str) -> Result<Self, ParallelError> {
        let g = GlobBuilder::new(pattern)
            .literal_separator(false)
            .build()
            .map_err(|e| ParallelError::plan(format!("bad glob {pattern:?}: {e}")))?;
        Ok(Pattern::Glob(pattern.to_owned(), g.compile_matcher()))
    }

    /// A regular expression (size-limited).
    pub fn regex(pattern: &str) -> Result<Self, ParallelError> {
        Ok(Pattern::Regex(compile_regex(pattern)?))
    }

    /// Whether `name` matches.
    pub fn is_match(&self, name: &str) -> bool {
        match self {
            Pattern::Glob(_, g) => g.is_match(name),
            Pattern::Regex(r) => r.is_match(name),
        }
    }
}

fn compile_regex(pattern: &str) -> Result<Regex, ParallelError> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| ParallelError::plan(format!("bad regex {pattern:?}: {e}")))
}

/// Which names a pipeline stage keeps when they carry no layer index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NonLayer {
    /// Every stage keeps them.
    #[default]
    Keep,
    /// No stage keeps them.
    Skip,
    /// Stage 0 only.
    First,
    /// The last stage only.
    Last,
}

/// How layers are assigned to stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stages {
    /// `P` stages; layers split with `tensor_split` over `num_layers`
    /// (or the checkpoint's largest index + 1).
    Split {
        /// Number of stages `P`.
        stages: usize,
        /// Total layer count, when given.
        num_layers: Option<usize>,
    },
    /// Every rank keeps layers `start..stop`.
    Range(usize, usize),
}

/// The pipeline-stage filter.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Stage assignment.
    pub stages: Stages,
    /// Layer-index pattern (first capture group).
    pub layer_regex: Regex,
    /// Names without a layer index.
    pub non_layer: NonLayer,
}

impl Pipeline {
    /// The layer index of `name`, if it has one.
    pub fn layer_of(&self, name: &str) -> Option<usize> {
        let caps = self.layer_regex.captures(name)?;
        caps.get(1)?.as_str().parse().ok()
    }
}

/// An ordered list of (pattern → rule), a default rule and an optional
/// pipeline filter. See the [module documentation](self) for the JSON form.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Rules, first match wins.
    pub rules: Vec<(Pattern, Rule)>,
    /// Rule of names no pattern matches.
    pub default: Rule,
    /// Pipeline-stage filter.
    pub pipeline: Option<Pipeline>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanJson {
    rules: Vec<RuleJson>,
    #[serde(default)]
    default: Option<RuleValue>,
    #[serde(default)]
    pipeline: Option<PipelineJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleJson {
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    rule: RuleValue,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RuleValue {
    Word(String),
    Shard { shard: i64 },
    Callable { callable: usize },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineJson {
    #[serde(default)]
    stages: Option<usize>,
    #[serde(default)]
    num_layers: Option<usize>,
    #[serde(default)]
    layers: Option<(usize, usize)>,
    #[serde(default)]
    layer_regex: Option<String>,
    #[serde(default)]
    non_layer: NonLayer,
}

impl RuleValue {
    fn into_rule(self) -> Result<Rule, ParallelError> {
        match self {
            RuleValue::Word(w) => match w.as_str() {
                "replicate" => Ok(Rule::Replicate),
                "skip" => Ok(Rule::Skip),
                other => Err(ParallelError::plan(format!(
                    "unknown rule {other:?} (expected \"replicate\", \"skip\", {{\"shard\": DIM}})"
                ))),
            },
            RuleValue::Shard { shard } => Ok(Rule::Shard(shard)),
            RuleValue::Callable { callable } => Ok(Rule::Callable(callable)),
        }
    }
}

/// A rank's share of one tensor, as decided by a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    /// Not loaded.
    Skip,
    /// The whole tensor.
    Whole,
    /// Elements `start..stop` along `dim`, all of every other dimension.
    Block {
        /// The dimension (non-negative).
        dim: usize,
        /// First index.
        start: usize,
        /// One past the last index.
        stop: usize,
    },
}

impl Plan {
    /// Parses the JSON form.
    pub fn from_json(text: &str) -> Result<Self, ParallelError> {
        let raw: PlanJson = serde_json::from_str(text)
            .map_err(|e| ParallelError::plan(format!("plan JSON: {e}")))?;
        let mut rules = Vec::with_capacity(raw.rules.len());
        for r in raw.rules {
            let pattern = match (r.pattern, r.regex) {
                (Some(g), None) => Pattern::glob(&g)?,
                (None, Some(re)) => Pattern::regex(&re)?,
                _ => {
                    return Err(ParallelError::plan(
                        "each rule needs exactly one of \"pattern\" (glob) or \"regex\"",
                    ))
                }
            };
            rules.push((pattern, r.rule.into_rule()?));
        }
        let default = match raw.default {
            Some(v) => v.into_rule()?,
            None => Rule::Replicate,
        };
        let pipeline = match raw.pipeline {
            None => None,
            Some(p) => {
                let stages = match (p.stages, p.layers) {
                    (Some(0), _) => {
                        return Err(ParallelError::plan("pipeline stages must be at least 1"))
                    }
                    (Some(stages), None) => Stages::Split {
                        stages,
                        num_layers: p.num_layers,
                    },
                    (None, Some((a, b))) if a <= b => Stages::Range(a, b),
                    (None, Some((a, b))) => {
                        return Err(ParallelError::plan(format!(
                            "pipeline layers [{a}, {b}] is an empty range"
                        )))
                    }
                    _ => {
                        return Err(ParallelError::plan(
                            "pipeline needs exactly one of \"stages\" or \"layers\"",
                        ))
                    }
                };
                let re = p.layer_regex.as_deref().unwrap_or(DEFAULT_LAYER_REGEX);
                let layer_regex = compile_regex(re)?;
                if layer_regex.captures_len() < 2 {
                    return Err(ParallelError::plan(format!(
                        "layer_regex {re:?} has no capture group for the layer index"
                    )));
                }
                Some(Pipeline {
                    stages,
                    layer_regex,
                    non_layer: p.non_layer,
                })
            }
        };
        Ok(Plan {
            rules,
            default,
            pipeline,
        })
    }

    /// A plan that gives every rank every tensor.
    pub fn replicate_all() -> Self {
        Plan {
            rules: Vec::new(),
            default: Rule::Replicate,
            pipeline: None,
        }
    }

    /// The rule of `name` (first matching pattern, else the default).
    pub fn rule_for(&self, name: &str) -> Rule {
        self.rules
            .iter()
            .find(|(p, _)| p.is_match(name))
            .map(|(_, r)| *r)
            .unwrap_or(self.default)
    }

    /// Splits `(rank, world_size)` into `(stage, stages, tp_rank, tp_size)`.
    pub fn topology(
        &self,
        rank: usize,
        world_size: usize,
    ) -> Result<(usize, usize, usize, usize), ParallelError> {
        if world_size == 0 || rank >= world_size {
            return Err(ParallelError::BadRank { rank, world_size });
        }
        match self.pipeline.as_ref().map(|p| &p.stages) {
            Some(Stages::Split { stages, .. }) => {
                let stages = *stages;
                if !world_size.is_multiple_of(stages) {
                    return Err(ParallelError::plan(format!(
                        "world size {world_size} is not a multiple of {stages} pipeline stages"
                    )));
                }
                let tp = world_size / stages;
                Ok((rank / tp, stages, rank % tp, tp))
            }
            _ => Ok((0, 1, rank, world_size)),
        }
    }

    /// Decides every tensor of a checkpoint for one rank. `tensors` are
    /// `(name, shape)`; `callable` resolves [`Rule::Callable`] rules (it
    /// gets the index, name, shape, tensor-parallel rank and size, and
    /// returns a concrete rule). Returns one assignment per tensor.
    pub fn assign<'a, F>(
        &self,
        tensors: &[(&'a str, &'a [usize])],
        rank: usize,
        world_size: usize,
        mut callable: F,
    ) -> Result<Vec<Assignment>, ParallelError>
    where
        F: FnMut(usize, &str, &[usize], usize, usize) -> Result<Rule, ParallelError>,
    {
        let (stage, stages, tp_rank, tp_size) = self.topology(rank, world_size)?;
        let layer_range = self.pipeline.as_ref().map(|p| match p.stages {
            Stages::Range(a, b) => (a, b),
            Stages::Split { num_layers, .. } => {
                let n = match num_layers {
                    Some(n) => n,
                    None => tensors
                        .iter()
                        .filter_map(|(name, _)| p.layer_of(name))
                        .max()
                        .map_or(0, |m| m.saturating_add(1)),
                };
                tensor_split_block(n, stages, stage)
            }
        });
        let mut out = Vec::with_capacity(tensors.len());
        for (name, shape) in tensors {
            if let (Some(p), Some((a, b))) = (&self.pipeline, layer_range) {
                let keep = match p.layer_of(name) {
                    Some(i) => a <= i && i < b,
                    None => match p.non_layer {
                        NonLayer::Keep => true,
                        NonLayer::Skip => false,
                        NonLayer::First => stage == 0,
                        NonLayer::Last => stage + 1 == stages,
                    },
                };
                if !keep {
                    out.push(Assignment::Skip);
                    continue;
                }
            }
            let mut rule = self.rule_for(name);
            if let Rule::Callable(i) = rule {
                rule = callable(i, name, shape, tp_rank, tp_size)?;
                if let Rule::Callable(_) = rule {
                    return Err(ParallelError::plan(format!(
                        "callable rule {i} for {name:?} returned another callable"
                    )));
                }
            }
            out.push(resolve(rule, name, shape, tp_rank, tp_size)?);
        }
        Ok(out)
    }
}

/// The assignment of one concrete rule for tensor-parallel rank `tp_rank`
/// of `tp_size`.
pub fn resolve(
    rule: Rule,
    name: &str,
    shape: &[usize],
    tp_rank: usize,
    tp_size: usize,
) -> Result<Assignment, ParallelError> {
    match rule {
        Rule::Skip => Ok(Assignment::Skip),
        Rule::Replicate => Ok(Assignment::Whole),
        Rule::Callable(i) => Err(ParallelError::plan(format!(
            "rule of {name:?} is callable {i}, which only the Python API can run"
        ))),
        Rule::Shard(d) => {
            let ndim = shape.len() as i64;
            let dim = if d < 0 { d + ndim } else { d };
            if dim < 0 || dim >= ndim {
                return Err(ParallelError::BadDim {
                    tensor: name.to_owned(),
                    shape: shape.to_vec(),
                    dim: d,
                });
            }
            let dim = dim as usize;
            let size = shape.get(dim).copied().unwrap_or(0);
            let (start, stop) = tensor_split_block(size, tp_size, tp_rank);
            Ok(Assignment::Block { dim, start, stop })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_in_order() {
        let p = Plan::from_json(
            r#"{"rules": [{"pattern": "*.q_proj.weight", "rule": {"shard": 0}},
                          {"regex": "o_proj", "rule": {"shard": -1}},
                          {"pattern": "*norm*", "rule": "skip"}],
                "default": "replicate"}"#,
        )
        .unwrap();
        assert_eq!(
            p.rule_for("model.layers.0.self_attn.q_proj.weight"),
            Rule::Shard(0)
        );
        assert_eq!(
            p.rule_for("model.layers.0.self_attn.o_proj.weight"),
            Rule::Shard(-1)
        );
        assert_eq!(p.rule_for("model.norm.weight"), Rule::Skip);
        assert_eq!(p.rule_for("lm_head.weight"), Rule::Replicate);
    }

    #[test]
    fn bad_plans_name_the_fault() {
        for (text, needle) in [
            (r#"{"rules": [{"pattern": "a[", "rule": "skip"}]}"#, "a["),
            (r#"{"rules": [{"regex": "(", "rule": "skip"}]}"#, "("),
            (
                r#"{"rules": [{"pattern": "a", "rule": "explode"}]}"#,
                "explode",
            ),
            (r#"{"rules": [{"rule": "skip"}]}"#, "exactly one"),
            (r#"{"rules": [], "pipeline": {"stages": 0}}"#, "at least 1"),
            (r#"{"rules": [], "pipeline": {"layers": [3, 1]}}"#, "[3, 1]"),
            (
                r#"{"rules": [], "pipeline": {"stages": 2, "layer_regex": "x"}}"#,
                "capture",
            ),
            (r#"{"rules": [], "bogus": 1}"#, "bogus"),
            ("[", "plan JSON"),
        ] {
            let e = Plan::from_json(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn pipeline_stages_split_layers() {
        let p = Plan::from_json(
            r#"{"rules": [{"pattern": "*.w", "rule": {"shard": 0}}],
                "pipeline": {"stages": 2, "non_layer": "first"}}"#,
        )
        .unwrap();
        let shape = [4usize, 2];
        let names = ["emb", "layers.0.w", "h.1.w", "blocks.2.w"];
        let tensors: Vec<(&str, &[usize])> = names.iter().map(|n| (*n, &shape[..])).collect();
        let none = |_: usize, _: &str, _: &[usize], _: usize, _: usize| Ok(Rule::Skip);
        // world 4 = 2 stages x 2 tp ranks; 3 layers split [0,2) [2,3).
        let a = p.assign(&tensors, 1, 4, none).unwrap();
        assert_eq!(a[0], Assignment::Whole);
        assert_eq!(
            a[1],
            Assignment::Block {
                dim: 0,
                start: 2,
                stop: 4
            }
        );
        assert_eq!(a[3], Assignment::Skip);
        let a = p.assign(&tensors, 2, 4, none).unwrap();
        assert_eq!(a[0], Assignment::Skip);
        assert_eq!(a[1], Assignment::Skip);
        assert_eq!(
            a[3],
            Assignment::Block {
                dim: 0,
                start: 0,
                stop: 2
            }
        );
        assert!(p.assign(&tensors, 0, 3, none).is_err());
        assert!(p.assign(&tensors, 4, 4, none).is_err());
    }

    #[test]
    fn shard_dims_are_checked() {
        let e = resolve(Rule::Shard(2), "x", &[2, 3], 0, 2).unwrap_err();
        assert!(e.to_string().contains("dimension 2"));
        assert_eq!(
            resolve(Rule::Shard(-1), "x", &[2, 3], 1, 2).unwrap(),
            Assignment::Block {
                dim: 1,
                start: 2,
                stop: 3
            }
        );
    }
}
