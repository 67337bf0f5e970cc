//! One module per subcommand. Exit codes are documented in the README.

use std::process::ExitCode;

pub mod digest;
pub mod inspect;
pub mod sign;
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
