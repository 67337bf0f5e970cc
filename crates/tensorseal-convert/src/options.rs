//! What a conversion is asked to do: [`Options`] and [`Verify`], and the
//! default bound on the output size.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tensorseal_format::Durability;

/// Options of [`to_safetensors`](crate::to_safetensors).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Dotted path of the subtree to convert (`--select`).
    pub select: Option<String>,
    /// Keep every tensor of the whole object under its dotted path instead of
    /// picking the model weights (`--flatten`).
    pub flatten: bool,
    /// Shard the output (directory outputs only).
    pub max_shard_size: Option<u64>,
    /// How to check the output after writing it.
    pub verify: Verify,
    /// Replace an existing output.
    pub overwrite: bool,
    /// Whether every file written is fsynced before returning (outputs are
    /// always written atomically).
    pub durability: Durability,
    /// Most tensor bytes the output may hold (`--max-output-size`), checked
    /// before anything is written. `None`: [`default_max_output_size`] of
    /// the inputs.
    pub max_output_size: Option<u64>,
    /// Set (by a signal handler, say) to stop the conversion: writing stops
    /// within one piece (1 MiB), the temporary file is removed and
    /// [`ConvertError::Interrupted`](crate::ConvertError::Interrupted) returned.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// Floor of [`default_max_output_size`]: 256 MiB.
pub const OUTPUT_SIZE_FLOOR: u64 = 256 << 20;

/// The default bound on the tensor bytes written from inputs that hold
/// `input_bytes` of data ([`Checkpoint::data_bytes`](crate::Checkpoint::data_bytes) summed): twice that,
/// plus [`OUTPUT_SIZE_FLOOR`].
///
/// Tensors that do not overlap never need more bytes than their storages
/// hold, so an ordinary checkpoint converts well within the input size;
/// twice leaves room for overlapping views that torch materialises
/// (slices saved separately, a few expanded buffers), and the floor for
/// small files with expanded (stride-0) tensors. A stride-0 view can make
/// a few bytes of input stand for terabytes of output: those are refused
/// unless `--max-output-size` allows them.
pub fn default_max_output_size(input_bytes: u64) -> u64 {
    input_bytes
        .saturating_mul(2)
        .saturating_add(OUTPUT_SIZE_FLOOR)
}

/// How [`to_safetensors`](crate::to_safetensors) checks its output after writing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// Hash each tensor's bytes (XXH3-128) as they are copied from the input
    /// to the output, then re-read only the output: validate its header,
    /// and compare every tensor's name, dtype, shape, length and hash (and
    /// the metadata) with what was written. Proves the file on disk holds
    /// exactly the bytes read from the input during the copy.
    #[default]
    Checksum,
    /// Re-read both the input and the output and compare every byte. Also
    /// catches an input that reads back differently the second time (changed
    /// while converting, or a faulty read), at about twice the read cost.
    Full,
    /// No check after writing.
    Off,
}

impl Verify {
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Verify::Checksum => "checksum",
            Verify::Full => "full",
            Verify::Off => "none",
        }
    }
}
