//! Find model files that can run code.
//!
//! The scanner identifies every file by its content (never its name), then looks inside:
//! pickles are analysed by the non-executing reader of `tensorseal-pickle` (every global
//! of every pickle of a stream, nested pickles included), zip archives are read through both
//! their local headers and their central directory, tar/gzip archives are unpacked in
//! memory within limits, safetensors headers are validated by the core, and each other
//! format gets the checks that are cheap and meaningful for it.
//!
//! Invariants: the scanner never unpickles, imports or executes anything; every read of
//! archive content is bounded (per member, per file, and in nesting depth); tensor bytes of
//! torch checkpoints and safetensors files are never read.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod finding;
mod formats;
pub mod identify;
pub mod pickle_lex;
mod pickles;
pub mod report;
pub mod sarif;
pub mod source;
pub mod zipread;
mod zipscan;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

pub use finding::{Finding, Rule, Severity, RULES};
pub use identify::{identify, Format};
use source::{read_upto, FileSource, Source};

use finding::ids;

/// What makes a scan fail (exit code 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Fail on dangerous or unknown pickle globals, invalid files and deceptive structure
    /// (every finding of severity high or critical).
    Default,
    /// As `Default`, and also fail on every weight file that is not safetensors.
    SafetensorsOnly,
}

impl Policy {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Default => "default",
            Policy::SafetensorsOnly => "safetensors-only",
        }
    }
}

/// Scanner settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The policy in force.
    pub policy: Policy,
    /// Globals accepted in addition to the weights allow-list: `module.name`, or `module.*`.
    pub allow: Vec<String>,
    /// How many levels of archives nested inside the scanned archive are opened.
    pub max_depth: u32,
    /// Most bytes decompressed (or read) for one archive member.
    pub max_member_bytes: u64,
    /// Most bytes decompressed in total for one scanned file (decompression bombs).
    pub max_total_bytes: u64,
    /// Most members of one archive.
    pub max_members: usize,
    /// Most bytes of pickle data read from one file or member.
    pub max_pickle_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            policy: Policy::Default,
            allow: Vec::new(),
            max_depth: 3,
            max_member_bytes: 512 << 20,
            max_total_bytes: 2 << 30,
            max_members: 100_000,
            max_pickle_bytes: 1 << 30,
        }
    }
}

impl Config {
    /// Whether `--allow` accepts `module.name`.
    pub fn is_allowed(&self, global: &str) -> bool {
        self.allow.iter().any(|a| {
            a == global
                || a.strip_suffix(".*").is_some_and(|m| {
                    global
                        .strip_prefix(m)
                        .is_some_and(|rest| rest.starts_with('.'))
                })
        })
    }
}

/// An archive member that was looked at.
#[derive(Debug, Clone, Serialize)]
pub struct MemberReport {
    /// Member path from the outer file inwards.
    pub member: Vec<String>,
    /// Its format.
    pub format: Format,
    /// Its size in bytes (as read).
    pub size: u64,
}

/// The result of scanning one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The file, as given or found.
    pub path: String,
    /// Its format.
    pub format: Format,
    /// Its size in bytes.
    pub size: u64,
    /// Findings, in the order found.
    pub findings: Vec<Finding>,
    /// Archive members looked at (empty for non-archives).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberReport>,
    /// Set when the file could not be read at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When `path` is a symlink, or lies under a symlinked directory: the file it resolves
    /// to (canonical path), or for a dangling link the link's text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Other paths of this scan that reach the same file (same device and inode), whose
    /// content was therefore not read again.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Set for a path that was found but is not a regular file, so its content was never
    /// opened: `fifo`, `char-device`, `block-device`, `socket`, `directory`, `special`,
    /// `dangling-symlink` or `symlink-loop`. Such reports do not count as scanned files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<&'static str>,
}

impl FileReport {
    /// Whether any finding violates the policy.
    pub fn fails_policy(&self) -> bool {
        self.findings.iter().any(|f| f.fails_policy)
    }
}

/// The scanner: a configuration plus the entry points.
#[derive(Debug, Clone, Default)]
pub struct Scanner {
    cfg: Config,
}

pub(crate) struct Ctx<'a> {
    pub cfg: &'a Config,
    pub path: String,
    pub findings: Vec<Finding>,
    pub members: Vec<MemberReport>,
    /// Decompressed bytes left for this file.
    pub budget: u64,
    /// Whether the budget-exhausted finding was already reported.
    pub budget_reported: bool,
    /// Inside a TorchScript archive: `__torch__.*` and `torch.jit._pickle.*` globals are
    /// classes compiled from the archive's code (reported once as `torchscript-code`), not
    /// Python imports.
    pub in_torchscript: bool,
}

impl Ctx<'_> {
    /// Adds a finding with the rule's default severity.
    pub fn add(
        &mut self,
        rule: &'static str,
        loc: &[String],
        offset: Option<u64>,
        global: Option<String>,
        message: String,
    ) {
        let sev = finding::rule(rule).map_or(Severity::High, |r| r.severity);
        self.add_sev(rule, sev, loc, offset, global, message);
    }

    /// The bytes of `read`, or `None` after recording a `read-error` finding.
    pub fn read_or_report(
        &mut self,
        loc: &[String],
        read: std::io::Result<Vec<u8>>,
    ) -> Option<Vec<u8>> {
        match read {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.add(
                    ids::READ_ERROR,
                    loc,
                    None,
                    None,
                    format!("read failed: {e}"),
                );
                None
            }
        }
    }

    /// Adds a finding with an explicit severity.
    pub fn add_sev(
        &mut self,
        rule: &'static str,
        severity: Severity,
        loc: &[String],
        offset: Option<u64>,
        global: Option<String>,
        message: String,
    ) {
        self.findings.push(Finding {
            rule,
            severity,
            path: self.path.clone(),
            member: loc.to_vec(),
            offset,
            global,
            message,
            fails_policy: severity >= Severity::High,
        });
    }

    /// Takes `n` bytes from the decompression budget; false (and one finding) when exhausted.
    pub fn spend(&mut self, n: u64, loc: &[String]) -> bool {
        if n > self.budget {
            if !self.budget_reported {
                self.budget_reported = true;
                let limit = self.cfg.max_total_bytes;
                self.add(
                    ids::ARCHIVE_LIMIT,
                    loc,
                    None,
                    None,
                    format!("decompressed content exceeds the limit of {limit} bytes for one file; the rest was not scanned"),
                );
            }
            self.budget = 0;
            return false;
        }
        self.budget -= n;
        true
    }
}

impl Scanner {
    /// A scanner with the given settings.
    pub fn new(cfg: Config) -> Scanner {
        Scanner { cfg }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Scans a file on disk. `display` is how the path is shown in findings.
    pub fn scan_file(&self, path: &Path, display: &str) -> FileReport {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match FileSource::open(path) {
            Ok(src) => self.scan_source(display, &name, &src),
            Err(e) => self.read_error(
                display,
                format!("cannot read {}: {e}", finding::quote(display, 200)),
                e.to_string(),
                None,
                // A FIFO or device named directly (or swapped in since it was listed).
                tensorseal_format::open::refused_kind(&e).map(|k| k.id()),
            ),
        }
    }

    /// The report for a path that must not be opened (a FIFO, a device, a socket, a
    /// dangling symlink): a `read-error` finding (severity high, fails every policy: an
    /// unscannable path fails closed) and `skipped` set to `kind`.
    pub fn unscannable(
        &self,
        display: &str,
        target: Option<String>,
        kind: &'static str,
        why: &str,
    ) -> FileReport {
        let message = format!("not scanned: {} {why}", finding::quote(display, 200));
        self.read_error(display, message.clone(), message, target, Some(kind))
    }

    /// The report for a path that could not be read: one `read-error` finding saying
    /// `message`, and `error` as the file's error.
    fn read_error(
        &self,
        display: &str,
        message: String,
        error: String,
        target: Option<String>,
        skipped: Option<&'static str>,
    ) -> FileReport {
        let mut ctx = self.ctx(display);
        ctx.add(ids::READ_ERROR, &[], None, None, message);
        FileReport {
            path: display.to_owned(),
            format: Format::Unknown,
            size: 0,
            findings: ctx.findings,
            members: Vec::new(),
            error: Some(error),
            target,
            aliases: Vec::new(),
            skipped,
        }
    }

    /// Scans bytes in memory as if they were a file called `name`.
    pub fn scan_bytes(&self, display: &str, name: &str, bytes: &[u8]) -> FileReport {
        self.scan_source(display, name, &bytes)
    }

    fn ctx(&self, display: &str) -> Ctx<'_> {
        Ctx {
            cfg: &self.cfg,
            path: display.to_owned(),
            findings: Vec::new(),
            members: Vec::new(),
            budget: self.cfg.max_total_bytes,
            budget_reported: false,
            in_torchscript: false,
        }
    }

    /// Scans any random-access source.
    pub fn scan_source(&self, display: &str, name: &str, src: &dyn Source) -> FileReport {
        let mut ctx = self.ctx(display);
        let format = scan_content(&mut ctx, src, &[], 0, name);
        let mut error = None;
        if let Some(f) = ctx.findings.iter().find(|f| f.rule == ids::READ_ERROR) {
            error = Some(f.message.clone());
        }
        FileReport {
            path: display.to_owned(),
            format,
            size: src.len(),
            findings: ctx.findings,
            members: ctx.members,
            error,
            target: None,
            aliases: Vec::new(),
            skipped: None,
        }
    }
}

/// Extension (lowercase, without dot) of a name.
fn extension(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    match base.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// Formats that execute or hide content: finding one under a name that promises something
/// else is deceptive.
fn is_risky(f: Format) -> bool {
    matches!(
        f,
        Format::Pickle
            | Format::TorchLegacy
            | Format::TorchZip
            | Format::Torchscript
            | Format::Zip
            | Format::Tar
            | Format::Gzip
            | Format::Compressed
            | Format::SevenZip
            | Format::Npz
            | Format::KerasZip
    )
}

fn check_name_vs_content(ctx: &mut Ctx<'_>, loc: &[String], name: &str, fmt: Format) {
    let ext = extension(name);
    let expected: &[Format] = match ext.as_str() {
        "safetensors" => &[Format::Safetensors],
        "npy" => &[Format::Npy],
        "npz" => &[Format::Npz, Format::Zip],
        "gguf" => &[Format::Gguf],
        "onnx" => &[Format::Onnx, Format::Unknown],
        "h5" | "hdf5" => &[Format::Hdf5],
        "keras" => &[Format::KerasZip, Format::Hdf5, Format::Zip],
        "json" | "txt" | "md" | "yaml" | "yml" | "csv" | "model" | "tiktoken" | "py" => &[],
        _ => return,
    };
    if fmt == Format::Empty || expected.contains(&fmt) {
        return;
    }
    if ext == "safetensors" || is_risky(fmt) {
        ctx.add(
            ids::FORMAT_NAME_MISMATCH,
            loc,
            None,
            None,
            format!(
                "{} is named .{ext} but its content is {fmt}",
                finding::quote(name, 200)
            ),
        );
    }
}

/// Identifies `src` and runs the checks for its format. `depth` counts the archives around
/// it. Returns the (refined) format.
pub(crate) fn scan_content(
    ctx: &mut Ctx<'_>,
    src: &dyn Source,
    loc: &[String],
    depth: u32,
    name: &str,
) -> Format {
    let Some(prefix) = ctx.read_or_report(loc, read_upto(src, 0, identify::PREFIX_LEN as u64))
    else {
        return Format::Unknown;
    };
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let mut fmt = identify::identify(&prefix, src.len(), base == "saved_model.pb");
    if fmt == Format::Unknown {
        // No magic placed it: whether pickle.load runs it is decided by the machine.
        if let Some(f) = pickles::identify_unsure(ctx, src, loc) {
            fmt = f;
        }
    }
    if fmt.is_container() && depth > ctx.cfg.max_depth {
        ctx.add(
            ids::ARCHIVE_LIMIT,
            loc,
            None,
            None,
            format!(
                "{fmt} nested {depth} levels deep exceeds --max-depth {}; its content was not scanned",
                ctx.cfg.max_depth
            ),
        );
        record_member(ctx, loc, fmt, src.len());
        return fmt;
    }
    match fmt {
        Format::Safetensors => formats::scan_safetensors(ctx, src, loc),
        Format::Pickle => pickles::scan_pickle_file(ctx, src, loc, depth),
        Format::TorchLegacy => pickles::scan_legacy_torch(ctx, src, loc, depth),
        Format::Npy => formats::scan_npy(ctx, src, loc, depth),
        Format::Zip => fmt = zipscan::scan_zip(ctx, src, loc, depth),
        Format::Tar => zipscan::scan_tar(ctx, src, loc, depth),
        Format::Compressed if identify::is_joblib_zfile(&prefix) => {
            zipscan::scan_joblib_zfile(ctx, src, loc, depth)
        }
        Format::Gzip | Format::Compressed => match tensorseal_codec::sniff(&prefix) {
            Some(codec) => zipscan::scan_compressed(ctx, src, loc, depth, base, codec),
            None => ctx.add(
                ids::ARCHIVE_INVALID,
                loc,
                None,
                None,
                format!("{fmt} content of an unknown compression"),
            ),
        },
        Format::SevenZip => ctx.add(
            ids::ARCHIVE_UNSCANNABLE,
            loc,
            None,
            None,
            format!(
                "{fmt} content cannot be unpacked by the scanner; unpack it and scan the files"
            ),
        ),
        Format::Gguf => formats::scan_gguf(ctx, src, loc),
        Format::Hdf5 => formats::scan_hdf5(ctx, src, loc),
        Format::TfSavedModel => formats::scan_tf(ctx, src, loc),
        Format::Onnx => formats::scan_onnx(ctx, src, loc),
        Format::Unknown if extension(name) == "safetensors" => {
            // Named safetensors but not even the prefix fits: say why the core refuses it.
            formats::scan_safetensors(ctx, src, loc);
        }
        _ => {}
    }
    if fmt == Format::Compressed
        && tensorseal_codec::sniff(&prefix) == Some(tensorseal_codec::Codec::LzmaAlone)
        && matches!(
            pickle_lex::frame(&prefix, 0),
            pickle_lex::Frame::Complete { .. }
        )
    {
        // lzma-alone has no magic: bytes can be a plausible lzma header and a complete
        // pickle at once. pickle.load runs the pickle and `lzma.open` (pandas' `.xz`)
        // decodes the stream, so both were analysed; the pickle names the format.
        pickles::scan_pickle_file(ctx, src, loc, depth);
        fmt = Format::Pickle;
    }
    if !matches!(
        fmt,
        Format::Pickle | Format::TorchLegacy | Format::Empty | Format::Unknown
    ) {
        // Other magics can be pickle opcodes too ('G' of GGUF, a header length).
        pickles::scan_pickle_prefix(ctx, src, loc, fmt);
    }
    if !fmt.is_container() && fmt != Format::Empty {
        formats::check_polyglot(ctx, src, loc, depth, fmt);
    }
    check_name_vs_content(ctx, loc, name, fmt);
    if ctx.cfg.policy == Policy::SafetensorsOnly
        && (fmt.is_weight_format() || matches!(fmt, Format::SevenZip | Format::Compressed))
        && fmt != Format::Safetensors
    {
        ctx.add(
            ids::POLICY_NOT_SAFETENSORS,
            loc,
            None,
            None,
            format!("{} is {fmt}, not safetensors", finding::quote(name, 200)),
        );
    }
    if !loc.is_empty() {
        record_member(ctx, loc, fmt, src.len());
    }
    fmt
}

pub(crate) fn record_member(ctx: &mut Ctx<'_>, loc: &[String], format: Format, size: u64) {
    if loc.is_empty() || ctx.members.len() >= 10_000 {
        return;
    }
    ctx.members.push(MemberReport {
        member: loc.to_vec(),
        format,
        size,
    });
}

/// Counts findings per severity.
pub fn count_by_severity<'a>(
    findings: impl Iterator<Item = &'a Finding>,
) -> BTreeMap<Severity, usize> {
    let mut m = BTreeMap::new();
    for f in findings {
        *m.entry(f.severity).or_insert(0) += 1;
    }
    m
}
