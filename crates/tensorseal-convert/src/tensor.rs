//! Tensors of a checkpoint: found in the plain-data object graph the pickle
//! reader built, then copied (contiguous) or materialised in logical order
//! (non-contiguous views), byte-swapped when the file is big-endian.

use std::collections::HashMap;
use std::io;

use tensorseal_format::Dtype;
use tensorseal_pickle::Value;
use xxhash_rust::xxh3::Xxh3;

use crate::source::{storage_dtype, torch_dtype, Checkpoint};
use crate::ConvertError;

/// A tensor as a view of a storage.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorRef {
    /// Storage key (`data/<key>` in a zip, legacy key, npy member).
    pub storage: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Strides, in elements.
    pub stride: Vec<usize>,
    /// Offset of the first element, in elements.
    pub offset: usize,
    /// Extra byte offset into the storage (npy header length).
    pub byte_offset: usize,
    /// Whether elements are stored big-endian.
    pub big_endian: bool,
}

impl TensorRef {
    /// Number of elements (1 for 0-d).
    pub fn numel(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    }

    /// Byte length of the tensor in safetensors.
    pub fn byte_len(&self) -> Option<usize> {
        self.numel()?.checked_mul(self.dtype.byte_size()?)
    }

    /// Whether the view is row-major contiguous.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1usize;
        for (&d, &s) in self.shape.iter().zip(&self.stride).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected = expected.saturating_mul(d);
        }
        true
    }
}

/// A non-negative Python int. Bools are refused: torch's `set_` takes
/// `True` for an int nowhere in a size, stride or offset (TypeError).
fn int(v: &Value) -> Option<usize> {
    match v {
        Value::Int(i) => usize::try_from(*i).ok(),
        _ => None,
    }
}

fn ints(v: &Value) -> Option<Vec<usize>> {
    // torch.Size pickles as a tuple; accept a torch.Size(...) call too.
    match v {
        Value::Call(c) if c.callable.as_global() == Some(("torch", "Size")) => {
            ints(c.args.as_seq()?.first()?)
        }
        _ => v.as_seq()?.iter().map(int).collect(),
    }
}

/// Storage reference inside a persistent id.
struct StorageRef {
    key: String,
    dtype: Option<Dtype>,
    untyped: bool,
}

fn storage_ref(v: &Value) -> Result<StorageRef, String> {
    let Value::PersistentId(pid) = v else {
        return Err(format!(
            "storage argument is a {}, not a persistent id",
            v.kind_name()
        ));
    };
    let t = pid.as_seq().ok_or("persistent id is not a tuple")?;
    if t.first().and_then(Value::as_str) != Some("storage") {
        return Err(format!("persistent id {:?} is not a storage", t.first()));
    }
    let (_, ty) = t
        .get(1)
        .and_then(Value::as_global)
        .ok_or("persistent id has no storage type")?;
    let key = t
        .get(2)
        .and_then(Value::as_str)
        .ok_or("persistent id has no storage key")?;
    let untyped = matches!(ty, "UntypedStorage" | "TypedStorage");
    let dtype =
        if untyped {
            None
        } else {
            Some(storage_dtype(ty).ok_or_else(|| {
                format!("storage type `torch.{ty}` has no safetensors equivalent")
            })?)
        };
    // Sizes, legacy storage views and the tuple's length were checked for
    // every persistent id of the file when it was opened (`storage_uses`).
    Ok(StorageRef {
        key: key.to_owned(),
        dtype,
        untyped,
    })
}

/// Whether `v` is a tensor; if so, its view (or why it cannot be converted).
pub(crate) fn tensor_of(v: &Value, big_endian: bool) -> Option<Result<TensorRef, String>> {
    let (module, name) = v.call_target()?;
    let call = v.as_call()?;
    let args = call.args.as_seq().unwrap_or(&[]);
    let t = tensor_call(module, name, args, big_endian)?;
    Some(t.and_then(|t| untouched(call, module, name).map(|()| t)))
}

/// A rebuild call is only the tensor it names when nothing else acts on its
/// result: `BUILD` on a tensor runs `set_(*state)` (or `__setstate__`,
/// which can assign `.data`), so the pickle can swap in another storage,
/// shape or dtype after the rebuild. torch's weights-only reader applies
/// only `REDUCE` to these functions. Anything else is refused.
fn untouched(call: &tensorseal_pickle::Call, module: &str, name: &str) -> Result<(), String> {
    if call.kind != tensorseal_pickle::CallKind::Reduce {
        return Err(format!(
            "`{module}.{name}` is applied with {:?}, not REDUCE (torch's weights-only loader refuses it)",
            call.kind
        ));
    }
    if call.state.is_some() || call.kwargs.is_some() {
        return Err(format!(
            "the result of `{module}.{name}` gets a BUILD state: torch would change the tensor after rebuilding it (`set_`/`.data`), so its values cannot be read from the rebuild arguments"
        ));
    }
    if !call.list_items.is_empty() || !call.dict_items.is_empty() {
        return Err(format!(
            "items are appended or assigned to the result of `{module}.{name}`"
        ));
    }
    Ok(())
}

/// Whether a Python object state (`_set_obj_state`'s argument: a dict, or a
/// `(dict, slots)` pair, each possibly `None`) sets no attribute at all.
/// Any attribute is refused: `setattr` on a tensor can replace its data
/// (`data`, `real`, `imag`, ...).
fn empty_state(v: &Value) -> bool {
    let empty = |x: &Value| match x {
        Value::None => true,
        Value::Dict(d) => d.is_empty(),
        _ => false,
    };
    match v {
        Value::Tuple(t) => t.len() == 2 && t.iter().all(empty),
        other => empty(other),
    }
}

/// A short description of a state for messages: the attribute names.
fn describe_state(v: Option<&Value>) -> String {
    let keys = |x: &Value| -> Vec<String> {
        x.as_dict()
            .unwrap_or(&[])
            .iter()
            .map(|(k, _)| {
                k.as_str()
                    .map(|s| format!("{s:?}"))
                    .unwrap_or_else(|| k.kind_name().to_owned())
            })
            .collect()
    };
    match v {
        None => "missing".to_owned(),
        Some(Value::Tuple(t)) => format!(
            "setting [{}]",
            t.iter().flat_map(keys).collect::<Vec<_>>().join(", ")
        ),
        Some(x) if x.as_dict().is_some() => format!("setting [{}]", keys(x).join(", ")),
        Some(x) => format!("of type {}", x.kind_name()),
    }
}

/// Whether `d` can require gradients in torch (floating point or complex).
fn can_require_grad(d: Dtype) -> bool {
    matches!(
        d,
        Dtype::F64
            | Dtype::F32
            | Dtype::F16
            | Dtype::BF16
            | Dtype::C64
            | Dtype::F8_E4M3
            | Dtype::F8_E5M2
            | Dtype::F8_E4M3FNUZ
            | Dtype::F8_E5M2FNUZ
            | Dtype::F8_E8M0
    )
}

/// `requires_grad` as torch takes it: a bool, and `True` only for dtypes
/// that can require gradients (torch raises for the others).
fn check_requires_grad(v: Option<&Value>, dtype: Dtype) -> Result<(), String> {
    match v {
        Some(Value::Bool(false)) => Ok(()),
        Some(Value::Bool(true)) if can_require_grad(dtype) => Ok(()),
        Some(Value::Bool(true)) => Err(format!(
            "requires_grad=True on a {dtype} tensor: torch refuses (only floating point and complex tensors can require gradients)"
        )),
        other => Err(format!(
            "requires_grad is {}, not a bool",
            other.map(Value::kind_name).unwrap_or("missing")
        )),
    }
}

fn tensor_call(
    module: &str,
    name: &str,
    args: &[Value],
    big_endian: bool,
) -> Option<Result<TensorRef, String>> {
    match (module, name) {
        ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2" | "_rebuild_tensor_v3") => {
            Some((|| {
                // Python's arity: more or fewer positional arguments than
                // the function takes is a TypeError in torch.
                let (least, most) = match name {
                    "_rebuild_tensor" => (4, 4),
                    "_rebuild_tensor_v2" => (6, 7),
                    _ => (7, 8),
                };
                if args.len() < least || args.len() > most {
                    let takes = if least == most {
                        format!("{least}")
                    } else {
                        format!("{least} to {most}")
                    };
                    return Err(format!(
                        "`torch._utils.{name}` takes {takes} arguments, the pickle passes {} (torch raises TypeError)",
                        args.len()
                    ));
                }
                let s = storage_ref(args.first().ok_or("no storage argument")?)?;
                let offset = args.get(1).and_then(int).ok_or_else(|| {
                    format!("storage offset {:?} is not an int >= 0", args.get(1))
                })?;
                let shape = args.get(2).and_then(ints).ok_or_else(|| {
                    format!("size {:?} is not an int tuple (each >= 0)", args.get(2))
                })?;
                let stride = args.get(3).and_then(ints).ok_or_else(|| {
                    format!("stride {:?} is not an int tuple (each >= 0)", args.get(3))
                })?;
                if shape.len() != stride.len() {
                    return Err(format!(
                        "size {shape:?} and stride {stride:?} differ in length"
                    ));
                }
                let dtype = if name == "_rebuild_tensor_v3" {
                    let (m, n) = args
                        .get(6)
                        .and_then(Value::as_global)
                        .ok_or("v3 without dtype")?;
                    if m != "torch" {
                        return Err(format!("dtype `{m}.{n}` is not a torch dtype"));
                    }
                    torch_dtype(n)
                        .ok_or_else(|| format!("dtype `torch.{n}` has no safetensors equivalent"))?
                } else {
                    s.dtype.ok_or("untyped storage without a dtype")?
                };
                if big_endian {
                    // torch swaps a big-endian storage once, in units of its
                    // storage type (none for UntypedStorage), then views it
                    // as the tensor's dtype. Only when both agree is that
                    // the tensor's values; otherwise refuse.
                    let storage_unit = if s.untyped {
                        Some(1)
                    } else {
                        s.dtype.and_then(swap_unit)
                    };
                    let tensor_unit = swap_unit(dtype);
                    if storage_unit != tensor_unit || tensor_unit.is_none() {
                        return Err(format!(
                            "big-endian storage `{}` ({}) viewed as {dtype}: torch swaps its bytes in units of the storage type, not the tensor's, so the values cannot be byte-swapped to little-endian faithfully",
                            s.key,
                            if s.untyped { "untyped".to_owned() } else { s.dtype.map(|d| d.to_string()).unwrap_or_default() },
                        ));
                    }
                }
                if name != "_rebuild_tensor" {
                    check_requires_grad(args.get(4), dtype)?;
                }
                // `metadata` sets the conjugate or negative bit: torch then
                // returns the conjugated or negated values of the storage
                // (and asserts on a `conj` key for a real dtype). torch.save
                // writes it only when a bit is set; any entry is refused.
                let meta_at = if name == "_rebuild_tensor_v3" { 7 } else { 6 };
                match args.get(meta_at) {
                    None | Some(Value::None) => {}
                    Some(Value::Dict(d)) if d.is_empty() => {}
                    Some(other) => {
                        return Err(format!(
                            "tensor metadata {other:?} (conjugate or negative bit): torch returns the storage's values conjugated or negated, which convert does not compute"
                        ))
                    }
                }
                Ok(TensorRef {
                    storage: s.key,
                    dtype,
                    shape,
                    stride,
                    offset,
                    byte_offset: 0,
                    big_endian,
                })
            })())
        }
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            // (data, requires_grad, backward_hooks[, state]): the state's
            // attributes are set with setattr, which can replace the data.
            let r = match args.first().and_then(|d| tensor_of(d, big_endian)) {
                Some(r) => r,
                None => Err("parameter data is not a tensor".into()),
            };
            Some(r.and_then(|t| {
                check_requires_grad(args.get(1), t.dtype)?;
                if name == "_rebuild_parameter_with_state"
                    && !args.get(3).is_some_and(empty_state)
                {
                    return Err(format!(
                        "parameter state {} sets attributes on the tensor (torch's setattr can replace its data); only an empty state is converted",
                        describe_state(args.get(3))
                    ));
                }
                Ok(t)
            }))
        }
        ("torch._tensor", "_rebuild_from_type_v2") => {
            // (func, new_type, args, state): func(*args) is the tensor, then
            // the state's attributes are set on it.
            let (m, n) = args.first()?.as_global()?;
            let inner = args.get(2)?.as_seq()?;
            let r = tensor_call(m, n, inner, big_endian)?;
            Some(r.and_then(|t| {
                match args.get(1).and_then(Value::as_global) {
                    Some(("torch._tensor" | "torch", "Tensor") | ("torch.nn.parameter", "Parameter")) => {}
                    other => {
                        return Err(format!(
                            "tensor rebuilt as type {other:?}: only torch.Tensor and torch.nn.Parameter are converted"
                        ))
                    }
                }
                if !args.get(3).is_some_and(empty_state) {
                    return Err(format!(
                        "state {} sets attributes on the tensor (torch's setattr can replace its data); only an empty state is converted",
                        describe_state(args.get(3))
                    ));
                }
                Ok(t)
            }))
        }
        ("torch._utils", other) if other.starts_with("_rebuild") => Some(Err(format!(
            "`torch._utils.{other}` tensors (quantized, sparse, meta, subclass) are not supported"
        ))),
        _ => None,
    }
}

/// Bytes swapped together when converting `d` between byte orders: its
/// element size, or half of it for complex numbers (each part is swapped).
pub(crate) fn swap_unit(d: Dtype) -> Option<usize> {
    let es = d.byte_size()?;
    Some(if d == Dtype::C64 { es / 2 } else { es })
}

/// One persistent id of a torch pickle, read as torch's `persistent_load` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageUse {
    /// Storage key (`data/<key>` in a zip, the legacy key).
    pub key: String,
    /// The storage type's name, for messages.
    pub type_name: String,
    /// Bytes per element of the storage type (torch's `_element_size`).
    pub elem: u64,
    /// Elements the reference says the storage holds.
    pub numel: u64,
}

/// Bytes per element of a torch storage class, as torch computes them from
/// the class's dtype (`torch._utils._element_size`). `UntypedStorage` and
/// `TypedStorage` have no `dtype` attribute: `None` (torch's zip reader
/// special-cases `UntypedStorage` as bytes, its legacy reader does not).
fn storage_class_size(name: &str) -> Option<u64> {
    Some(match name {
        "DoubleStorage" | "LongStorage" | "ComplexFloatStorage" => 8,
        "FloatStorage" | "IntStorage" | "QInt32Storage" => 4,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "CharStorage" | "ByteStorage" | "BoolStorage" | "QUInt8Storage" | "QInt8Storage"
        | "QUInt4x2Storage" | "QUInt2x4Storage" => 1,
        "ComplexDoubleStorage" => 16,
        _ => return None,
    })
}

/// Every persistent id anywhere in `root` (not only under the selected
/// subtree: torch resolves them all while unpickling, and refuses the file
/// when one is wrong), parsed as torch's loader parses it: the tuple
/// `('storage', type, key, location, numel)` in a zip (`legacy`: one more
/// item, `view_metadata`, which must be `None` here: storage views are
/// refused). Errors name the bad reference.
pub(crate) fn storage_uses(root: &Value, legacy: bool) -> Result<Vec<StorageUse>, String> {
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(v) = stack.pop() {
        if let Value::PersistentId(p) = v {
            out.push(storage_use(p, legacy)?);
        }
        push_children(v, &mut stack);
    }
    Ok(out)
}

/// Pushes every value directly inside `v` (container items, dict keys and
/// values, a call's callable, arguments, state and items, a persistent id's
/// payload) onto `stack`: the one step of the iterative walks over a pickle's
/// value tree.
fn push_children<'v>(v: &'v Value, stack: &mut Vec<&'v Value>) {
    match v {
        Value::PersistentId(p) => stack.push(p),
        Value::Tuple(x) | Value::List(x) | Value::Set(x) | Value::FrozenSet(x) => stack.extend(x),
        Value::Dict(d) => d.iter().for_each(|(k, x)| stack.extend([k, x])),
        Value::Call(c) => {
            stack.push(&c.callable);
            stack.push(&c.args);
            stack.extend(&c.kwargs);
            stack.extend(&c.state);
            stack.extend(&c.list_items);
            c.dict_items.iter().for_each(|(k, x)| stack.extend([k, x]));
        }
        _ => {}
    }
}

fn storage_use(pid: &Value, legacy: bool) -> Result<StorageUse, String> {
    let t = pid
        .as_seq()
        .filter(|_| matches!(pid, Value::Tuple(_)))
        .ok_or_else(|| format!("persistent id {pid:?} is not a tuple"))?;
    if t.first().and_then(Value::as_str) != Some("storage") {
        return Err(format!(
            "persistent id {:?} is not a storage reference",
            t.first()
        ));
    }
    let want = if legacy { 6 } else { 5 };
    if t.len() != want {
        return Err(format!(
            "storage reference has {} items, torch unpacks exactly {want}",
            t.len()
        ));
    }
    let (module, ty) = t
        .get(1)
        .and_then(Value::as_global)
        .ok_or("storage reference without a storage type")?;
    let type_name = format!("{module}.{ty}");
    let elem = match (ty, legacy) {
        ("UntypedStorage", false) => Some(1),
        _ => storage_class_size(ty),
    }
    .ok_or_else(|| {
        format!("storage type `{type_name}` has no element size torch can read (torch fails on it)")
    })?;
    let key = t
        .get(2)
        .and_then(Value::as_str)
        .ok_or("storage reference whose key is not a string")?
        .to_owned();
    let numel = t
        .get(4)
        .and_then(Value::as_int)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| {
            format!(
                "storage `{key}`: element count {:?} is not a count",
                t.get(4)
            )
        })?;
    if legacy && !matches!(t.get(5), Some(Value::None)) {
        return Err(format!(
            "storage view (view_metadata {:?}) of legacy storage `{key}`: torch shares one view per view key whatever its offset, so convert refuses storage views",
            t.get(5)
        ));
    }
    Ok(StorageUse {
        key,
        type_name,
        elem,
        numel,
    })
}

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

/// A NumPy array pickled with `numpy.core.multiarray._reconstruct`:
/// `(view, bytes)` for numeric dtypes, an error for others.
pub(crate) fn numpy_array(v: &Value) -> Option<Result<(TensorRef, Vec<u8>), String>> {
    let (m, n) = v.call_target()?;
    if !matches!(m, "numpy.core.multiarray" | "numpy._core.multiarray") || n != "_reconstruct" {
        return None;
    }
    Some((|| {
        let call = v.as_call().ok_or("not a call")?;
        let state = call
            .state
            .as_ref()
            .and_then(Value::as_seq)
            .ok_or("ndarray without state")?;
        // (version, shape, dtype, is_fortran, data)
        let shape = state.get(1).and_then(ints).ok_or("ndarray: bad shape")?;
        let dtype = state
            .get(2)
            .and_then(Value::as_call)
            .ok_or("ndarray: bad dtype")?;
        if dtype.callable.as_global().map(|(_, n)| n) != Some("dtype") {
            return Err("ndarray: dtype is not numpy.dtype".to_owned());
        }
        let code = dtype
            .args
            .as_seq()
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .ok_or("ndarray: dtype without a type code")?;
        let order = dtype
            .state
            .as_ref()
            .and_then(Value::as_seq)
            .and_then(|s| s.get(1))
            .and_then(Value::as_str)
            .unwrap_or("|");
        let (dt, big) = crate::npy::descr_dtype(&format!("{order}{code}"))?;
        let fortran = matches!(state.get(3), Some(Value::Bool(true)));
        let data = match state.get(4) {
            Some(Value::Bytes(b)) | Some(Value::ByteArray(b)) => b.clone(),
            Some(other) => {
                return Err(format!(
                    "ndarray data is a {}, not bytes (object array?)",
                    other.kind_name()
                ))
            }
            None => return Err("ndarray without data".to_owned()),
        };
        let stride = contiguous_strides(&shape, fortran);
        Ok((
            TensorRef {
                storage: String::new(),
                dtype: dt,
                shape,
                stride,
                offset: 0,
                byte_offset: 0,
                big_endian: big,
            },
            data,
        ))
    })())
}

/// Element strides of a contiguous array of `shape`, in C (row-major) or
/// Fortran (column-major) order. Zero-sized dimensions count as 1 and products
/// saturate: such strides are only used after the extent is checked.
pub(crate) fn contiguous_strides(shape: &[usize], fortran: bool) -> Vec<usize> {
    let mut stride = vec![0usize; shape.len()];
    let mut acc = 1usize;
    let mut place = |d: usize| {
        stride[d] = acc;
        acc = acc.saturating_mul(shape[d].max(1));
    };
    if fortran {
        (0..shape.len()).for_each(&mut place);
    } else {
        (0..shape.len()).rev().for_each(&mut place);
    }
    stride
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

/// Size of the buffer used to materialise non-contiguous views.
const CHUNK: usize = 1 << 20;

/// Size of one piece read ahead by [`pipelined_read`].
const PIPE_CHUNK: usize = 1 << 20;

/// Pieces read ahead of the sink.
const PIPE_DEPTH: usize = 3;

/// Read-ahead buffers kept between tensors (each `PIPE_CHUNK` long), so
/// that converting many tensors does not allocate and zero new ones each
/// time.
static POOL: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

fn pool_take() -> Vec<u8> {
    POOL.lock()
        .ok()
        .and_then(|mut p| p.pop())
        .unwrap_or_else(|| vec![0u8; PIPE_CHUNK])
}

fn pool_put(buf: Vec<u8>) {
    if let Ok(mut p) = POOL.lock() {
        if p.len() < PIPE_DEPTH + 2 {
            p.push(buf);
        }
    }
}

/// Feeds `bytes` to the hasher, if any, then to the sink.
fn feed(
    hasher: &mut Option<&mut Xxh3>,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    bytes: &[u8],
) -> io::Result<()> {
    if let Some(h) = hasher.as_mut() {
        h.update(bytes);
    }
    sink(bytes)
}

/// Reads `len` bytes at file offset `at` of `ck` in `PIPE_CHUNK` pieces on a
/// helper thread, which also feeds them to `hasher`, and passes them to
/// `sink` in order on this thread, keeping at most `PIPE_DEPTH` pieces in
/// flight. The first error (read or sink) stops both sides.
fn pipelined_read(
    ck: &Checkpoint,
    at: usize,
    len: usize,
    hasher: Option<&mut Xxh3>,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), ConvertError> {
    use std::sync::mpsc;
    let mut hasher = hasher;
    if len <= PIPE_CHUNK {
        // One piece: no helper thread.
        let mut buf = pool_take();
        ck.read_at(at, &mut buf[..len])?;
        let r = feed(&mut hasher, sink, &buf[..len]);
        pool_put(buf);
        return r.map_err(|e| ConvertError::io(ck.path(), e));
    }
    let (full_tx, full_rx) =
        mpsc::sync_channel::<Result<(Vec<u8>, usize), ConvertError>>(PIPE_DEPTH);
    std::thread::scope(|s| {
        // Owned by this closure, so that an early return drops it before the
        // scope joins the reader: a reader blocked on a full channel then
        // sees the disconnect and stops instead of waiting forever.
        let full_rx = full_rx;
        s.spawn(move || {
            let mut done = 0usize;
            while done < len {
                let n = PIPE_CHUNK.min(len - done);
                let mut buf = pool_take();
                let piece = match ck.read_at(at + done, &mut buf[..n]) {
                    Ok(_) => {
                        if let Some(h) = hasher.as_mut() {
                            h.update(&buf[..n]);
                        }
                        Ok((buf, n))
                    }
                    Err(e) => Err(e),
                };
                let failed = piece.is_err();
                if full_tx.send(piece).is_err() || failed {
                    return; // the sink stopped, or this read failed
                }
                done += n;
            }
        });
        let mut done = 0usize;
        while done < len {
            let (buf, n) = match full_rx.recv() {
                Ok(piece) => piece?,
                Err(_) => {
                    return Err(ConvertError::io(
                        ck.path(),
                        io::Error::other("reader thread stopped"),
                    ))
                }
            };
            let written = sink(&buf[..n]);
            done += n;
            pool_put(buf);
            written.map_err(|e| ConvertError::io(ck.path(), e))?;
        }
        Ok(())
    })
}

/// Streams the tensor's bytes, in logical row-major order and little-endian,
/// to `sink` (in pieces of at most a few MiB), feeding the same bytes to
/// `hasher` first when one is given.
pub(crate) fn emit(
    ck: &Checkpoint,
    name: &str,
    t: &TensorRef,
    mut hasher: Option<&mut Xxh3>,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), ConvertError> {
    let terr = |why: String| ConvertError::Tensor {
        path: ck.path().to_owned(),
        name: name.to_owned(),
        why,
    };
    let es = t
        .dtype
        .byte_size()
        .ok_or_else(|| terr(format!("dtype {} is not byte-sized", t.dtype)))?;
    let numel = t
        .numel()
        .ok_or_else(|| terr(format!("shape {:?} overflows", t.shape)))?;
    if numel == 0 {
        return Ok(());
    }
    let storage_len = match ck.storage_range(&t.storage) {
        Some(r) => r.len(),
        None => ck.storage_len(&t.storage)?,
    };
    // Highest element index the view touches, checked against the storage.
    let mut last = t.offset;
    for (&d, &s) in t.shape.iter().zip(&t.stride) {
        last = (d - 1)
            .checked_mul(s)
            .and_then(|x| last.checked_add(x))
            .ok_or_else(|| terr("view extent overflows".into()))?;
    }
    let need = last
        .checked_add(1)
        .and_then(|n| n.checked_mul(es))
        .and_then(|n| n.checked_add(t.byte_offset))
        .ok_or_else(|| terr("view extent overflows".into()))?;
    if need > storage_len {
        return Err(terr(format!(
            "view (offset {}, size {:?}, stride {:?}) needs {need} bytes of storage `{}`, which has {}",
            t.offset,
            t.shape,
            t.stride,
            t.storage,
            storage_len
        )));
    }
    let io_err = |e: io::Error| ConvertError::io(ck.path(), e);
    let unit = if t.dtype == Dtype::C64 { es / 2 } else { es };
    let swap = t.big_endian && unit > 1;
    let base = t.byte_offset + t.offset * es;
    if t.is_contiguous() && !swap {
        if let Some(r) = ck.storage_range(&t.storage) {
            let total = numel * es;
            if ck.can_read_at() {
                // Positioned reads (and hashing) on a second thread while
                // this one hands the previous piece to the sink: reading and
                // writing overlap on two cores, and resident memory stays
                // at a few pieces.
                return pipelined_read(ck, r.start + base, total, hasher, sink);
            }
        }
        if ck.is_compressed(&t.storage) {
            // Streamed through a buffer; only the bytes up to the tensor's end are decoded.
            return ck.stream_storage(&t.storage, base, numel * es, &mut |piece| {
                feed(&mut hasher, sink, piece).map_err(io_err)
            });
        }
        let storage = ck.storage(&t.storage)?;
        let bytes = storage
            .get(base..base + numel * es)
            .ok_or_else(|| terr("out of range".into()))?;
        for piece in bytes.chunks(64 << 20) {
            feed(&mut hasher, sink, piece).map_err(io_err)?;
        }
        return Ok(());
    }
    let storage = ck.storage_upto(&t.storage, need)?;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK.min(numel * es) + es);
    let nd = t.shape.len();
    let mut idx = vec![0usize; nd];
    let (inner_len, inner_stride) = match nd {
        0 => (1, 1),
        _ => (t.shape[nd - 1], t.stride[nd - 1]),
    };
    loop {
        // Element offset of idx (inner dimension at 0).
        let mut off = t.offset;
        for (i, s) in idx.iter().zip(&t.stride).take(nd.saturating_sub(1)) {
            off += i * s;
        }
        if inner_stride == 1 && !swap {
            let s = t.byte_offset + off * es;
            buf.extend_from_slice(
                storage
                    .get(s..s + inner_len * es)
                    .ok_or_else(|| terr("out of range".into()))?,
            );
        } else {
            for j in 0..inner_len {
                let s = t.byte_offset + (off + j * inner_stride) * es;
                let e = storage
                    .get(s..s + es)
                    .ok_or_else(|| terr("out of range".into()))?;
                if swap {
                    for u in e.chunks(unit) {
                        buf.extend(u.iter().rev());
                    }
                } else {
                    buf.extend_from_slice(e);
                }
            }
        }
        if buf.len() >= CHUNK {
            feed(&mut hasher, sink, &buf).map_err(io_err)?;
            buf.clear();
        }
        // Advance the outer index (all dimensions but the last).
        let mut d = nd.saturating_sub(1);
        loop {
            if d == 0 {
                if !buf.is_empty() {
                    feed(&mut hasher, sink, &buf).map_err(io_err)?;
                }
                return Ok(());
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < t.shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A torch zip holding one 5 MiB stored tensor; returns the checkpoint
    /// and the tensor's file range.
    fn big_checkpoint(dir: &std::path::Path) -> (Checkpoint, std::ops::Range<usize>) {
        use tensorseal_format::write::{FileWriter, TensorSpec, WriteOptions};
        use tensorseal_format::Durability;
        let st = dir.join("big.safetensors");
        let n = 5 << 20;
        let specs = [TensorSpec {
            name: "w".into(),
            dtype: Dtype::U8,
            shape: vec![n],
        }];
        FileWriter::create(&st, &specs, &WriteOptions::new())
            .unwrap()
            .fill_and_commit(|_, w| std::io::Write::write_all(w, &vec![7u8; n]))
            .unwrap();
        let pt = dir.join("big.pt");
        crate::to_torch(&st, &pt, false, false, Durability::NoSync).unwrap();
        let ck = Checkpoint::open(&pt).unwrap();
        let r = ck.storage_range("0").expect("stored member");
        assert_eq!(r.len(), n);
        (ck, r)
    }

    #[test]
    fn pipelined_read_delivers_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (ck, r) = big_checkpoint(dir.path());
        let mut got = Vec::new();
        pipelined_read(&ck, r.start, r.len(), None, &mut |b: &[u8]| {
            assert!(b.len() <= PIPE_CHUNK);
            got.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(got.len(), r.len());
        assert!(got.iter().all(|&b| b == 7));
    }

    #[test]
    fn a_failing_sink_stops_the_reader_instead_of_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let (ck, r) = big_checkpoint(dir.path());
        // Fails on the first piece, while the reader has more than
        // PIPE_DEPTH pieces left to send.
        let mut calls = 0;
        let e = pipelined_read(&ck, r.start, r.len(), None, &mut |_: &[u8]| {
            calls += 1;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("disk full"), "{e}");
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_read_past_the_end_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (ck, r) = big_checkpoint(dir.path());
        let file_len = std::fs::metadata(ck.path()).unwrap().len() as usize;
        let e = pipelined_read(
            &ck,
            r.start,
            file_len - r.start + 1,
            None,
            &mut |_: &[u8]| Ok(()),
        )
        .unwrap_err();
        assert!(matches!(e, ConvertError::Io { .. }), "{e:?}");
    }
}
