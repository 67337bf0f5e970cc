//! SARIF 2.1.0 output, for code-scanning dashboards.
//!
//! One run; `tool.driver.rules` lists every rule of [`crate::RULES`] (so `ruleIndex` is
//! stable across runs); each finding is a result with `ruleId`, `ruleIndex`, `level`,
//! `message.text` and a location whose `artifactLocation.uri` is the scanned file. Archive
//! members are given as a logical location (`outer!member!member`), byte offsets as a
//! `region.byteOffset` when they are offsets in the file itself.

use serde_json::{json, Value};

use crate::finding::{Severity, RULES};
use crate::report::ScanRun;

/// The SARIF version written.
pub const SARIF_VERSION: &str = "2.1.0";
/// The JSON schema URI of SARIF 2.1.0.
pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "0.0",
    }
}

fn camel(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// A URI reference for a path: relative paths stay relative (forward slashes), absolute
/// ones become `file://` URIs; bytes outside the unreserved set are percent-encoded.
pub fn path_uri(path: &str) -> String {
    let p = path.replace('\\', "/");
    let mut out = String::new();
    let abs = p.starts_with('/');
    if abs {
        out.push_str("file://");
    }
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The SARIF log of a run.
pub fn to_sarif(run: &ScanRun, tool_version: &str) -> Value {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": camel(r.id),
                "shortDescription": {"text": r.summary},
                "fullDescription": {"text": format!("{} {}", r.summary, r.help)},
                "help": {"text": r.help},
                "defaultConfiguration": {"level": r.severity.sarif_level()},
                "properties": {
                    "tags": ["security", "model-files"],
                    "security-severity": security_severity(r.severity),
                    "severity": r.severity.as_str(),
                },
            })
        })
        .collect();
    let mut results = Vec::new();
    for f in &run.files {
        for x in &f.findings {
            let index = RULES.iter().position(|r| r.id == x.rule).unwrap_or(0);
            let mut physical = json!({"artifactLocation": {"uri": path_uri(&x.path)}});
            if let (Some(off), true) = (x.offset, x.member.is_empty()) {
                physical["region"] = json!({"byteOffset": off, "byteLength": 1});
            }
            let mut location = json!({"physicalLocation": physical});
            if !x.member.is_empty() {
                location["logicalLocations"] = json!([{
                    "fullyQualifiedName": x.location(),
                    "name": x.member.last(),
                    "kind": "member",
                }]);
            }
            let mut props = json!({
                "severity": x.severity.as_str(),
                "failsPolicy": x.fails_policy,
                "format": f.format.as_str(),
            });
            if !x.member.is_empty() {
                props["member"] = json!(x.member);
                if let Some(off) = x.offset {
                    props["memberByteOffset"] = json!(off);
                }
            }
            if let Some(g) = &x.global {
                props["global"] = json!(g);
            }
            if let Some(t) = &f.target {
                props["target"] = json!(t);
            }
            if !f.aliases.is_empty() {
                props["aliases"] = json!(f.aliases);
            }
            if let Some(k) = f.skipped {
                props["skipped"] = json!(k);
            }
            results.push(json!({
                "ruleId": x.rule,
                "ruleIndex": index,
                "level": x.severity.sarif_level(),
                "message": {"text": x.message},
                "locations": [location],
                "properties": props,
            }));
        }
    }
    json!({
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [{
            "tool": {"driver": {
                "name": "tensorseal",
                "version": tool_version,
                "semanticVersion": tool_version,
                "rules": rules,
            }},
            "invocations": [{
                "executionSuccessful": run.exit_code() != crate::report::EXIT_ERROR,
                "exitCode": run.exit_code(),
            }],
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(path_uri("a b/c.bin"), "a%20b/c.bin");
        assert_eq!(path_uri("/x/y.pt"), "file:///x/y.pt");
        assert_eq!(camel("pickle-dangerous-global"), "PickleDangerousGlobal");
    }
}
