//! `tensorseal._tensorseal.quant_*`: the native half of `tensorseal.quant`
//! (recognising quantized layers, dequantizing a checkpoint), over the
//! `tensorseal-quant` crate.

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use tensorseal_format::Durability;
use tensorseal_quant::dequant::{dequantize, Options, Source};
use tensorseal_quant::{OutDtype, QuantError};

use crate::{to_py, SafetensorError};

fn quant_err(py: Python<'_>, e: QuantError) -> PyErr {
    match e {
        QuantError::Format(f) => to_py(py, f),
        QuantError::Io { path, source } => PyOSError::new_err(format!("{path}: {source}")),
        other => {
            let kind = match &other {
                QuantError::Config { .. } => "quant_config",
                QuantError::MissingTensor { .. } => "quant_missing_tensor",
                QuantError::BadDtype { .. } => "quant_bad_dtype",
                QuantError::BadShape { .. } => "quant_bad_shape",
                _ => "quant_unsupported",
            };
            let err = SafetensorError::new_err(other.to_string());
            let _ = err.value(py).setattr("kind", kind);
            err
        }
    }
}

/// `quant_inspect(path) -> list[dict]`: the quantized layers of a checkpoint.
#[pyfunction]
fn quant_inspect<'py>(py: Python<'py>, path: std::path::PathBuf) -> PyResult<Bound<'py, PyList>> {
    let report = py
        .detach(|| Source::open(&path).and_then(|s| s.recognize()))
        .map_err(|e| quant_err(py, e))?;
    let out = PyList::empty(py);
    for l in &report.layers {
        let d = PyDict::new(py);
        d.set_item("name", &l.output)?;
        d.set_item("scheme", l.scheme.name())?;
        d.set_item("bits", l.bits)?;
        d.set_item("group_size", l.grouping.to_string())?;
        d.set_item("shape", l.shape.clone())?;
        d.set_item("tensors", l.tensors.clone())?;
        d.set_item("stored_bytes", l.stored_bytes)?;
        d.set_item("effective_bits", l.effective_bits())?;
        out.append(d)?;
    }
    Ok(out)
}

/// `quant_dequantize(src, dst, dtype, max_shard_size, chunk_bytes) -> dict`.
#[pyfunction]
#[pyo3(signature = (src, dst, dtype="bf16", max_shard_size=5_000_000_000, chunk_bytes=2 << 20, sync=true))]
fn quant_dequantize<'py>(
    py: Python<'py>,
    src: std::path::PathBuf,
    dst: std::path::PathBuf,
    dtype: &str,
    max_shard_size: u64,
    chunk_bytes: usize,
    sync: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let dtype = OutDtype::parse(dtype).ok_or_else(|| {
        PyValueError::new_err(format!(
            "dtype must be 'bf16', 'f16' or 'f32', not {dtype:?}"
        ))
    })?;
    if max_shard_size == 0 || chunk_bytes == 0 {
        return Err(PyValueError::new_err(
            "max_shard_size and chunk_bytes must be positive",
        ));
    }
    let opts = Options {
        dtype,
        max_shard_size,
        chunk_bytes,
        durability: if sync {
            Durability::Sync
        } else {
            Durability::NoSync
        },
    };
    let s = py
        .detach(|| dequantize(&src, &dst, &opts))
        .map_err(|e| quant_err(py, e))?;
    let d = PyDict::new(py);
    d.set_item("dequantized", s.dequantized)?;
    d.set_item("copied", s.copied)?;
    d.set_item(
        "files",
        s.files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>(),
    )?;
    d.set_item("bytes", s.bytes)?;
    Ok(d)
}

/// Adds the functions to the native module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(quant_inspect, m)?)?;
    m.add_function(wrap_pyfunction!(quant_dequantize, m)?)?;
    Ok(())
}
