//! Typed command-line values, parsed by clap so that a bad value is a usage
//! error naming the flag (exit code 2) before any work starts.

use tensorseal_scan::Severity;

/// A byte size: `5GB`, `500MB`, `10GiB`, `1.5GB` or a number of bytes
/// (Hugging Face rules: GB/MB/KB powers of 10, GiB/MiB/KiB powers of 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

/// The clap value parser of [`Size`].
pub fn parse_size(s: &str) -> Result<Size, String> {
    tensorseal_format::shard::parse_size(s).map(Size)
}

/// A finding severity, as `--min-severity` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SeverityArg {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl From<SeverityArg> for Severity {
    fn from(s: SeverityArg) -> Severity {
        match s {
            SeverityArg::Info => Severity::Info,
            SeverityArg::Low => Severity::Low,
            SeverityArg::Medium => Severity::Medium,
            SeverityArg::High => Severity::High,
            SeverityArg::Critical => Severity::Critical,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("5GB"), Ok(Size(5_000_000_000)));
        assert_eq!(parse_size("1KiB"), Ok(Size(1024)));
        assert_eq!(parse_size("600"), Ok(Size(600)));
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("0").is_err());
    }
}
