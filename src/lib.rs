//! `tensorseal`: the command-line front end, as a library so that the binary
//! and the Python package (`tensorseal` console script, `python -m
//! tensorseal`) run the same code. Glue only; the work is in `crates/`.
#![forbid(unsafe_code)]

use std::ffi::OsString;

use clap::{CommandFactory, Parser, Subcommand};

mod cmd;

pub use cmd::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};

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
    /// Convert a pickle checkpoint (torch zip or legacy, NumPy) to safetensors without running it, or back with --to torch.
    Convert(cmd::convert::Args),
    /// Write the dense equivalent of a quantized checkpoint (GPTQ, AWQ, block FP8, compressed-tensors, NVFP4, MXFP4, bitsandbytes).
    Dequantize(cmd::quant::DequantizeArgs),
    /// Write the dense equivalent of a file holding sparse tensors (docs/sparse.md).
    Densify(cmd::quant::DensifyArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(cmd::docs::CompletionsArgs),
    /// Print the man page (roff) on stdout: `tensorseal man > tensorseal.1`.
    Man(cmd::docs::ManArgs),
}

/// The clap command tree, for completions and the man page.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs the command line `args` (the first item is the program name) and
/// returns the process exit code (see the README's exit-code table). Usage
/// errors, `--help` and `--version` are printed here too.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print on stdout and exit 0; usage errors on stderr, 2.
            let _ = e.print();
            return u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE);
        }
    };
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
        Command::Completions(args) => cmd::docs::completions(args),
        Command::Man(args) => cmd::docs::man(args),
    };
    cmd::finish(result)
}
