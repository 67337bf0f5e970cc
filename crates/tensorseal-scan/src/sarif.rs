//! SARIF 2.1.0 output, for code-scanning dashboards.
//!
//! One run; `tool.driver.rules` lists every rule of [`crate::RULES`] (so `ruleIndex` is
//! stable across runs); each finding is a result with `ruleId`, `ruleIndex`, `level`,
//! `message.text`, a `partialFingerprints` entry ([`FINGERPRINT_KEY`]) and a location whose
//! `artifactLocation.uri` is the scanned file with `region.startLine` 1: GitHub code
//! scanning requires a line, and model files are binary, so the whole file is line 1.
//! Archive members are located at their archive (the file that exists in a repository)
//! plus a logical location `outer!member!member`. Byte offsets go in `properties`
//! (`byteOffset` in the file itself, `memberByteOffset` in the innermost member), not in
//! the region, where they would have to agree with the line.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::finding::{Finding, Severity, RULES};
use crate::report::ScanRun;

/// The SARIF version written.
pub const SARIF_VERSION: &str = "2.1.0";
/// The JSON schema URI of SARIF 2.1.0.
pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
/// The `partialFingerprints` key of a result: see [`fingerprint`].
pub const FINGERPRINT_KEY: &str = "tensorsealFinding/v1";

/// The stable identity of a finding across runs: the SHA-256 (first 16 bytes, hex) of rule,
/// path, archive members and evidence (the pickle global, else the message), each
/// length-prefixed so that no two different tuples hash the same input. Code-scanning
/// dashboards use it to match an alert of one run to the same alert of the next.
pub fn fingerprint(f: &Finding) -> String {
    let mut h = Sha256::new();
    let evidence = f.global.as_deref().unwrap_or(&f.message);
    let parts = [f.rule, f.path.as_str()]
        .into_iter()
        .chain(f.member.iter().map(String::as_str))
        .chain([evidence]);
    for part in parts {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

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
            let physical = json!({
                "artifactLocation": {"uri": path_uri(&x.path)},
                "region": {"startLine": 1},
            });
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
            } else if let Some(off) = x.offset {
                props["byteOffset"] = json!(off);
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
                "partialFingerprints": {FINGERPRINT_KEY: fingerprint(x)},
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

    #[test]
    fn fingerprints_are_stable_and_tell_findings_apart() {
        let f = Finding {
            rule: "pickle-dangerous-global",
            severity: Severity::Critical,
            path: "models/a.bin".into(),
            member: vec!["archive/data.pkl".into()],
            offset: Some(7),
            global: Some("os.system".into()),
            message: "calls os.system at byte 7".into(),
            fails_policy: true,
        };
        let fp = fingerprint(&f);
        assert_eq!(fp.len(), 32);
        assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()));
        // Not the offset or message when a global is the evidence: a moved call is the same alert.
        let moved = Finding {
            offset: Some(9),
            message: "calls os.system at byte 9".into(),
            ..f.clone()
        };
        assert_eq!(fingerprint(&moved), fp);
        // Each identifying part counts, and parts cannot run into each other.
        let other_member = Finding {
            member: vec!["archive/data.pk".into(), "l".into()],
            ..f.clone()
        };
        let other_path = Finding {
            path: "models/b.bin".into(),
            ..f.clone()
        };
        let other_global = Finding {
            global: Some("os.popen".into()),
            ..f.clone()
        };
        for g in [other_member, other_path, other_global] {
            assert_ne!(fingerprint(&g), fp);
        }
    }
}
