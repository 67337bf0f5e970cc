//! Convert pickle checkpoints to safetensors without running them, and back.
//!
//! Inputs: torch zip checkpoints (any root folder, stored or deflated
//! members, `byteorder` record), legacy pre-1.6 torch files, NumPy `.npy` and
//! `.npz`, and Hugging Face model directories (`pytorch_model.bin` or shards
//! with `pytorch_model.bin.index.json`). Every pickle is read by
//! [`tensorseal_pickle::load`]: plain data only, globals limited to the
//! weights allow-list, nothing imported or called.
//!
//! [`to_safetensors`] is a one-way pipeline, one module per step, each
//! depending only on the steps before it:
//!
//! 1. `inputs`: the files a source names (a file, an index and its shards,
//!    a model directory);
//! 2. `sources`: open each by its bytes: `torch_zip`, `legacy`, `npy`;
//! 3. `recognise`: find and name the tensors in the pickle's value tree;
//! 4. `plan`: select, refuse, alias, into a [`Plan`];
//! 5. `stream` and `write`: copy each tensor's bytes from the mapped input to
//!    the output (contiguous views copied straight, others materialised in
//!    logical order in 1 MiB pieces), so memory stays far below the
//!    checkpoint size;
//! 6. `verify`: check the output as [`Verify`] says: by default each tensor
//!    is hashed (XXH3-128) while it is written, and only the output is read
//!    back ([`verify_checksums`]); [`Verify::Full`] re-reads the input too
//!    and compares every byte ([`verify_against_input`]).
//!
//! [`to_torch`] writes the reverse: a torch zip checkpoint that
//! `torch.load(path, weights_only=True)` accepts.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod dtypes;
mod error;
mod inputs;
mod keys;
mod options;
mod plan;
mod recognise;
mod report;
mod sources;
mod stream;
mod torch_write;
mod verify;
mod view;
mod write;

use std::path::Path;

pub use error::ConvertError;
pub use inputs::resolve_inputs;
pub use options::{default_max_output_size, Options, Verify, OUTPUT_SIZE_FLOOR};
pub use plan::{plan, Plan, PlannedTensor};
pub use recognise::{collect, select, Selection, DEFAULT_KEYS};
pub use report::{Progress, Report, Written};
pub use sources::{Checkpoint, Format, LEGACY_MAGIC};
pub use torch_write::to_torch;
pub use verify::{verify_against_input, verify_checksums};
pub use view::TensorRef;

/// Converts `src` (a checkpoint file, index or model directory) to `dst` (a
/// `.safetensors` file, or a directory for `model.safetensors` or shards
/// with `model.safetensors.index.json`).
pub fn to_safetensors(
    src: &Path,
    dst: &Path,
    opts: &Options,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Report, ConvertError> {
    let inputs = resolve_inputs(src)?;
    let plan = plan(&inputs, opts)?;
    if let Some(ix) = inputs::index_of(src) {
        let names: Vec<(&str, usize)> = plan
            .tensors
            .iter()
            .map(|p| (p.name.as_str(), p.input))
            .collect();
        inputs::check_index(&ix, &inputs, &names, &plan.report.aliases)?;
    }
    // The output size, bounded before any byte (or directory) is written.
    let total = plan.output_bytes(src, opts)?;
    if write::cancelled(opts) {
        return Err(ConvertError::Interrupted);
    }
    let output = write::Output::lay_out(dst, &plan, inputs.len(), opts)?;
    progress(Progress::Start {
        total_bytes: total,
        tensors: plan.tensors.len(),
    });
    let mut streamer = stream::Streamer::new();
    streamer.expect(plan.tensors.iter().map(|p| (p.input, &p.tensor)));
    let wrote = output.write(&plan, total, opts, &mut streamer, progress)?;
    let verified =
        verify_output_files(opts.verify, &output, &wrote, &plan, &mut streamer, progress)?;
    let mut report = plan.report;
    report.verified = verified;
    report.checked_before_rename = wrote.checked_before_rename;
    if opts.verify == Verify::Checksum {
        report.written = wrote.written;
    }
    report.outputs = output.files;
    report.index = output.index;
    report.total_bytes = total;
    Ok(report)
}

/// Checks the files of `output`, written as `wrote` says, as `verify` asks.
/// Returns whether anything was checked.
fn verify_output_files(
    verify: Verify,
    output: &write::Output,
    wrote: &write::Wrote,
    plan: &Plan,
    streamer: &mut stream::Streamer,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<bool, ConvertError> {
    match verify {
        Verify::Off => Ok(false),
        Verify::Checksum => {
            progress(Progress::Verify);
            // Each tensor's hash was checked against the file before the
            // rename (unix); now the header, as read back from the final
            // path, and elsewhere the hashes too.
            for ((w, m), file) in wrote.written.iter().zip(&wrote.metadata).zip(&output.files) {
                verify::verify_output(file, w, Some(m), !verify::CHECK_BEFORE_RENAME)?;
            }
            Ok(true)
        }
        Verify::Full => {
            progress(Progress::Verify);
            // The second pass over the input caches like the first.
            streamer.expect(plan.tensors.iter().map(|p| (p.input, &p.tensor)));
            for (g, file) in output.groups.iter().zip(&output.files) {
                verify::verify_against_input_with(
                    file,
                    g.iter()
                        .map(|&i| (&plan.tensors[i], &plan.checkpoints[plan.tensors[i].input])),
                    streamer,
                )?;
            }
            Ok(true)
        }
    }
}
