//! Storage references in a torch pickle: every persistent id, read as
//! torch's `persistent_load` reads it. The torch sources check them all
//! against the file's storages when it is opened; [`push_children`] is the
//! one step of every walk over a pickle's value tree.

use tensorseal_pickle::Value;

use crate::dtypes::storage_class_size;

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
pub(crate) fn push_children<'v>(v: &'v Value, stack: &mut Vec<&'v Value>) {
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
