//! Recognising one value of the pickle's tree as a tensor: torch's rebuild
//! calls (`_rebuild_tensor_v2`, parameters, `_rebuild_from_type_v2`),
//! checked as torch's weights-only loader would apply them, and NumPy arrays
//! pickled inside a checkpoint.

use tensorseal_format::Dtype;
use tensorseal_pickle::Value;

use crate::dtypes::{can_require_grad, storage_dtype, swap_unit, torch_dtype};
use crate::sources::npy::descr_dtype;
use crate::view::{contiguous_strides, TensorRef};

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
        let (dt, big) = descr_dtype(&format!("{order}{code}"))?;
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
