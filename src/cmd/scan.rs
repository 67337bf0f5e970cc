//! `tensorseal scan`: find model files that can run code.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{anyhow, Context};
use globset::{Glob, GlobSet, GlobSetBuilder};
use rayon::prelude::*;
use tensorseal_scan::report::ScanRun;
use tensorseal_scan::{Config, Policy, Scanner, Severity};

use super::{write_stdout, CmdResult, Failure, EXIT_USAGE};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyArg {
    /// Fail on dangerous or unknown pickle globals, invalid files and deceptive archives.
    Default,
    /// Also fail on every weight file that is not safetensors.
    SafetensorsOnly,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One line per finding and a summary.
    Text,
    /// One JSON document (schema "tensorseal-scan/1", see README).
    Json,
    /// SARIF 2.1.0 for code-scanning dashboards.
    Sarif,
}

/// Arguments of `scan`.
#[derive(clap::Args)]
pub struct Args {
    /// Files and directories to scan (directories recursively).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Only scan files in directories whose path (relative to the directory) or name
    /// matches one of these globs.
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Skip files in directories whose relative path or name matches one of these globs.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// What makes the scan fail (exit code 1).
    #[arg(long, value_enum, default_value = "default")]
    pub policy: PolicyArg,
    /// Accept a pickle global that is not on the weights allow-list (`module.name`, or
    /// `module.*`). Repeatable. Dangerous globals cannot be allowed.
    #[arg(long, value_name = "MODULE.NAME")]
    pub allow: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// How many levels of archives nested inside a scanned archive are opened.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub max_depth: u32,
    /// Write the report to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Do not print findings of severity below this (they still count in the summary).
    #[arg(long, value_name = "SEVERITY", default_value = "info", value_parser = ["info", "low", "medium", "high", "critical"])]
    pub min_severity: String,
}

fn usage(e: anyhow::Error) -> Failure {
    Failure {
        code: EXIT_USAGE,
        error: e,
    }
}

fn globset(globs: &[String]) -> Result<Option<GlobSet>, Failure> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(Glob::new(g).map_err(|e| usage(anyhow!("invalid glob {g:?}: {e}")))?);
    }
    b.build().map(Some).map_err(|e| usage(anyhow!("{e}")))
}

fn matches(set: &GlobSet, rel: &Path) -> bool {
    set.is_match(rel) || rel.file_name().is_some_and(|n| set.is_match(Path::new(n)))
}

/// Expands the arguments into the list of files to scan (sorted, deduplicated).
fn collect(args: &Args) -> Result<Vec<PathBuf>, Failure> {
    let include = globset(&args.include)?;
    let exclude = globset(&args.exclude)?;
    let mut files = Vec::new();
    for p in &args.paths {
        let meta = std::fs::metadata(p)
            .with_context(|| format!("cannot scan {}", p.display()))
            .map_err(usage)?;
        if !meta.is_dir() {
            files.push(p.clone());
            continue;
        }
        for entry in walkdir::WalkDir::new(p)
            .follow_links(false)
            .sort_by_file_name()
        {
            let entry = entry
                .with_context(|| format!("walking {}", p.display()))
                .map_err(usage)?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(p).unwrap_or(entry.path());
            if include.as_ref().is_some_and(|s| !matches(s, rel)) {
                continue;
            }
            if exclude.as_ref().is_some_and(|s| matches(s, rel)) {
                continue;
            }
            files.push(entry.into_path());
        }
    }
    files.dedup();
    Ok(files)
}

pub fn run(args: Args) -> CmdResult {
    for a in &args.allow {
        let ok = a
            .rsplit_once('.')
            .is_some_and(|(m, n)| !m.is_empty() && !n.is_empty());
        if !ok {
            return Err(usage(anyhow!(
                "--allow {a:?}: expected module.name (or module.*)"
            )));
        }
    }
    let files = collect(&args)?;
    let policy = match args.policy {
        PolicyArg::Default => Policy::Default,
        PolicyArg::SafetensorsOnly => Policy::SafetensorsOnly,
    };
    let cfg = Config {
        policy,
        allow: args.allow.clone(),
        max_depth: args.max_depth,
        ..Config::default()
    };
    let scanner = Scanner::new(cfg);
    let progress = if std::io::stderr().is_terminal() && files.len() > 1 {
        let pb = indicatif::ProgressBar::new(files.len() as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} scanning [{bar:30}] {pos}/{len} files, {msg} findings ({elapsed})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        pb.set_message("0");
        Some(pb)
    } else {
        None
    };
    let found = AtomicU64::new(0);
    let reports: Vec<_> = files
        .par_iter()
        .map(|path| {
            let display = path.to_string_lossy().into_owned();
            let r = scanner.scan_file(path, &display);
            if let Some(pb) = &progress {
                let n = found.fetch_add(r.findings.len() as u64, Ordering::Relaxed)
                    + r.findings.len() as u64;
                pb.set_message(n.to_string());
                pb.inc(1);
            }
            r
        })
        .collect();
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    let run = ScanRun {
        policy,
        allow: args.allow.clone(),
        files: reports,
    };
    let version = env!("CARGO_PKG_VERSION");
    let format = if args.json {
        OutputFormat::Json
    } else {
        args.format
    };
    let min = match args.min_severity.as_str() {
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        _ => Severity::Info,
    };
    let text = match format {
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&run.to_json(version))
                .map_err(|e| usage(anyhow!(e)))?;
            s.push('\n');
            s
        }
        OutputFormat::Sarif => {
            let mut s =
                serde_json::to_string_pretty(&tensorseal_scan::sarif::to_sarif(&run, version))
                    .map_err(|e| usage(anyhow!(e)))?;
            s.push('\n');
            s
        }
        OutputFormat::Text => {
            let color = args.output.is_none()
                && std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            let mut s = String::new();
            for f in run.files.iter() {
                for x in f.findings.iter().filter(|x| x.severity >= min) {
                    let at = x.offset.map(|o| format!("@{o}")).unwrap_or_default();
                    let sev = format!("{:<8}", x.severity.as_str().to_uppercase());
                    let sev = if color {
                        let code = match x.severity {
                            Severity::Critical => "1;31",
                            Severity::High => "31",
                            Severity::Medium => "33",
                            _ => "36",
                        };
                        format!("\x1b[{code}m{sev}\x1b[0m")
                    } else {
                        sev
                    };
                    s.push_str(&format!(
                        "{sev} {} {}{at}: {}\n",
                        x.rule,
                        sanitize(&x.location()),
                        x.message
                    ));
                }
            }
            s.push_str(&run.text_summary());
            s.push('\n');
            s
        }
    };
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("writing {}", path.display()))
            .map_err(usage)?,
        None => write_stdout(&text)?,
    }
    Ok(run.exit_code())
}

/// Member names come from untrusted archives: no raw control characters on a terminal.
fn sanitize(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}
