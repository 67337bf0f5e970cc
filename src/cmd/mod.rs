//! One module per subcommand. Exit codes are documented in the README.

use std::process::ExitCode;

use anyhow::Context;

pub mod convert;
pub mod digest;
pub mod inspect;
pub mod merge;
pub mod parallel;
pub mod scan;
pub mod sign;
pub mod split;
pub mod verify;

/// Exit code for a successful run.
pub const EXIT_OK: u8 = 0;
/// Exit code for invalid input data (a bad file) or findings.
pub const EXIT_INVALID: u8 = 1;
/// Exit code for usage and I/O errors.
pub const EXIT_USAGE: u8 = 2;

/// The outcome of a subcommand: an exit code, or an error with its code.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

pub type CmdResult = Result<u8, Failure>;

/// Prints a failure as one line on stderr and maps it to the exit code.
pub fn finish(result: CmdResult) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

/// The durability of a command's writes: `--sync` fsyncs them.
pub fn durability(sync: bool) -> tensorseal_format::Durability {
    if sync {
        tensorseal_format::Durability::Sync
    } else {
        tensorseal_format::Durability::NoSync
    }
}

/// Maps a format error to its exit code: I/O problems are 2, invalid content 1.
pub fn format_failure(e: tensorseal_format::FormatError) -> Failure {
    Failure {
        code: if e.is_io() { EXIT_USAGE } else { EXIT_INVALID },
        // The message already quotes the cause: keep it one line, no chain.
        error: anyhow::anyhow!("{e}"),
    }
}

/// Most bytes read from a key or password file.
pub const MAX_SECRET_BYTES: u64 = 1 << 20;

/// Reads a key or password file the user names. Unlike model files these may be pipes
/// (`--private-key <(pass show key)`, `/dev/stdin`), so a FIFO is read, but never more
/// than [`MAX_SECRET_BYTES`]: `/dev/zero` is an error, not an endless read.
pub fn read_secret(path: &std::path::Path, what: &str) -> Result<Vec<u8>, Failure> {
    use std::io::Read;
    let ctx = || format!("reading {what} {}", path.display());
    let f = std::fs::File::open(path)
        .with_context(ctx)
        .map_err(|error| Failure {
            code: EXIT_USAGE,
            error,
        })?;
    if f.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(Failure {
            code: EXIT_USAGE,
            error: anyhow::anyhow!("{}: is a directory", ctx()),
        });
    }
    let mut buf = Vec::new();
    f.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut buf)
        .with_context(ctx)
        .map_err(|error| Failure {
            code: EXIT_USAGE,
            error,
        })?;
    if buf.len() as u64 > MAX_SECRET_BYTES {
        return Err(Failure {
            code: EXIT_USAGE,
            error: anyhow::anyhow!("{}: more than {MAX_SECRET_BYTES} bytes", ctx()),
        });
    }
    Ok(buf)
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
pub fn write_stdout(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure {
            code: EXIT_USAGE,
            error: anyhow::Error::new(e).context("writing to stdout"),
        }),
    }
}
