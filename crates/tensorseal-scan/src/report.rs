//! The result of a scan run: JSON document, text lines, summary and exit code.
//!
//! The JSON schema (`"schema": "tensorseal-scan/1"`) is documented in the README.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::{FileReport, Policy, Severity};

/// Identifier of the JSON document layout.
pub const JSON_SCHEMA: &str = "tensorseal-scan/1";

/// Exit code: nothing violates the policy.
pub const EXIT_CLEAN: u8 = 0;
/// Exit code: at least one finding violates the policy.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit code: a file could not be read (or another error).
pub const EXIT_ERROR: u8 = 2;
/// Exit code: no file was scanned at all (empty directory, everything excluded, only
/// special files): a misconfigured gate must not pass. Takes precedence over 1 and 2.
pub const EXIT_NOTHING_SCANNED: u8 = 3;

/// All file reports of one run, with the settings that produced them.
#[derive(Debug, Clone)]
pub struct ScanRun {
    /// Policy in force.
    pub policy: Policy,
    /// `--allow` entries.
    pub allow: Vec<String>,
    /// One report per file, in path order.
    pub files: Vec<FileReport>,
}

/// Totals of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Files scanned (regular files whose content was opened or attempted).
    pub files: usize,
    /// Paths found but not opened (FIFOs, devices, sockets, dangling links, loops).
    pub skipped: usize,
    /// Paths that reached a file already scanned under another path (aliases).
    pub aliases: usize,
    /// Files that could not be read.
    pub errors: usize,
    /// Findings in total.
    pub findings: usize,
    /// Findings per severity.
    pub by_severity: BTreeMap<Severity, usize>,
    /// Files with at least one finding that violates the policy.
    pub failed_files: usize,
    /// Files per format.
    pub formats: BTreeMap<String, usize>,
}

impl ScanRun {
    /// Totals.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for f in &self.files {
            s.aliases += f.aliases.len();
            if f.skipped.is_some() {
                s.skipped += 1;
            } else {
                s.files += 1;
                *s.formats.entry(f.format.as_str().to_owned()).or_insert(0) += 1;
            }
            if f.error.is_some() {
                s.errors += 1;
            }
            if f.fails_policy() {
                s.failed_files += 1;
            }
            s.findings += f.findings.len();
            for x in &f.findings {
                *s.by_severity.entry(x.severity).or_insert(0) += 1;
            }
        }
        s
    }

    /// Whether any finding violates the policy.
    pub fn policy_violated(&self) -> bool {
        self.files.iter().any(FileReport::fails_policy)
    }

    /// Whether no file at all was scanned.
    pub fn nothing_scanned(&self) -> bool {
        self.files.iter().all(|f| f.skipped.is_some())
    }

    /// 3 when no file was scanned, else 2 when a file could not be read, else 1 when the
    /// policy is violated, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.nothing_scanned() {
            EXIT_NOTHING_SCANNED
        } else if self.files.iter().any(|f| f.error.is_some()) {
            EXIT_ERROR
        } else if self.policy_violated() {
            EXIT_FINDINGS
        } else {
            EXIT_CLEAN
        }
    }

    /// The JSON document.
    pub fn to_json(&self, tool_version: &str) -> Value {
        let s = self.summary();
        let by_sev: serde_json::Map<String, Value> = Severity::ALL
            .iter()
            .rev()
            .map(|sev| {
                (
                    sev.as_str().to_owned(),
                    json!(s.by_severity.get(sev).copied().unwrap_or(0)),
                )
            })
            .collect();
        json!({
            "schema": JSON_SCHEMA,
            "tool": {"name": "tensorseal", "version": tool_version},
            "policy": self.policy.as_str(),
            "allow": self.allow,
            "files": self.files,
            "summary": {
                "files": s.files,
                "skipped": s.skipped,
                "aliases": s.aliases,
                "nothing_scanned": self.nothing_scanned(),
                "errors": s.errors,
                "findings": s.findings,
                "by_severity": by_sev,
                "failed_files": s.failed_files,
                "formats": s.formats,
                "policy_violated": self.policy_violated(),
            },
            "exit_code": self.exit_code(),
        })
    }

    /// One line per finding (`SEVERITY rule location[@offset]: message`).
    pub fn text_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.files {
            for x in &f.findings {
                let at = x.offset.map(|o| format!("@{o}")).unwrap_or_default();
                out.push(format!(
                    "{:<8} {} {}{at}: {}",
                    x.severity.as_str().to_uppercase(),
                    x.rule,
                    x.location(),
                    x.message
                ));
            }
        }
        out
    }

    /// The summary paragraph of text output.
    pub fn text_summary(&self) -> String {
        let s = self.summary();
        let formats: Vec<String> = s.formats.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let sev: Vec<String> = Severity::ALL
            .iter()
            .rev()
            .filter_map(|x| s.by_severity.get(x).map(|n| format!("{x} {n}")))
            .collect();
        let verdict = match self.exit_code() {
            EXIT_CLEAN => "PASS".to_owned(),
            EXIT_FINDINGS => format!(
                "FAIL ({} {} policy {})",
                count(s.failed_files as u64, "file", "files"),
                if s.failed_files == 1 {
                    "violates"
                } else {
                    "violate"
                },
                self.policy.as_str()
            ),
            EXIT_NOTHING_SCANNED => {
                "NOTHING SCANNED (no file found to scan: check the paths and --include/--exclude)"
                    .to_owned()
            }
            _ => format!(
                "ERROR ({} could not be read)",
                count(s.errors as u64, "file", "files")
            ),
        };
        let mut extra = String::new();
        if s.skipped > 0 {
            extra.push_str(&format!(
                "; {} not regular files, not opened",
                count(s.skipped as u64, "path", "paths")
            ));
        }
        if s.aliases > 0 {
            extra.push_str(&format!(
                "; {} a file already scanned (aliases)",
                if s.aliases == 1 {
                    "1 path reaches".to_owned()
                } else {
                    format!("{} paths reach", s.aliases)
                }
            ));
        }
        format!(
            "scanned {} ({}); {}{}{extra}\nresult: {verdict}",
            count(s.files as u64, "file", "files"),
            if formats.is_empty() {
                "none".to_owned()
            } else {
                formats.join(", ")
            },
            count(s.findings as u64, "finding", "findings"),
            if sev.is_empty() {
                String::new()
            } else {
                format!(" ({})", sev.join(", "))
            },
        )
    }
}

/// "1 file", "2 files".
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
