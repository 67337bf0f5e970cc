//! `tensorseal inspect`.

use std::path::PathBuf;

use super::{CmdResult, Failure, EXIT_USAGE};

/// Arguments of `inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// A .safetensors file, a *.safetensors.index.json, or a directory holding either.
    pub path: PathBuf,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> CmdResult {
    Err(Failure {
        code: EXIT_USAGE,
        error: anyhow::anyhow!("inspect {}: not implemented yet", args.path.display()),
    })
}
