//! Snapshot tests of the CLI's output, stdout, stderr and exit code, for
//! `scan` (text, JSON, SARIF), `convert`, `split`/`merge`, `sign`/`verify`
//! and `inspect`, on the committed fixtures under tests/fixtures. Temporary
//! paths and the version are redacted. `cargo insta review` (or
//! `INSTA_UPDATE=always cargo test --test cli_snapshots`) after an intended
//! change.

use std::path::Path;
use std::process::Command;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Runs the binary in the repository root; returns its transcript: the
/// command, exit code, stdout and stderr, with `tmp` shown as `<tmp>`.
fn transcript(tmp: Option<&Path>, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tensorseal"))
        .args(args)
        .current_dir(REPO)
        .env("NO_COLOR", "1")
        .env_remove("TENSORSEAL_KEY_PASSWORD")
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let mut text = format!(
        "$ tensorseal {}\nexit code: {code}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(t) = tmp {
        text = text.replace(t.to_str().unwrap(), "<tmp>");
    }
    text = text.replace(env!("CARGO_PKG_VERSION"), "<version>");
    (code, text)
}

/// Several transcripts, one after the other.
fn session(tmp: Option<&Path>, runs: &[(&[&str], i32)]) -> String {
    let mut all = String::new();
    for (args, want) in runs {
        let (code, text) = transcript(tmp, args);
        assert_eq!(code, *want, "{text}");
        all.push_str(&text);
        all.push('\n');
    }
    all
}

fn tmp_str(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).to_str().unwrap().to_owned()
}

const BENIGN: &str = "tests/fixtures/scan/benign/model.safetensors";
const PICKLE: &str = "tests/fixtures/scan/malicious/torch_zip_payload.pt";
const ARCHIVE: &str = "tests/fixtures/scan/malicious/lambda_model.keras";

#[test]
fn scan_text() {
    let s = session(
        None,
        &[
            (&["scan", BENIGN], 0),
            (&["scan", BENIGN, PICKLE, ARCHIVE], 1),
            (&["scan", PICKLE, ARCHIVE, "--min-severity", "critical"], 1),
            (&["scan", BENIGN, "--min-severity", "severe"], 2),
        ],
    );
    insta::assert_snapshot!(s);
}

#[test]
fn scan_json() {
    let s = session(None, &[(&["scan", "--json", BENIGN, PICKLE], 1)]);
    insta::assert_snapshot!(s);
}

#[test]
fn scan_sarif() {
    let s = session(None, &[(&["scan", "--format", "sarif", BENIGN, PICKLE], 1)]);
    insta::assert_snapshot!(s);
}

#[test]
fn convert_pickle() {
    let dir = tempfile::tempdir().unwrap();
    let out = tmp_str(&dir, "small.safetensors");
    let s = session(
        Some(dir.path()),
        &[
            (&["convert", "tests/fixtures/convert/small.pt", &out], 0),
            // The same output again: refused without --force.
            (&["convert", "tests/fixtures/convert/small.pt", &out], 2),
            (
                &[
                    "convert",
                    "tests/fixtures/convert/small.pt",
                    &out,
                    "--force",
                    "--json",
                ],
                0,
            ),
            (&["inspect", &out], 0),
            (
                &[
                    "convert",
                    "tests/fixtures/convert/small.pt",
                    &out,
                    "--force",
                    "--max-output-size",
                    "12 apples",
                ],
                2,
            ),
        ],
    );
    insta::assert_snapshot!(s);
}

#[test]
fn split_merge() {
    let dir = tempfile::tempdir().unwrap();
    let shards = tmp_str(&dir, "shards");
    let merged = tmp_str(&dir, "merged.safetensors");
    let tiny = "examples/tiny.safetensors";
    let s = session(
        Some(dir.path()),
        &[
            (&["split", tiny, &shards, "--max-shard-size", "600"], 0),
            // A second split into the same directory: refused without --force.
            (&["split", tiny, &shards, "--max-shard-size", "300"], 2),
            // With --force, the shards of the first split it does not
            // overwrite are removed.
            (
                &[
                    "split",
                    tiny,
                    &shards,
                    "--max-shard-size",
                    "300",
                    "--json",
                    "--force",
                ],
                0,
            ),
            (
                &[
                    "split",
                    tiny,
                    &shards,
                    "--max-shard-size",
                    "1KiB",
                    "--force",
                ],
                0,
            ),
            (&["merge", &shards, &merged, "--json"], 0),
            (&["merge", &shards, &merged], 2),
            (&["merge", &shards, &merged, "--force"], 0),
        ],
    );
    insta::assert_snapshot!(s);
    assert_eq!(
        std::fs::read(&merged).unwrap(),
        std::fs::read(Path::new(REPO).join(tiny)).unwrap()
    );
}

/// A single-file split over a sharded one, and the other way round: the
/// directory never holds both, so `inspect` shows only the newest split.
#[test]
fn split_replaces_older_split() {
    let dir = tempfile::tempdir().unwrap();
    let d = tmp_str(&dir, "out");
    let tiny = "examples/tiny.safetensors";
    let (code, text) = transcript(
        Some(dir.path()),
        &["split", tiny, &d, "--max-shard-size", "300"],
    );
    assert_eq!(code, 0, "{text}");
    let (code, text) = transcript(Some(dir.path()), &["split", tiny, &d, "--force"]);
    assert_eq!(code, 0, "{text}");
    let mut names: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["model.safetensors"]);
    insta::assert_snapshot!(text);
    let (code, text) = transcript(Some(dir.path()), &["inspect", &d, "--json"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("\"resolved\": \"<tmp>/out/model.safetensors\""),
        "{text}"
    );
}

/// Splitting a directory's own model.safetensors into that directory would
/// overwrite or remove the input: refused, even with --force.
#[test]
fn split_refuses_to_destroy_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("model.safetensors");
    std::fs::copy(Path::new(REPO).join("examples/tiny.safetensors"), &input).unwrap();
    let d = dir.path().to_str().unwrap();
    let i = input.to_str().unwrap();
    let s = session(
        Some(dir.path()),
        &[(&["split", i, d, "--max-shard-size", "300", "--force"], 2)],
    );
    insta::assert_snapshot!(s);
    assert_eq!(
        std::fs::read(&input).unwrap(),
        std::fs::read(Path::new(REPO).join("examples/tiny.safetensors")).unwrap()
    );
}

/// A directory holding both a single file and an index resolves as
/// transformers does: model.safetensors first.
#[test]
fn inspect_dir_resolution_order() {
    let dir = tempfile::tempdir().unwrap();
    let sharded = tmp_str(&dir, "sharded");
    let (code, text) = transcript(
        None,
        &[
            "split",
            "examples/tiny.safetensors",
            &sharded,
            "--max-shard-size",
            "600",
        ],
    );
    assert_eq!(code, 0, "{text}");
    let both = dir.path().join("both");
    std::fs::create_dir(&both).unwrap();
    std::fs::copy(Path::new(REPO).join(BENIGN), both.join("model.safetensors")).unwrap();
    std::fs::copy(
        Path::new(&sharded).join("model.safetensors.index.json"),
        both.join("model.safetensors.index.json"),
    )
    .unwrap();
    let s = session(
        Some(dir.path()),
        &[
            (&["inspect", both.to_str().unwrap()], 0),
            (&["inspect", &sharded], 0),
        ],
    );
    insta::assert_snapshot!(s);
}

#[test]
fn sign_verify() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    copy_dir(&Path::new(REPO).join("tests/fixtures/sign/model"), &model);
    let m = model.to_str().unwrap();
    let sig = tmp_str(&dir, "model.sig");
    let key = "tests/fixtures/sign/p256-pkcs8.pem";
    let public = "tests/fixtures/sign/p256-pub.pem";
    let readme = model.join("a.txt");
    let ignored = readme.to_str().unwrap();
    let mut s = session(
        Some(dir.path()),
        &[
            // One path per --ignore-paths: the model argument after it stays the model.
            (
                &[
                    "sign",
                    "--private-key",
                    key,
                    "--signature",
                    &sig,
                    "--ignore-paths",
                    ignored,
                    m,
                    "--json",
                ],
                0,
            ),
            (
                &[
                    "verify",
                    m,
                    "--public-key",
                    public,
                    "--signature",
                    &sig,
                    "--ignore-paths",
                    ignored,
                ],
                0,
            ),
            (
                &[
                    "verify",
                    m,
                    "--public-key",
                    key,
                    "--signature",
                    &sig,
                    "--ignore-paths",
                    ignored,
                ],
                2,
            ),
        ],
    );
    std::fs::write(model.join("config.json"), b"{\"changed\": true}\n").unwrap();
    std::fs::write(model.join("new.txt"), b"new\n").unwrap();
    s.push_str(&session(
        Some(dir.path()),
        &[
            (
                &[
                    "verify",
                    m,
                    "--public-key",
                    public,
                    "--signature",
                    &sig,
                    "--ignore-paths",
                    ignored,
                ],
                1,
            ),
            (
                &[
                    "verify",
                    m,
                    "--public-key",
                    public,
                    "--signature",
                    &sig,
                    "--ignore-paths",
                    ignored,
                    "--json",
                ],
                1,
            ),
        ],
    ));
    insta::assert_snapshot!(s);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
fn inspect_json_and_errors() {
    let s = session(
        None,
        &[
            (&["inspect", "--json", BENIGN], 0),
            (&["inspect", "tests/fixtures/convert/small.pt"], 1),
            (&["inspect", "does/not/exist"], 2),
        ],
    );
    insta::assert_snapshot!(s);
}

#[test]
fn completions_and_man() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, text) = transcript(None, &["completions", shell]);
        assert_eq!(code, 0, "{text}");
        assert!(
            text.contains("inspect") && text.contains("max-shard-size"),
            "{shell}"
        );
    }
    let (code, text) = transcript(None, &["man"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(".TH tensorseal 1"), "{text}");
    let (code, text) = transcript(None, &["man", "split"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(".TH tensorseal-split 1") && text.contains("force"),
        "{text}"
    );
}
