//! Select and plan, the fourth step of the pipeline: open each input, pick
//! its tensors (the selected subtree of a torch pickle, or the arrays of a
//! NumPy file), name them, refuse what cannot be converted faithfully, and
//! drop identical views of one storage as aliases. The result is a [`Plan`];
//! [`Plan::output_bytes`] bounds what it will write before anything is.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::dtypes::swap_unit;
use crate::error::ConvertError;
use crate::options::{default_max_output_size, Options};
use crate::recognise;
use crate::report::Report;
use crate::sources::{Checkpoint, Format};
use crate::view::TensorRef;

/// One output tensor: its source and where its bytes come from.
#[derive(Debug, Clone)]
pub struct PlannedTensor {
    /// Name in the output.
    pub name: String,
    /// Index of the input file.
    pub input: usize,
    /// The view.
    pub tensor: TensorRef,
}

/// What [`plan`] decided: the opened inputs, the output tensors, the report
/// so far and the metadata to write.
pub struct Plan {
    /// The opened inputs, in the order of [`PlannedTensor::input`].
    pub checkpoints: Vec<Checkpoint>,
    /// The output tensors, aliases of another dropped.
    pub tensors: Vec<PlannedTensor>,
    /// The report so far (inputs, format, chosen key, aliases, values).
    pub report: Report,
    /// The metadata to write (`format`, aliases, `tensorseal.values`).
    pub metadata: BTreeMap<String, String>,
}

/// Opens the inputs and plans the output tensors (selection, aliases).
pub fn plan(inputs: &[PathBuf], opts: &Options) -> Result<Plan, ConvertError> {
    let mut cks = Vec::new();
    let mut planned: Vec<PlannedTensor> = Vec::new();
    let mut report = Report {
        inputs: inputs.to_vec(),
        ..Report::default()
    };
    let mut extras = serde_json::Map::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, path) in inputs.iter().enumerate() {
        let mut ck = Checkpoint::open(path)?;
        report.format.get_or_insert(ck.format());
        let mut found: Vec<(String, Result<TensorRef, String>)> = Vec::new();
        match ck.format() {
            Format::Npy | Format::Npz => {
                for (n, t) in ck.npy_tensors() {
                    let n = if n.is_empty() {
                        path.file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_else(|| "array".into())
                    } else {
                        n.clone()
                    };
                    found.push((n, Ok(t.clone())));
                }
            }
            Format::TorchZip | Format::TorchLegacy => {
                let sel = recognise::select(ck.root(), opts.select.as_deref(), opts.flatten)
                    .map_err(|why| ConvertError::Select {
                        path: path.clone(),
                        select: opts.select.clone().unwrap_or_default(),
                        why,
                    })?;
                if report.chosen.is_none() {
                    report.chosen = sel.chosen.clone();
                }
                let mut inline = Vec::new();
                recognise::collect(
                    sel.value,
                    ck.big_endian(),
                    &mut found,
                    &mut extras,
                    &mut inline,
                );
                if found.is_empty() {
                    if let Some(t) = recognise::tensor_of(sel.value, ck.big_endian()) {
                        found.push(("tensor".into(), t));
                    }
                }
                for (key, bytes) in inline {
                    ck.add_inline(key, bytes);
                }
                if ck.big_endian() {
                    check_swap_units(path, &found)?;
                }
            }
        }
        for (name, t) in found {
            let name = if name.is_empty() {
                "tensor".to_owned()
            } else {
                name
            };
            let t = t.map_err(|why| ConvertError::Tensor {
                path: path.clone(),
                name: name.clone(),
                why,
            })?;
            if t.byte_len().is_none() {
                return Err(ConvertError::Tensor {
                    path: path.clone(),
                    name,
                    why: format!("shape {:?} of {} overflows", t.shape, t.dtype),
                });
            }
            if names.insert(name.clone(), i).is_some() {
                return Err(ConvertError::Tensor {
                    path: path.clone(),
                    name,
                    why: "appears twice (in two shards or two paths)".into(),
                });
            }
            planned.push(PlannedTensor {
                name,
                input: i,
                tensor: t,
            });
        }
        cks.push(ck);
    }
    if planned.is_empty() {
        return Err(ConvertError::format(
            inputs
                .first()
                .map(PathBuf::as_path)
                .unwrap_or(Path::new("")),
            "no tensors found (use --select or --flatten for nested checkpoints)",
        ));
    }
    // Identical views of one storage: keep the first name in sorted order.
    let mut groups: HashMap<(usize, TensorRef), Vec<usize>> = HashMap::new();
    for (i, p) in planned.iter().enumerate() {
        groups
            .entry((p.input, p.tensor.clone()))
            .or_default()
            .push(i);
    }
    let mut drop = vec![false; planned.len()];
    let mut aliases = Vec::new();
    for idx in groups.values() {
        if idx.len() < 2 {
            continue;
        }
        let mut sorted = idx.clone();
        sorted.sort_by(|&a, &b| planned[a].name.cmp(&planned[b].name));
        let keep = sorted[0];
        for &d in &sorted[1..] {
            drop[d] = true;
            aliases.push((planned[d].name.clone(), planned[keep].name.clone()));
        }
    }
    aliases.sort();
    let mut keep_iter = drop.iter();
    planned.retain(|_| !keep_iter.next().copied().unwrap_or(false));
    let mut meta = BTreeMap::new();
    meta.insert("format".to_owned(), "pt".to_owned());
    for (a, k) in &aliases {
        meta.insert(a.clone(), k.clone());
    }
    if !extras.is_empty() {
        report.values = extras.len();
        meta.insert(
            "tensorseal.values".to_owned(),
            serde_json::Value::Object(extras).to_string(),
        );
    }
    report.aliases = aliases;
    report.tensors = planned.len();
    Ok(Plan {
        checkpoints: cks,
        tensors: planned,
        report,
        metadata: meta,
    })
}

/// In a big-endian torch zip, torch swaps each storage once, in the units of
/// the first tensor that loads it; a storage viewed with two different swap
/// units cannot be converted faithfully.
fn check_swap_units(
    path: &Path,
    found: &[(String, Result<TensorRef, String>)],
) -> Result<(), ConvertError> {
    let mut units: HashMap<String, (usize, &str)> = HashMap::new();
    for (name, t) in found {
        let Ok(t) = t else { continue };
        if !t.big_endian || t.storage.starts_with("numpy:") {
            continue;
        }
        let Some(u) = swap_unit(t.dtype) else {
            continue;
        };
        let (first, other) = *units
            .entry(t.storage.to_ascii_lowercase())
            .or_insert((u, name.as_str()));
        if first != u {
            return Err(ConvertError::Tensor {
                path: path.to_owned(),
                name: name.clone(),
                why: format!(
                    "big-endian storage `{}` is also viewed by `{other}` with {first}-byte elements, here {u}-byte: torch swaps it once, so one of them cannot be converted faithfully",
                    t.storage
                ),
            });
        }
    }
    Ok(())
}

impl Plan {
    /// The tensor bytes the output will hold, refused
    /// ([`ConvertError::OutputTooLarge`]) over `--max-output-size`, or by
    /// default over [`default_max_output_size`] of the inputs' data. `src`
    /// names the source in errors.
    pub fn output_bytes(&self, src: &Path, opts: &Options) -> Result<u64, ConvertError> {
        let mut total: u64 = 0;
        for p in &self.tensors {
            total = p
                .tensor
                .byte_len()
                .and_then(|n| u64::try_from(n).ok())
                .and_then(|n| total.checked_add(n))
                .ok_or_else(|| {
                    ConvertError::format(src, "the total output size overflows 64 bits")
                })?;
        }
        let limit = opts.max_output_size.unwrap_or_else(|| {
            default_max_output_size(
                self.checkpoints
                    .iter()
                    .map(Checkpoint::data_bytes)
                    .fold(0u64, u64::saturating_add),
            )
        });
        if total > limit {
            let largest = self
                .tensors
                .iter()
                .max_by_key(|p| p.tensor.byte_len().unwrap_or(0))
                .map(|p| {
                    format!(
                        "; the largest is `{}` ({} bytes, size {:?}, stride {:?})",
                        p.name,
                        p.tensor.byte_len().unwrap_or(0),
                        p.tensor.shape,
                        p.tensor.stride
                    )
                })
                .unwrap_or_default();
            return Err(ConvertError::OutputTooLarge {
                path: src.to_owned(),
                total,
                limit,
                default: opts.max_output_size.is_none(),
                detail: largest,
            });
        }
        Ok(total)
    }
}
