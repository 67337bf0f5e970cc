//! `tensorseal scan`: find model files that can run code.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{anyhow, Context};
use globset::{Glob, GlobSet, GlobSetBuilder};
use rayon::prelude::*;
use tensorseal_format::FileKind;
use tensorseal_scan::report::ScanRun;
use tensorseal_scan::{Config, Policy, Scanner, Severity};

use super::args::SeverityArg;
use super::progress::Bar;
use super::{write_stdout, CmdResult, Failure};

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
    #[arg(long, value_enum, value_name = "SEVERITY", default_value = "info")]
    pub min_severity: SeverityArg,
}

fn usage(e: anyhow::Error) -> Failure {
    Failure::usage(e)
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

/// A regular file found by the walk.
struct Found {
    /// The path to open.
    path: PathBuf,
    /// How it is shown.
    display: String,
    /// The canonical path it resolves to, when reached through a symlink.
    target: Option<String>,
    /// (device, inode) of the file reached, to scan each file once.
    key: Option<(u64, u64)>,
}

/// What the walk yields, in path order.
enum Item {
    /// A regular file to scan.
    File(Found),
    /// A path reported without being opened.
    Report(tensorseal_scan::FileReport),
}

/// One unit of work: a file scanned once, and the other paths that reach it.
enum Work {
    Scan { file: Found, aliases: Vec<String> },
    Report(Box<tensorseal_scan::FileReport>),
}

#[cfg(unix)]
fn file_key(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_key(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

fn display(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn canonical(p: &Path) -> Option<String> {
    std::fs::canonicalize(p).ok().map(|t| display(&t))
}

/// The lowercase extension of a path's name, as the scanner's name checks see it.
fn extension(p: &str) -> String {
    let base = p.rsplit(['/', '\\']).next().unwrap_or(p);
    match base.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// The item for a path whose (followed) type is not a regular file or directory.
fn special(scanner: &Scanner, p: &Path, target: Option<String>, kind: FileKind) -> Item {
    Item::Report(scanner.unscannable(
        &display(p),
        target,
        kind.id(),
        &format!("is a {kind}, not a regular file; it was not opened (a loader reading it would get whatever a writer sends)"),
    ))
}

/// The item for a symlink whose target does not exist.
fn dangling(scanner: &Scanner, p: &Path) -> Item {
    let target = std::fs::read_link(p).ok().map(|t| display(&t));
    let why = format!(
        "is a dangling symlink (to {}): its target does not exist, so it could not be scanned",
        target.as_deref().unwrap_or("?")
    );
    Item::Report(scanner.unscannable(&display(p), target, "dangling-symlink", &why))
}

/// The report for a symlink to a directory that contains it: not followed again.
fn symlink_loop(p: &Path, ancestor: &Path) -> Item {
    Item::Report(tensorseal_scan::FileReport {
        path: display(p),
        format: tensorseal_scan::Format::Unknown,
        size: 0,
        findings: Vec::new(),
        members: Vec::new(),
        error: None,
        target: Some(display(ancestor)),
        aliases: Vec::new(),
        skipped: Some("symlink-loop"),
    })
}

fn is_dangling(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
        && std::fs::metadata(p).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

/// Expands the arguments into the paths to report, in path order. Symlinks are followed
/// (files and directories); a symlink back to an ancestor directory is reported as a loop
/// and not followed, and a directory reached twice is walked once. Nothing is opened here:
/// types come from `stat`, so FIFOs, devices and sockets never block.
fn collect(args: &Args, scanner: &Scanner) -> Result<Vec<Item>, Failure> {
    let include = globset(&args.include)?;
    let exclude = globset(&args.exclude)?;
    let keep = |rel: &Path| {
        include.as_ref().is_none_or(|s| matches(s, rel))
            && !exclude.as_ref().is_some_and(|s| matches(s, rel))
    };
    let mut items = Vec::new();
    let mut walked_dirs = std::collections::HashSet::new();
    for p in &args.paths {
        let lmeta = std::fs::symlink_metadata(p)
            .with_context(|| format!("cannot scan {}", p.display()))
            .map_err(usage)?;
        let is_link = lmeta.file_type().is_symlink();
        let meta = match std::fs::metadata(p) {
            Ok(m) => m,
            Err(e) if is_link && e.kind() == std::io::ErrorKind::NotFound => {
                items.push(dangling(scanner, p));
                continue;
            }
            Err(e) => {
                return Err(usage(
                    anyhow::Error::new(e).context(format!("cannot scan {}", p.display())),
                ))
            }
        };
        let target = if is_link { canonical(p) } else { None };
        if meta.is_file() {
            items.push(Item::File(Found {
                path: p.clone(),
                display: display(p),
                target,
                key: file_key(&meta),
            }));
            continue;
        }
        if !meta.is_dir() {
            items.push(special(scanner, p, target, FileKind::of(&meta.file_type())));
            continue;
        }
        // Directories reached through a symlink, innermost last: files under them get
        // their canonical path as `target`.
        let mut linked: Vec<PathBuf> = if is_link { vec![p.clone()] } else { Vec::new() };
        let mut it = walkdir::WalkDir::new(p)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter();
        while let Some(entry) = it.next() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let at = e.path().map(Path::to_path_buf);
                    if let (Some(anc), Some(at)) = (e.loop_ancestor(), &at) {
                        let rel = at.strip_prefix(p).unwrap_or(at);
                        if keep(rel) {
                            items.push(symlink_loop(at, anc));
                        }
                        continue;
                    }
                    if let Some(at) = at.as_deref().filter(|a| is_dangling(a)) {
                        let rel = at.strip_prefix(p).unwrap_or(at);
                        if keep(rel) {
                            items.push(dangling(scanner, at));
                        }
                        continue;
                    }
                    return Err(usage(
                        anyhow::Error::new(e).context(format!("walking {}", p.display())),
                    ));
                }
            };
            while linked.last().is_some_and(|l| !entry.path().starts_with(l)) {
                linked.pop();
            }
            let ft = entry.file_type();
            let via_link = entry.path_is_symlink() || !linked.is_empty();
            if ft.is_dir() {
                // A directory reached a second time (two links to it, or a link to a
                // sibling) is not walked again: its files were or will be scanned.
                if let Some(key) = entry.metadata().ok().as_ref().and_then(file_key) {
                    if !walked_dirs.insert(key) {
                        it.skip_current_dir();
                        continue;
                    }
                }
                if entry.path_is_symlink() {
                    linked.push(entry.path().to_path_buf());
                }
                continue;
            }
            let rel = entry.path().strip_prefix(p).unwrap_or(entry.path());
            if !keep(rel) {
                continue;
            }
            let target = if via_link {
                canonical(entry.path())
            } else {
                None
            };
            if !ft.is_file() {
                items.push(special(scanner, entry.path(), target, FileKind::of(&ft)));
                continue;
            }
            let key = entry.metadata().ok().as_ref().and_then(file_key);
            items.push(Item::File(Found {
                path: entry.into_path(),
                display: String::new(),
                target,
                key,
            }));
            if let Some(Item::File(f)) = items.last_mut() {
                f.display = display(&f.path);
            }
        }
    }
    Ok(items)
}

/// Groups the files that are one file on disk (same device and inode): each is scanned
/// once, the other paths become its aliases. The scanner's name checks depend on the
/// extension, so a file reached under names with two different extensions is scanned
/// once per extension; names without one (the blobs of the Hugging Face cache) join
/// the first group that has one.
fn plan(items: Vec<Item>) -> Vec<Work> {
    use std::collections::{HashMap, HashSet};
    let mut seen_paths = HashSet::new();
    let mut work: Vec<Work> = Vec::new();
    // (key) -> indices in `work` of the scans of that file, by extension.
    let mut by_key: HashMap<(u64, u64), Vec<usize>> = HashMap::new();
    // Files without an extension, waiting for a group with one.
    let mut pending: HashMap<(u64, u64), usize> = HashMap::new();
    for item in items {
        let f = match item {
            Item::Report(r) => {
                if seen_paths.insert(r.path.clone()) {
                    work.push(Work::Report(Box::new(r)));
                }
                continue;
            }
            Item::File(f) => f,
        };
        if !seen_paths.insert(f.display.clone()) {
            continue;
        }
        let Some(key) = f.key else {
            work.push(Work::Scan {
                file: f,
                aliases: Vec::new(),
            });
            continue;
        };
        let ext = extension(&f.display);
        let groups = by_key.entry(key).or_default();
        let same = groups.iter().copied().find(|&i| match &work[i] {
            Work::Scan { file, .. } => ext.is_empty() || extension(&file.display) == ext,
            Work::Report(_) => false,
        });
        if let Some(i) = same {
            if let Work::Scan { aliases, .. } = &mut work[i] {
                aliases.push(f.display);
            }
            continue;
        }
        if !ext.is_empty() {
            // The first named path of a file only seen without an extension so far:
            // scan it under this name, the nameless one becomes its alias.
            if let Some(i) = pending.remove(&key) {
                // `i` is already in `groups`; only its name changes.
                if let Work::Scan { file, aliases } = &mut work[i] {
                    let old = std::mem::replace(file, f);
                    aliases.insert(0, old.display);
                }
                continue;
            }
        }
        work.push(Work::Scan {
            file: f,
            aliases: Vec::new(),
        });
        let i = work.len() - 1;
        if ext.is_empty() {
            pending.insert(key, i);
        }
        groups.push(i);
    }
    work
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
    let files = plan(collect(&args, &scanner)?);
    let progress = if files.len() > 1 {
        Bar::files("scanning", files.len() as u64)
    } else {
        Bar::hidden()
    };
    let found = AtomicU64::new(0);
    let mut reports: Vec<_> = files
        .par_iter()
        .map(|w| {
            let r = match w {
                Work::Scan { file, aliases } => {
                    let mut r = scanner.scan_file(&file.path, &file.display);
                    r.target = file.target.clone();
                    r.aliases = aliases.clone();
                    r
                }
                Work::Report(r) => (**r).clone(),
            };
            let n = found.fetch_add(r.findings.len() as u64, Ordering::Relaxed)
                + r.findings.len() as u64;
            progress.set_message(&n.to_string());
            progress.inc(1);
            r
        })
        .collect();
    progress.finish();
    // Path order, whichever alias a file was scanned under.
    reports.sort_by(|a, b| a.path.cmp(&b.path));
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
    let min = Severity::from(args.min_severity);
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
                    let via = f
                        .target
                        .as_deref()
                        .map(|t| format!(" (-> {})", sanitize(t)))
                        .unwrap_or_default();
                    s.push_str(&format!(
                        "{sev} {} {}{via}{at}: {}\n",
                        x.rule,
                        sanitize(&x.location()),
                        x.message
                    ));
                }
                let shown = f.findings.iter().any(|x| x.severity >= min);
                if f.skipped == Some("symlink-loop") {
                    s.push_str(&format!(
                        "SKIPPED  symlink-loop {} (-> {}): links to a directory that contains it; not followed again\n",
                        sanitize(&f.path),
                        sanitize(f.target.as_deref().unwrap_or("?"))
                    ));
                } else if shown && !f.aliases.is_empty() {
                    let names: Vec<String> = f.aliases.iter().map(|a| sanitize(a)).collect();
                    s.push_str(&format!(
                        "         {} is also reached as: {}\n",
                        sanitize(&f.path),
                        names.join(", ")
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
    if run.nothing_scanned() {
        eprintln!(
            "error: no file was scanned: {} (exit code {})",
            if run.files.is_empty() {
                "the paths hold no file, or --include/--exclude excluded every file"
            } else {
                "every path found is a special file, dangling link or loop"
            },
            tensorseal_scan::report::EXIT_NOTHING_SCANNED
        );
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
