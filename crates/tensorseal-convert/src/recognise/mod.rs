//! Recognising tensors in the pickle's value tree, the third step of the
//! pipeline: [`select`] picks the subtree to convert (`--select`, the
//! default nested keys, `--flatten`), [`collect`] walks it and names every
//! tensor by its dotted path, keeping plain non-tensor leaves as JSON for
//! the metadata. What is a tensor is decided in [`rebuild`].

use std::collections::HashMap;

use tensorseal_pickle::Value;

use crate::sources::refs::push_children;
use crate::view::TensorRef;

pub(crate) mod rebuild;

pub(crate) use rebuild::{numpy_array, tensor_of};

/// Keys tried, in order, to find the model weights in a nested checkpoint.
pub const DEFAULT_KEYS: &[&str] = &[
    "state_dict",
    "model_state_dict",
    "model_state",
    "model",
    "module",
];

fn contains_tensor(v: &Value, depth: usize) -> bool {
    if depth > 64 {
        return false;
    }
    if tensor_of(v, false).is_some() || numpy_array(v).is_some() {
        return true;
    }
    match v {
        Value::Dict(d) => d.iter().any(|(_, x)| contains_tensor(x, depth + 1)),
        Value::List(x) | Value::Tuple(x) => x.iter().any(|x| contains_tensor(x, depth + 1)),
        _ => false,
    }
}

/// Whether a storage reference or a pickled NumPy array is anywhere under
/// `v` (iterative: any depth).
fn holds_storage(v: &Value) -> bool {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        if matches!(v, Value::PersistentId(_)) || numpy_array(v).is_some() {
            return true;
        }
        push_children(v, &mut stack);
    }
    false
}

/// What [`select`] chose.
pub struct Selection<'v> {
    /// The subtree whose tensors are converted.
    pub value: &'v Value,
    /// The key chosen by default (`state_dict`, ...), if any.
    pub chosen: Option<String>,
}

/// Picks the subtree to convert: `--select a.b`, else (unless `flatten`) the
/// first of [`DEFAULT_KEYS`] present at the top whose value holds tensors,
/// else the whole object.
pub fn select<'v>(
    root: &'v Value,
    select: Option<&str>,
    flatten: bool,
) -> Result<Selection<'v>, String> {
    if let Some(path) = select {
        let mut cur = root;
        for part in path.split('.').filter(|p| !p.is_empty()) {
            cur = match cur {
                Value::Dict(d) => crate::keys::entries(d, |_| false)?
                    .into_iter()
                    .find(|e| e.name == part)
                    .map(|e| e.value)
                    .ok_or_else(|| format!("no key `{part}`"))?,
                Value::List(x) | Value::Tuple(x) => part
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| x.get(i))
                    .ok_or_else(|| format!("no index `{part}`"))?,
                other => return Err(format!("`{part}` is inside a {}", other.kind_name())),
            };
        }
        return Ok(Selection {
            value: cur,
            chosen: None,
        });
    }
    if !flatten && tensor_of(root, false).is_none() {
        for key in DEFAULT_KEYS {
            if let Some(v) = root.get(key) {
                if contains_tensor(v, 0) {
                    return Ok(Selection {
                        value: v,
                        chosen: Some((*key).to_owned()),
                    });
                }
            }
        }
    }
    Ok(Selection {
        value: root,
        chosen: None,
    })
}

/// Every tensor under `v`, named by dotted path (dict keys, list indices),
/// and the JSON of plain non-tensor leaves (for metadata).
///
/// Numeric NumPy arrays pickled inside the checkpoint become tensors too:
/// their bytes are in the pickle, and are returned in `inline` under the
/// storage key their [`TensorRef`] names.
pub fn collect(
    v: &Value,
    big_endian: bool,
    tensors: &mut Vec<(String, Result<TensorRef, String>)>,
    extras: &mut serde_json::Map<String, serde_json::Value>,
    inline: &mut Vec<(String, Vec<u8>)>,
) {
    let mut w = Walker {
        big_endian,
        tensors,
        extras,
        inline,
        origin: HashMap::new(),
    };
    w.walk(v, String::new(), String::new(), 0);
}

struct Walker<'a> {
    big_endian: bool,
    tensors: &'a mut Vec<(String, Result<TensorRef, String>)>,
    extras: &'a mut serde_json::Map<String, serde_json::Value>,
    inline: &'a mut Vec<(String, Vec<u8>)>,
    /// Name of each tensor found -> the key path it came from (`['a']['b']`).
    origin: HashMap<String, String>,
}

fn join(prefix: &str, part: &str) -> String {
    if prefix.is_empty() {
        part.to_owned()
    } else {
        format!("{prefix}.{part}")
    }
}

impl Walker<'_> {
    /// Records a tensor (or why it cannot be converted) found at `path`,
    /// reached by the key path `keys`; a name already given to another
    /// tensor (`{'a.b': x, 'a': {'b': y}}`) is an error naming both.
    fn push(&mut self, path: String, keys: String, t: Result<TensorRef, String>) {
        let t = match self.origin.get(&path) {
            Some(first) => Err(format!(
                "both {} and {} become this name",
                if first.is_empty() { "the root" } else { first },
                if keys.is_empty() { "the root" } else { &keys },
            )),
            None => t,
        };
        self.origin.insert(path.clone(), keys);
        self.tensors.push((path, t));
    }

    fn walk(&mut self, v: &Value, path: String, keys: String, depth: usize) {
        if depth > 100 {
            if holds_storage(v) {
                self.push(
                    path,
                    keys,
                    Err("a tensor nested more than 100 levels deep".into()),
                );
            }
            return;
        }
        if let Some(t) = tensor_of(v, self.big_endian) {
            self.push(path, keys, t);
            return;
        }
        if let Some(arr) = numpy_array(v) {
            let t = arr.map(|(mut t, bytes)| {
                t.storage = format!("numpy:{}:{path}", self.inline.len());
                self.inline.push((t.storage.clone(), bytes));
                t
            });
            self.push(path, keys, t);
            return;
        }
        match v {
            Value::Dict(d) => {
                // One entry per key as Python's dict holds it (equal keys
                // merged, last value), named by `str(key)`.
                match crate::keys::entries(d, |x| contains_tensor(x, 0)) {
                    Ok(entries) => {
                        for e in entries {
                            let k = format!("{keys}[{}]", e.repr);
                            self.walk(e.value, join(&path, &e.name), k, depth + 1);
                        }
                    }
                    Err(why) => {
                        let k = if keys.is_empty() {
                            "the root".to_owned()
                        } else {
                            keys.clone()
                        };
                        self.tensors
                            .push((path, Err(format!("in the dict at {k}: {why}"))));
                    }
                }
            }
            Value::List(x) | Value::Tuple(x) if contains_tensor(v, 0) => {
                for (i, x) in x.iter().enumerate() {
                    self.walk(
                        x,
                        join(&path, &i.to_string()),
                        format!("{keys}[{i}]"),
                        depth + 1,
                    );
                }
            }
            other if holds_storage(other) => {
                // torch returns tensors held here too (inside a
                // `Parameter(...)` or `Counter(...)` call, a set, a list
                // nested too deep to scan): never drop them silently.
                let why = format!(
                    "a tensor inside a {} that convert does not read",
                    other.kind_name()
                );
                self.push(path, keys, Err(why));
            }
            other => {
                if let Some(j) = to_json(other, 0) {
                    if !path.is_empty() {
                        self.extras.insert(path, j);
                    }
                }
            }
        }
    }
}

fn to_json(v: &Value, depth: usize) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    if depth > 16 {
        return None;
    }
    Some(match v {
        Value::None => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(J::Number)
            .unwrap_or(J::Null),
        Value::Str(s) => J::String(s.clone()),
        Value::List(x) | Value::Tuple(x) => J::Array(
            x.iter()
                .map(|x| to_json(x, depth + 1))
                .collect::<Option<_>>()?,
        ),
        Value::Dict(d) => {
            let mut m = serde_json::Map::new();
            for e in crate::keys::entries(d, |_| true).ok()? {
                m.insert(e.name, to_json(e.value, depth + 1)?);
            }
            J::Object(m)
        }
        _ => return None,
    })
}
