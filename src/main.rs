//! `tensorseal`: the command-line front end. Glue only; the work is in `crates/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// mimalloc instead of the system allocator: glibc returns freed memory of
/// its per-thread arenas to the kernel (`madvise`) after nearly every file a
/// parallel `scan` looks at, and each such call interrupts the other CPUs to
/// flush their TLBs; on a directory of small pickles that was a third of the
/// scan's time (BENCHMARKS.md, "Scanner").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Safe, complete and fast tooling for safetensors model weights.
#[derive(Parser)]
#[command(name = "tensorseal", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the metadata and tensors of a safetensors file, sharded index or directory.
    Inspect(cmd::inspect::Args),
    /// Split a .safetensors file into Hugging Face-style shards plus an index.
    Split(cmd::split::Args),
    /// Merge a sharded checkpoint (index or directory) into one .safetensors file.
    Merge(cmd::merge::Args),
    /// Sign a model directory (OpenSSF model signing format, as `model_signing sign key`).
    Sign(cmd::sign::Args),
    /// Verify a model directory against its signature; lists every changed, missing or extra file.
    Verify(cmd::verify::Args),
    /// Print the model's root digest (the SHA-256 that `sign` signs), or its manifest with --json.
    Digest(cmd::digest::Args),
    /// Find model files that can run code (pickles, archives, every format by content).
    Scan(cmd::scan::Args),
    /// Write the dense equivalent of a quantized checkpoint (GPTQ, AWQ, block FP8, compressed-tensors, NVFP4, MXFP4, bitsandbytes).
    Dequantize(cmd::quant::DequantizeArgs),
    /// Write the dense equivalent of a file holding sparse tensors (docs/sparse.md).
    Densify(cmd::quant::DensifyArgs),
    /// Convert a pickle checkpoint (torch zip or legacy, NumPy) to safetensors without running it, or back with --to torch.
    Convert(cmd::convert::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Split(args) => cmd::split::run(args),
        Command::Merge(args) => cmd::merge::run(args),
        Command::Sign(args) => cmd::sign::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Digest(args) => cmd::digest::run(args),
        Command::Scan(args) => cmd::scan::run(args),
        Command::Convert(args) => cmd::convert::run(args),
        Command::Dequantize(args) => cmd::quant::run_dequantize(args),
        Command::Densify(args) => cmd::quant::run_densify(args),
    };
    cmd::finish(result)
}
