//! `tensorseal`: the command-line front end. Glue only; the work is in `crates/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Split(args) => cmd::split::run(args),
        Command::Merge(args) => cmd::merge::run(args),
    };
    cmd::finish(result)
}
