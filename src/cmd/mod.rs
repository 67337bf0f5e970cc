//! One module per subcommand, and the glue they share: [`Failure`] (every
//! error with its exit code), [`progress`] bars, typed [`args`] parsers and
//! stdout/secret helpers. Exit codes are documented in the README.

pub mod args;
pub mod convert;
pub mod digest;
pub mod docs;
pub mod inspect;
pub mod merge;
pub mod parallel;
pub mod progress;
pub mod quant;
pub mod scan;
pub mod sign;
pub mod split;
pub mod verify;

/// Exit code for a successful run.
pub const EXIT_OK: u8 = 0;
/// Exit code for invalid input data (a bad file, a bad signature) or findings.
pub const EXIT_INVALID: u8 = 1;
/// Exit code for usage and I/O errors.
pub const EXIT_USAGE: u8 = 2;

/// Why a subcommand failed: an error and the exit code it maps to.
///
/// Library errors convert with `?`: each crate's error knows whether it is
/// about the environment (I/O, arguments: [`EXIT_USAGE`]) or about the input
/// ([`EXIT_INVALID`]). Anything else is a usage/I/O error unless built with
/// [`Failure::invalid`].
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    /// A usage or I/O error (exit code 2).
    pub fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: EXIT_USAGE,
            error: error.into(),
        }
    }

    /// Invalid input data (exit code 1).
    pub fn invalid(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: EXIT_INVALID,
            error: error.into(),
        }
    }

    /// The same failure with another exit code.
    pub fn with_code(self, code: u8) -> Failure {
        Failure { code, ..self }
    }

    /// The message printed after `error: `: the error and each cause in the
    /// chain, once. Errors that quote their cause in their own message are
    /// not followed by it again.
    pub fn message(&self) -> String {
        let mut msg = String::new();
        for cause in self.error.chain() {
            let text = cause.to_string();
            if text.is_empty() || msg.contains(&text) {
                continue;
            }
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&text);
        }
        msg
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure::usage(error)
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Failure {
        Failure::usage(error)
    }
}

impl From<tensorseal_format::FormatError> for Failure {
    fn from(e: tensorseal_format::FormatError) -> Failure {
        if e.is_io() {
            Failure::usage(e)
        } else {
            Failure::invalid(e)
        }
    }
}

impl From<tensorseal_convert::ConvertError> for Failure {
    fn from(e: tensorseal_convert::ConvertError) -> Failure {
        if e.is_invalid_input() {
            Failure::invalid(e)
        } else {
            Failure::usage(e)
        }
    }
}

impl From<tensorseal_quant::QuantError> for Failure {
    fn from(e: tensorseal_quant::QuantError) -> Failure {
        // Environment problems are usage/I/O errors; invalid or unsupported
        // content is invalid input.
        if e.is_environment() {
            Failure::usage(e)
        } else {
            Failure::invalid(e)
        }
    }
}

impl From<tensorseal_sign::SignError> for Failure {
    fn from(e: tensorseal_sign::SignError) -> Failure {
        // Environment problems (files, keys, links) are usage/I/O errors;
        // everything about the signature is invalid input.
        if e.is_environment() {
            Failure::usage(e)
        } else {
            Failure::invalid(e)
        }
    }
}

/// What a subcommand returns: its exit code, or why it failed.
pub type CmdResult = Result<u8, Failure>;

/// Prints a failure as one line on stderr and returns the exit code.
pub fn finish(result: CmdResult) -> u8 {
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("error: {}", f.message());
            f.code
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

/// Most bytes read from a key or password file.
pub const MAX_SECRET_BYTES: u64 = 1 << 20;

/// Reads a key or password file the user names. Unlike model files these may be pipes
/// (`--private-key <(pass show key)`, `/dev/stdin`), so a FIFO is read, but never more
/// than [`MAX_SECRET_BYTES`]: `/dev/zero` is an error, not an endless read.
pub fn read_secret(path: &std::path::Path, what: &str) -> Result<Vec<u8>, Failure> {
    use anyhow::Context;
    use std::io::Read;
    let ctx = || format!("reading {what} {}", path.display());
    let f = std::fs::File::open(path).with_context(ctx)?;
    if f.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(Failure::usage(anyhow::anyhow!("{}: is a directory", ctx())));
    }
    let mut buf = Vec::new();
    f.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut buf)
        .with_context(ctx)?;
    if buf.len() as u64 > MAX_SECRET_BYTES {
        return Err(Failure::usage(anyhow::anyhow!(
            "{}: more than {MAX_SECRET_BYTES} bytes",
            ctx()
        )));
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
        Err(e) => Err(Failure::usage(
            anyhow::Error::new(e).context("writing to stdout"),
        )),
    }
}

/// Every `--json` document: pretty-printed, one trailing newline, with
/// `schema` (`tensorseal-<command>/1`) as its first field.
pub fn write_json(schema: &str, doc: impl serde::Serialize) -> Result<(), Failure> {
    let mut value = serde_json::to_value(doc).map_err(|e| Failure::usage(anyhow::anyhow!(e)))?;
    if let serde_json::Value::Object(map) = &mut value {
        if !map.contains_key("schema") {
            let mut with = serde_json::Map::with_capacity(map.len() + 1);
            with.insert("schema".into(), schema.into());
            with.append(map);
            *map = with;
        }
    }
    let mut s =
        serde_json::to_string_pretty(&value).map_err(|e| Failure::usage(anyhow::anyhow!(e)))?;
    s.push('\n');
    write_stdout(&s)
}

/// "1 tensor", "2 tensors": `n` and the noun, plural unless `n` is 1.
pub fn plural(n: impl Into<u128>, noun: &str) -> String {
    let n = n.into();
    format!("{} {noun}{}", group(n), if n == 1 { "" } else { "s" })
}

/// `n` with thousands separators: 1,234,567.
pub fn group(n: u128) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A byte count for people: "1,236 bytes", or "2,068,000 bytes (2.07 MB)"
/// from 1 kB on (powers of 10, as file managers and Hugging Face show them).
pub fn bytes(n: u64) -> String {
    let exact = format!(
        "{} {}",
        group(n as u128),
        if n == 1 { "byte" } else { "bytes" }
    );
    if n < 1000 {
        return exact;
    }
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = n as f64 / 1000.0;
    let mut u = 0;
    while v >= 999.995 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    format!("{exact} ({v:.2} {})", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes() {
        assert_eq!(bytes(0), "0 bytes");
        assert_eq!(bytes(1), "1 byte");
        assert_eq!(bytes(999), "999 bytes");
        assert_eq!(bytes(1000), "1,000 bytes (1.00 kB)");
        assert_eq!(bytes(2_068), "2,068 bytes (2.07 kB)");
        assert_eq!(bytes(999_999), "999,999 bytes (1.00 MB)");
        assert_eq!(bytes(5_000_000_000), "5,000,000,000 bytes (5.00 GB)");
        assert!(bytes(u64::MAX).ends_with("EB)"));
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(1u64, "tensor"), "1 tensor");
        assert_eq!(plural(0u64, "tensor"), "0 tensors");
        assert_eq!(plural(1234u64, "file"), "1,234 files");
    }

    #[test]
    fn causes_print_once() {
        let inner = std::io::Error::other("disk full");
        let e = anyhow::Error::new(inner).context("writing x: disk full");
        assert_eq!(Failure::usage(e).message(), "writing x: disk full");
        let e = anyhow::Error::new(std::io::Error::other("denied")).context("reading y");
        assert_eq!(Failure::usage(e).message(), "reading y: denied");
    }
}
