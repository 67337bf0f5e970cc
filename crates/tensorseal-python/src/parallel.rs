//! Bindings of `tensorseal-parallel`: a rank's share of a checkpoint, one
//! tensor's block, and saving without gathering. The pure-Python half is
//! `tensorseal/_parallel.py` (plans from dicts, callables, torch.distributed).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::inbuf::InBuf;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use tensorseal_format::write::TensorSpec;
use tensorseal_format::FormatError;
use tensorseal_parallel::{
    resolve, Assignment, Checkpoint, ParallelError, Plan, Rule, SavePlan, WriteRun,
};

use crate::buffer::Buffer;
use crate::{to_py, write_dtype, SafetensorError};

/// Maps a parallel error: format and I/O errors as the rest of the package
/// does, every other kind as `SafetensorError` with its `kind`.
fn perr(py: Python<'_>, err: ParallelError) -> PyErr {
    match err {
        ParallelError::Format(e) => to_py(py, e),
        ParallelError::Io { path, source } => to_py(py, FormatError::io(path, source)),
        other => {
            let kind = other.kind();
            let e = SafetensorError::new_err(other.to_string());
            let _ = e.value(py).setattr("kind", kind);
            e
        }
    }
}

fn parse_plan(py: Python<'_>, text: &str) -> PyResult<Plan> {
    Plan::from_json(text).map_err(|e| perr(py, e))
}

/// A Python callable rule's result, as a `Rule`: `"replicate"`, `"skip"`,
/// `("shard", dim)` or `{"shard": dim}`.
fn rule_from_py(value: &Bound<'_, PyAny>, name: &str) -> Result<Rule, ParallelError> {
    if let Ok(s) = value.extract::<String>() {
        return match s.as_str() {
            "replicate" => Ok(Rule::Replicate),
            "skip" => Ok(Rule::Skip),
            other => Err(ParallelError::BadPlan {
                reason: format!("callable rule for {name:?} returned unknown rule {other:?}"),
            }),
        };
    }
    if let Ok((word, dim)) = value.extract::<(String, i64)>() {
        if word == "shard" {
            return Ok(Rule::Shard(dim));
        }
    }
    if let Ok(Some(dim)) = value
        .get_item("shard")
        .and_then(|v| v.extract::<Option<i64>>())
    {
        return Ok(Rule::Shard(dim));
    }
    Err(ParallelError::BadPlan {
        reason: format!(
            "callable rule for {name:?} returned {}, expected \"replicate\", \"skip\" or (\"shard\", dim)",
            value.repr().map(|r| r.to_string()).unwrap_or_default()
        ),
    })
}

/// Runs callable `i` of `callables` on (name, shape, rank, world_size).
fn call_rule(
    py: Python<'_>,
    callables: &[Py<PyAny>],
    i: usize,
    name: &str,
    shape: &[usize],
    rank: usize,
    world: usize,
) -> Result<Rule, ParallelError> {
    let f = callables.get(i).ok_or_else(|| ParallelError::BadPlan {
        reason: format!(
            "plan names callable {i}, but {} were given",
            callables.len()
        ),
    })?;
    let out = f
        .bind(py)
        .call1((name, shape.to_vec(), rank, world))
        .map_err(|e| ParallelError::BadPlan {
            reason: format!("callable rule for {name:?} raised: {e}"),
        })?;
    rule_from_py(&out, name)
}

fn assignment_py<'py>(py: Python<'py>, a: Assignment) -> PyResult<Bound<'py, PyAny>> {
    Ok(match a {
        Assignment::Skip => py.None().into_bound(py),
        Assignment::Whole => "whole".into_pyobject(py)?.into_any(),
        Assignment::Block { dim, start, stop } => (dim, start, stop).into_pyobject(py)?.into_any(),
    })
}

/// `(entries, buffer, (data_bytes_read, header_bytes, runs))`.
type LoadResult<'py> = (Bound<'py, PyList>, Buffer, (u64, u64, usize));

/// Loads `rank`'s share of the checkpoint at `path`.
///
/// Returns `(entries, buffer, stats)`: entries `(name, dtype, shape, start,
/// end, assignment)` into one buffer; stats `(data_bytes_read,
/// header_bytes, runs)`. With `owned` (collective mode), the plan is
/// ignored for reading: the whole of each named tensor is read, nothing
/// else; `assignment` still says what the plan gives this rank.
#[pyfunction]
#[pyo3(signature = (path, plan, rank, world_size, callables, owned=None, read_gap=0))]
// The Python signature is the argument list.
#[allow(clippy::too_many_arguments)]
pub fn parallel_load<'py>(
    py: Python<'py>,
    path: PathBuf,
    plan: &str,
    rank: usize,
    world_size: usize,
    callables: Vec<Py<PyAny>>,
    owned: Option<Vec<String>>,
    read_gap: u64,
) -> PyResult<LoadResult<'py>> {
    let plan = parse_plan(py, plan)?;
    let ck = py
        .detach(|| Checkpoint::open(&path))
        .map_err(|e| perr(py, e))?
        .with_read_gap(read_gap);
    let assigned = ck
        .assign(&plan, rank, world_size, |i, name, shape, r, w| {
            call_rule(py, &callables, i, name, shape, r, w)
        })
        .map_err(|e| perr(py, e))?;
    let reads: Vec<Assignment> = match &owned {
        None => assigned.clone(),
        Some(names) => {
            let set: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
            ck.tensors()
                .iter()
                .map(|t| {
                    if set.contains(t.name.as_str()) {
                        Assignment::Whole
                    } else {
                        Assignment::Skip
                    }
                })
                .collect()
        }
    };
    let lp = ck.plan(&reads).map_err(|e| perr(py, e))?;
    let buf = py
        .detach(|| Buffer::owned_with(lp.total_len, |dst| ck.read(&lp, dst).map_err(LoadError::P)))
        .map_err(|e| match e {
            LoadError::P(e) => perr(py, e),
            LoadError::Io(e) => to_py(py, FormatError::io(&path, e)),
        })?;
    let mut items = Vec::with_capacity(lp.tensors.len());
    for t in &lp.tensors {
        let a = assigned.get(t.index).copied().unwrap_or(Assignment::Skip);
        items.push(PyTuple::new(
            py,
            [
                t.name.as_str().into_pyobject(py)?.into_any(),
                t.dtype.as_str().into_pyobject(py)?.into_any(),
                PyList::new(py, &t.shape)?.into_any(),
                t.start.into_pyobject(py)?.into_any(),
                (t.start + t.len).into_pyobject(py)?.into_any(),
                assignment_py(py, a)?,
            ],
        )?);
    }
    let stats = (ck.data_bytes_read(), ck.header_bytes(), lp.run_count());
    Ok((PyList::new(py, items)?, buf, stats))
}

enum LoadError {
    P(ParallelError),
    Io(std::io::Error),
}

impl From<std::io::Error> for LoadError {
    fn from(e: std::io::Error) -> Self {
        LoadError::Io(e)
    }
}

/// The checkpoint's tensors `(name, dtype, shape)` and, per rank, what the
/// plan gives it (`None` = skip, `"whole"`, `(dim, start, stop)`): a
/// planning aid, and what collective mode distributes by. Reads only
/// headers.
#[pyfunction]
pub fn parallel_assignments<'py>(
    py: Python<'py>,
    path: PathBuf,
    plan: &str,
    world_size: usize,
    callables: Vec<Py<PyAny>>,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
    let plan = parse_plan(py, plan)?;
    let ck = py
        .detach(|| Checkpoint::open(&path))
        .map_err(|e| perr(py, e))?;
    let mut tensors = Vec::new();
    for t in ck.tensors() {
        tensors.push((t.name.clone(), t.dtype.as_str(), t.shape.clone()));
    }
    let per_rank = PyList::empty(py);
    for r in 0..world_size {
        let a = ck
            .assign(&plan, r, world_size, |i, name, shape, tr, tw| {
                call_rule(py, &callables, i, name, shape, tr, tw)
            })
            .map_err(|e| perr(py, e))?;
        let row = PyList::empty(py);
        for x in a {
            row.append(assignment_py(py, x)?)?;
        }
        per_rank.append(row)?;
    }
    Ok((PyList::new(py, tensors)?, per_rank))
}

/// What `plan` gives `rank` of one tensor `name` of `shape`: `None`
/// (skip), `"whole"`, or `(dim, start, stop)`. `names` (all tensor names of
/// the checkpoint) is needed only by a pipeline plan that infers its layer
/// count.
#[pyfunction]
#[pyo3(signature = (plan, name, shape, rank, world_size, callables, names=None))]
// The Python signature is the argument list.
#[allow(clippy::too_many_arguments)]
pub fn parallel_rank_block<'py>(
    py: Python<'py>,
    plan: &str,
    name: &str,
    shape: Vec<usize>,
    rank: usize,
    world_size: usize,
    callables: Vec<Py<PyAny>>,
    names: Option<Vec<String>>,
) -> PyResult<Bound<'py, PyAny>> {
    let plan = parse_plan(py, plan)?;
    let empty: [usize; 0] = [];
    let mut list: Vec<(&str, &[usize])> = vec![(name, shape.as_slice())];
    if let Some(ns) = &names {
        list.extend(
            ns.iter()
                .filter(|n| n.as_str() != name)
                .map(|n| (n.as_str(), &empty[..])),
        );
    }
    // Only the first tensor's assignment is wanted; others contribute layer
    // indices. Their rules are not evaluated past the pipeline filter, so
    // give them a neutral callable result.
    let a = plan
        .assign(&list[..1], rank, world_size, |i, n, s, r, w| {
            call_rule(py, &callables, i, n, s, r, w)
        })
        .and_then(|v| {
            if names.is_some() {
                // Recompute with all names for the layer count.
                let only_filter = Plan {
                    rules: Vec::new(),
                    default: Rule::Replicate,
                    pipeline: plan.pipeline.clone(),
                };
                let keep = only_filter
                    .assign(&list, rank, world_size, |_, _, _, _, _| Ok(Rule::Replicate))?;
                if keep.first() == Some(&Assignment::Skip) {
                    return Ok(vec![Assignment::Skip]);
                }
                let (_, _, tr, tw) = plan.topology(rank, world_size)?;
                let mut rule = plan.rule_for(name);
                if let Rule::Callable(i) = rule {
                    rule = call_rule(py, &callables, i, name, &shape, tr, tw)?;
                }
                return Ok(vec![resolve(rule, name, &shape, tr, tw)?]);
            }
            Ok(v)
        })
        .map_err(|e| perr(py, e))?;
    assignment_py(py, a.first().copied().unwrap_or(Assignment::Skip))
}

type SpecIn = (String, String, Vec<usize>);

fn specs_from(py: Python<'_>, list: Vec<SpecIn>) -> PyResult<Vec<TensorSpec>> {
    list.into_iter()
        .map(|(name, dtype, shape)| {
            let dtype = write_dtype(py, &name, &dtype)?;
            Ok(TensorSpec { name, dtype, shape })
        })
        .collect()
}

/// Full tensor specs from every rank's local `(name, dtype, shape)` lists.
#[pyfunction]
pub fn parallel_full_specs(
    py: Python<'_>,
    plan: &str,
    locals: Vec<Vec<SpecIn>>,
) -> PyResult<Vec<(String, String, Vec<usize>)>> {
    let plan = parse_plan(py, plan)?;
    let locals: Vec<Vec<TensorSpec>> = locals
        .into_iter()
        .map(|l| specs_from(py, l))
        .collect::<PyResult<_>>()?;
    let full = tensorseal_parallel::full_specs(&plan, &locals).map_err(|e| perr(py, e))?;
    Ok(full
        .into_iter()
        .map(|s| (s.name, s.dtype.as_str().to_owned(), s.shape))
        .collect())
}

/// One rank's side of a save without gathering.
#[pyclass(module = "tensorseal._tensorseal", frozen)]
pub struct ParallelSave {
    plan: SavePlan,
    parts: Vec<(usize, Vec<usize>, u64)>,
    writes: Vec<WriteRun>,
}

#[pymethods]
impl ParallelSave {
    /// Plans the save of full tensors `specs` to `path` (a file, or with
    /// `max_shard_size` a directory of `save_pretrained`-named shards).
    #[new]
    // The Python signature is the argument list.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (path, specs, plan, rank, world_size, metadata=None, max_shard_size=None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        specs: Vec<SpecIn>,
        plan: &str,
        rank: usize,
        world_size: usize,
        metadata: Option<BTreeMap<String, String>>,
        max_shard_size: Option<u64>,
    ) -> PyResult<Self> {
        let plan = parse_plan(py, plan)?;
        let specs = specs_from(py, specs)?;
        let sp = match max_shard_size {
            None => SavePlan::single(path, specs, metadata.as_ref()),
            Some(n) => SavePlan::sharded(&path, specs, metadata.as_ref(), n),
        }
        .map_err(|e| perr(py, e))?;
        let (parts, writes) = sp
            .rank_writes(&plan, rank, world_size)
            .map_err(|e| perr(py, e))?;
        let parts = parts
            .into_iter()
            .map(|p| (p.tensor, p.shape, p.len))
            .collect();
        Ok(ParallelSave {
            plan: sp,
            parts,
            writes,
        })
    }

    /// `(name, shape)` of each part this rank must supply, in order.
    fn parts(&self) -> Vec<(String, Vec<usize>)> {
        self.parts
            .iter()
            .map(|(i, shape, _)| {
                let name = self
                    .plan
                    .specs
                    .get(*i)
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                (name, shape.clone())
            })
            .collect()
    }

    /// The files written (paths), index last when there is one.
    fn files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.plan.files.iter().map(|f| f.path.clone()).collect();
        if let Some((p, _)) = &self.plan.index {
            v.push(p.clone());
        }
        v
    }

    /// Rank 0: creates and pre-sizes the files and writes headers and index.
    fn create_files(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.plan.create_files())
            .map_err(|e| perr(py, e))
    }

    /// Writes this rank's parts: `buffers[k]` holds the C-order bytes of
    /// part `k` (as `parts()` lists them). Returns the bytes written.
    fn write(&self, py: Python<'_>, buffers: Vec<Bound<'_, PyAny>>) -> PyResult<u64> {
        if buffers.len() != self.parts.len() {
            return Err(PyTypeError::new_err(format!(
                "{} buffers given for {} parts",
                buffers.len(),
                self.parts.len()
            )));
        }
        let mut views = Vec::with_capacity(buffers.len());
        let mut ranges: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
        for (b, (i, _, len)) in buffers.iter().zip(&self.parts) {
            let view = InBuf::get(b)?;
            if !view.is_c_contiguous() {
                return Err(PyTypeError::new_err("part buffers must be contiguous"));
            }
            if view.len_bytes() as u64 != *len {
                let name = self
                    .plan
                    .specs
                    .get(*i)
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                return Err(perr(
                    py,
                    ParallelError::BadLocal {
                        tensor: name,
                        reason: format!("part holds {} bytes, {len} expected", view.len_bytes()),
                    },
                ));
            }
            ranges.insert(*i, (view.buf_ptr() as usize, view.len_bytes()));
            views.push(view);
        }
        let result = py.detach(|| {
            self.plan.write_rank(&self.writes, |i| {
                let &(ptr, len) = ranges.get(&i)?;
                if len == 0 {
                    return Some(&[][..]);
                }
                // SAFETY: each (ptr, len) is the memory of an InBuf in
                // `views`, which keeps the exporter's memory valid until it
                // is dropped after this closure; the bytes are only read.
                Some(unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
            })
        });
        drop(views);
        result.map_err(|e| perr(py, e))
    }
}

/// Adds the parallel functions and class to the native module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(parallel_load, m)?)?;
    m.add_function(wrap_pyfunction!(parallel_assignments, m)?)?;
    m.add_function(wrap_pyfunction!(parallel_rank_block, m)?)?;
    m.add_function(wrap_pyfunction!(parallel_full_specs, m)?)?;
    m.add_class::<ParallelSave>()?;
    Ok(())
}
