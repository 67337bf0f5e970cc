//! Special files (FIFOs, devices) are refused without blocking by every command, and
//! `scan` walks directories through symlinks (targets, aliases, loops, dangling links)
//! and exits 3 when it scanned nothing. Every command runs under a deadline: a command
//! that blocks fails the test instead of hanging CI.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(20);

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args` in `cwd`; panics if it is still running after [`DEADLINE`].
fn run_in(cwd: &Path, args: &[&str]) -> Out {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tensorseal"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > DEADLINE {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("tensorseal {args:?} blocked for more than {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().unwrap();
    assert!(st.success(), "mkfifo {}", p.display());
}

fn tiny() -> PathBuf {
    repo().join("examples/tiny.safetensors")
}

fn key(name: &str) -> String {
    repo()
        .join("tests/fixtures/sign")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Every command that reads a model, with `input` as the model path.
fn commands(input: &str, out: &Path) -> Vec<Vec<String>> {
    let o = |n: &str| out.join(n).to_string_lossy().into_owned();
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        v(&["inspect", input]),
        v(&["inspect", input, "--json"]),
        v(&["convert", input, &o("c.safetensors")]),
        v(&["merge", input, &o("m.safetensors")]),
        v(&["split", input, &o("split")]),
        v(&["digest", input]),
        v(&[
            "sign",
            input,
            "--private-key",
            &key("p256-sec1.pem"),
            "--signature",
            &o("s.sig"),
        ]),
        v(&[
            "verify",
            input,
            "--public-key",
            &key("p256-pub.pem"),
            "--signature",
            &o("s.sig"),
        ]),
    ]
}

fn assert_refused(input: &str, what: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    // A valid signature (of another model), so that verify gets as far as the model.
    std::fs::create_dir(dir.path().join("other")).unwrap();
    std::fs::copy(tiny(), dir.path().join("other/w.safetensors")).unwrap();
    let r = run_in(
        dir.path(),
        &[
            "sign",
            "other",
            "--private-key",
            &key("p256-sec1.pem"),
            "--signature",
            "pre.sig",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    for mut cmd in commands(input, dir.path()) {
        if cmd[0] == "verify" {
            let n = cmd.len();
            cmd[n - 1] = dir.path().join("pre.sig").to_string_lossy().into_owned();
        }
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let r = run_in(dir.path(), &args);
        assert!(
            r.code != 0 && r.code != -1,
            "{args:?} should fail: {}",
            r.stderr
        );
        assert!(
            what.iter().any(|w| r.stderr.contains(w)),
            "{args:?}: stderr should name the file type ({what:?}): {}",
            r.stderr
        );
    }
    // Nothing was written.
    assert!(!dir.path().join("c.safetensors").exists());
    assert!(!dir.path().join("m.safetensors").exists());
    assert!(!dir.path().join("s.sig").exists());
}

#[test]
fn fifo_is_refused_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.safetensors");
    mkfifo(&fifo);
    assert_refused(
        fifo.to_str().unwrap(),
        &["FIFO", "neither a regular file nor a directory"],
    );
    // Through a symlink too.
    let link = dir.path().join("link.safetensors");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    assert_refused(
        link.to_str().unwrap(),
        &["FIFO", "neither a regular file nor a directory", "symlink"],
    );
}

#[test]
fn devices_are_refused_by_every_command() {
    for dev in ["/dev/zero", "/dev/null"] {
        assert_refused(
            dev,
            &["character device", "neither a regular file nor a directory"],
        );
    }
}

#[test]
fn scan_refuses_fifos_and_devices_named_directly() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("w.bin");
    mkfifo(&fifo);
    for p in [fifo.to_str().unwrap(), "/dev/zero"] {
        let r = run_in(dir.path(), &["scan", "--json", p]);
        assert_eq!(r.code, 3, "{}", r.stderr);
        let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(doc["summary"]["files"], 0);
        assert_eq!(doc["summary"]["nothing_scanned"], true);
        let f = &doc["files"][0];
        assert!(
            f["skipped"] == "fifo" || f["skipped"] == "char-device",
            "{f}"
        );
        assert_eq!(f["findings"][0]["rule"], "read-error");
        assert_eq!(f["findings"][0]["fails_policy"], true);
    }
    // Next to a regular file, the FIFO makes the scan fail closed (exit 2).
    std::fs::copy(tiny(), dir.path().join("ok.safetensors")).unwrap();
    let r = run_in(dir.path(), &["scan", "."]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("w.bin") && r.stdout.contains("FIFO"),
        "{}",
        r.stdout
    );
}

/// An index naming a shard that is a FIFO: the shard is refused too.
#[test]
fn fifo_shard_named_by_an_index_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = run_in(
        d,
        &[
            "split",
            tiny().to_str().unwrap(),
            "sharded",
            "--max-shard-size",
            "1",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let shard = std::fs::read_dir(d.join("sharded"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .unwrap();
    std::fs::remove_file(&shard).unwrap();
    mkfifo(&shard);
    for args in [
        vec!["inspect", "sharded"],
        vec!["merge", "sharded", "merged.safetensors"],
        vec!["digest", "sharded"],
    ] {
        let r = run_in(d, &args);
        assert!(r.code != 0, "{args:?} should fail");
        assert!(
            r.stderr.contains("FIFO") || r.stderr.contains("neither a regular file"),
            "{args:?}: {}",
            r.stderr
        );
    }
}

/// A model directory signed while clean, then one file replaced by a FIFO.
#[test]
fn verify_refuses_a_fifo_in_the_model_and_as_signature() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("m")).unwrap();
    std::fs::copy(tiny(), d.join("m/w.safetensors")).unwrap();
    let r = run_in(
        d,
        &[
            "sign",
            "m",
            "--private-key",
            &key("p256-sec1.pem"),
            "--signature",
            "m.sig",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    std::fs::remove_file(d.join("m/w.safetensors")).unwrap();
    mkfifo(&d.join("m/w.safetensors"));
    let verify = |sig: &str| {
        run_in(
            d,
            &[
                "verify",
                "m",
                "--public-key",
                &key("p256-pub.pem"),
                "--signature",
                sig,
            ],
        )
    };
    let r = verify("m.sig");
    assert!(r.code != 0, "{}", r.stdout);
    mkfifo(&d.join("fifo.sig"));
    let r = verify("fifo.sig");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("FIFO"), "{}", r.stderr);
}

fn scan_json(cwd: &Path, args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut a = vec!["scan", "--json"];
    a.extend_from_slice(args);
    let r = run_in(cwd, &a);
    let doc = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", r.stdout, r.stderr));
    (r.code, doc, r.stderr)
}

fn file<'a>(doc: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("no report for {path}: {doc:#}"))
}

/// The Hugging Face cache layout: snapshots/<rev>/name -> ../../blobs/<sha>.
fn hf_cache(root: &Path) {
    std::fs::create_dir_all(root.join("blobs")).unwrap();
    std::fs::create_dir_all(root.join("snapshots/rev")).unwrap();
    // A protocol-2 pickle calling os.system: critical.
    let evil = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.";
    std::fs::write(root.join("blobs/e1"), evil).unwrap();
    std::fs::copy(tiny(), root.join("blobs/s1")).unwrap();
    for (name, blob) in [
        ("pytorch_model.bin", "e1"),
        ("copy.bin", "e1"),
        ("model.safetensors", "s1"),
    ] {
        std::os::unix::fs::symlink(
            format!("../../blobs/{blob}"),
            root.join("snapshots/rev").join(name),
        )
        .unwrap();
    }
}

#[test]
fn scan_follows_symlinks_and_scans_each_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    hf_cache(&d.join("hub"));
    // Only the snapshot: the links are followed, the malicious blob is found.
    let (code, doc, err) = scan_json(d, &["hub/snapshots"]);
    assert_eq!(code, 1, "{err}");
    let canon = std::fs::canonicalize(d.join("hub/blobs/e1")).unwrap();
    let bin = file(&doc, "hub/snapshots/rev/copy.bin");
    assert_eq!(bin["target"], canon.to_str().unwrap());
    assert_eq!(
        bin["aliases"],
        serde_json::json!(["hub/snapshots/rev/pytorch_model.bin"])
    );
    assert_eq!(bin["findings"][0]["severity"], "critical");
    assert_eq!(doc["summary"]["files"], 2);
    assert_eq!(doc["summary"]["aliases"], 1);
    // The whole cache: each blob is scanned once, under its snapshot name.
    let (code, doc, _) = scan_json(d, &["hub"]);
    assert_eq!(code, 1);
    assert_eq!(doc["summary"]["files"], 2, "{doc:#}");
    let st = file(&doc, "hub/snapshots/rev/model.safetensors");
    assert_eq!(st["format"], "safetensors");
    assert_eq!(st["aliases"], serde_json::json!(["hub/blobs/s1"]));
    // A symlinked directory: files under it name their target.
    std::os::unix::fs::symlink("hub/snapshots/rev", d.join("latest")).unwrap();
    let (_, doc, _) = scan_json(d, &["latest"]);
    let st = file(&doc, "latest/model.safetensors");
    let canon = std::fs::canonicalize(d.join("hub/blobs/s1")).unwrap();
    assert_eq!(st["target"], canon.to_str().unwrap());
    // A regular file under a symlinked directory (root or nested) names its target too.
    std::fs::create_dir(d.join("real")).unwrap();
    std::fs::copy(tiny(), d.join("real/plain.safetensors")).unwrap();
    std::os::unix::fs::symlink("real", d.join("via")).unwrap();
    std::fs::create_dir(d.join("top")).unwrap();
    std::os::unix::fs::symlink("../real", d.join("top/inner")).unwrap();
    let canon = std::fs::canonicalize(d.join("real/plain.safetensors")).unwrap();
    let (_, doc, _) = scan_json(d, &["via"]);
    assert_eq!(
        file(&doc, "via/plain.safetensors")["target"],
        canon.to_str().unwrap()
    );
    let (_, doc, _) = scan_json(d, &["top"]);
    assert_eq!(
        file(&doc, "top/inner/plain.safetensors")["target"],
        canon.to_str().unwrap()
    );
    // Not through a link: no target.
    let (_, doc, _) = scan_json(d, &["real"]);
    assert!(file(&doc, "real/plain.safetensors").get("target").is_none());
    // SARIF carries target and aliases in the result's properties.
    let r = run_in(d, &["scan", "--format", "sarif", "hub/snapshots"]);
    let sarif: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let res = &sarif["runs"][0]["results"][0];
    assert_eq!(res["properties"]["target"], bin["target"]);
    assert_eq!(res["properties"]["aliases"], bin["aliases"]);
    // Text output names link and target.
    let r = run_in(d, &["scan", "hub/snapshots"]);
    assert!(
        r.stdout.contains(&format!(
            "hub/snapshots/rev/copy.bin (-> {})",
            bin["target"].as_str().unwrap()
        )),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("also reached as: hub/snapshots/rev/pytorch_model.bin"),
        "{}",
        r.stdout
    );
}

#[test]
fn scan_reports_loops_and_dangling_links() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("m/sub")).unwrap();
    std::fs::copy(tiny(), d.join("m/sub/w.safetensors")).unwrap();
    std::os::unix::fs::symlink("..", d.join("m/sub/up")).unwrap();
    std::os::unix::fs::symlink("sub", d.join("m/zz")).unwrap();
    // A loop terminates and is listed; the directory reached twice is walked once.
    let (code, doc, err) = scan_json(d, &["m"]);
    assert_eq!(code, 0, "{err} {doc:#}");
    assert_eq!(doc["summary"]["files"], 1, "{doc:#}");
    let lp = file(&doc, "m/sub/up");
    assert_eq!(lp["skipped"], "symlink-loop");
    assert_eq!(lp["findings"], serde_json::json!([]));
    assert_eq!(lp["target"], "m");
    // m/zz -> sub was not walked a second time.
    assert_eq!(doc["files"].as_array().unwrap().len(), 2, "{doc:#}");
    // A dangling link fails closed.
    std::os::unix::fs::symlink("nowhere.bin", d.join("m/gone.bin")).unwrap();
    let (code, doc, _) = scan_json(d, &["m"]);
    assert_eq!(code, 2);
    let g = file(&doc, "m/gone.bin");
    assert_eq!(g["skipped"], "dangling-symlink");
    assert_eq!(g["target"], "nowhere.bin");
    assert_eq!(g["findings"][0]["fails_policy"], true);
    // Named directly, too.
    let (code, doc, _) = scan_json(d, &["m/gone.bin"]);
    assert_eq!(code, 3);
    assert_eq!(doc["files"][0]["skipped"], "dangling-symlink");
}

#[test]
fn scan_of_nothing_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("empty")).unwrap();
    std::fs::create_dir_all(d.join("m")).unwrap();
    std::fs::copy(tiny(), d.join("m/w.safetensors")).unwrap();
    for args in [
        vec!["empty"],
        vec!["m", "--include", "*.bin"],
        vec!["m", "--exclude", "*.safetensors"],
    ] {
        let (code, doc, err) = scan_json(d, &args);
        assert_eq!(code, 3, "{args:?}");
        assert_eq!(doc["exit_code"], 3);
        assert_eq!(doc["summary"]["files"], 0);
        assert_eq!(doc["summary"]["nothing_scanned"], true);
        assert!(err.contains("no file was scanned"), "{err}");
        let mut sarif = vec!["scan", "--format", "sarif"];
        sarif.extend_from_slice(&args);
        assert_eq!(run_in(d, &sarif).code, 3);
    }
    // A directory with a scannable file still passes.
    let (code, doc, _) = scan_json(d, &["m"]);
    assert_eq!(code, 0);
    assert_eq!(doc["summary"]["nothing_scanned"], false);
}
