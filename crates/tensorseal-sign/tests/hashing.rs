//! Listing rules: ignore paths, git metadata, symlinks, special files,
//! single-file models; comparison of manifests; no panic on garbage.

use std::fs;
use std::path::Path;

use proptest::prelude::*;
use tensorseal_sign::keys::{PrivateKey, PublicKey};
use tensorseal_sign::manifest::{self, HashOptions, IgnorePath};
use tensorseal_sign::{bundle, compare, sign_manifest, verify_bundle, SignError};

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn names(root: &Path, opts: &HashOptions) -> Vec<String> {
    manifest::list_files(root, opts)
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect()
}

fn sample(root: &Path) {
    write(root, "w.bin", b"w");
    write(root, "docs/README.md", b"r");
    write(root, "docs/img/a.png", b"a");
    write(root, ".git/config", b"g");
    write(root, ".github/workflows/ci.yml", b"c");
    write(root, ".gitignore", b"i");
    write(root, ".gitattributes", b"t");
    write(root, ".gitmodules", b"m");
    write(root, "sub/.git", b"nested git file is not ignored");
}

#[test]
fn git_paths_are_ignored_by_default_only_at_the_root() {
    let d = tempfile::tempdir().unwrap();
    sample(d.path());
    assert_eq!(
        names(d.path(), &HashOptions::new()),
        [
            ".gitmodules",
            "docs/README.md",
            "docs/img/a.png",
            "sub/.git",
            "w.bin"
        ]
    );
    let mut all = HashOptions::new();
    all.ignore_git_paths = false;
    assert_eq!(names(d.path(), &all).len(), 9);
}

#[test]
fn ignore_paths_match_whole_components() {
    let d = tempfile::tempdir().unwrap();
    sample(d.path());
    write(d.path(), "docsx", b"not under docs/");
    let mut o = HashOptions::new();
    o.ignore_paths = vec![
        IgnorePath::parse("docs").unwrap(),
        IgnorePath::parse("./w.bin/").unwrap(),
    ];
    assert_eq!(names(d.path(), &o), [".gitmodules", "docsx", "sub/.git"]);
    assert_eq!(
        o.recorded_ignores(),
        [
            ".git",
            ".gitattributes",
            ".github",
            ".gitignore",
            "docs",
            "w.bin"
        ]
    );
    // A file path inside a directory, and paths that can never match.
    o.ignore_paths = vec![IgnorePath::parse("docs/img/a.png").unwrap()];
    assert_eq!(
        names(d.path(), &o),
        [
            ".gitmodules",
            "docs/README.md",
            "docsx",
            "sub/.git",
            "w.bin"
        ]
    );
    assert!(IgnorePath::parse("../x").is_none());
    assert!(IgnorePath::parse("/abs").is_none());
    assert!(IgnorePath::parse("./").unwrap().is_root());
}

#[test]
fn empty_directories_are_not_items_and_order_is_by_component() {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir_all(d.path().join("empty/inner")).unwrap();
    write(d.path(), "a.txt", b"1");
    write(d.path(), "a/b", b"2");
    write(d.path(), "a-b", b"3");
    assert_eq!(
        names(d.path(), &HashOptions::new()),
        ["a/b", "a-b", "a.txt"]
    );
}

#[cfg(unix)]
#[test]
fn symlinks_are_refused_unless_allowed() {
    use std::os::unix::fs::symlink;
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "real/f", b"content");
    symlink("real/f", d.path().join("link")).unwrap();
    symlink("real", d.path().join("dirlink")).unwrap();
    let err = manifest::list_files(d.path(), &HashOptions::new()).unwrap_err();
    assert!(matches!(err, SignError::SymlinkRefused { .. }), "{err}");
    assert!(err.to_string().contains("link"), "{err}");
    let mut o = HashOptions::new();
    o.allow_symlinks = true;
    // A link to a file is hashed under its own name; a link to a directory
    // is skipped (not descended into), as model-signing does.
    assert_eq!(names(d.path(), &o), ["link", "real/f"]);
    let m = manifest::hash_model(d.path(), &o, &()).unwrap();
    assert_eq!(m.resources[0].digest, m.resources[1].digest);
    assert!(m.serialization.allow_symlinks);
    // A dangling link is an error even when links are allowed.
    symlink("nowhere", d.path().join("dangling")).unwrap();
    let err = manifest::list_files(d.path(), &o).unwrap_err();
    assert!(matches!(err, SignError::SpecialFile { .. }), "{err}");
    // A link inside an ignored directory does not matter.
    fs::remove_file(d.path().join("dangling")).unwrap();
    fs::create_dir(d.path().join(".git")).unwrap();
    symlink("nowhere", d.path().join(".git/HEAD")).unwrap();
    assert_eq!(names(d.path(), &o), ["link", "real/f"]);
}

#[cfg(unix)]
#[test]
fn a_symlinked_model_root_needs_allow_symlinks() {
    use std::os::unix::fs::symlink;
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "m/f", b"x");
    symlink("m", d.path().join("lm")).unwrap();
    let err = manifest::list_files(&d.path().join("lm"), &HashOptions::new()).unwrap_err();
    assert!(matches!(err, SignError::SymlinkRefused { .. }), "{err}");
    let mut o = HashOptions::new();
    o.allow_symlinks = true;
    assert_eq!(names(&d.path().join("lm"), &o), ["f"]);
}

#[test]
fn a_single_file_model_has_one_resource_named_dot() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "w.safetensors", b"abc");
    let m =
        manifest::hash_model(&d.path().join("w.safetensors"), &HashOptions::new(), &()).unwrap();
    assert_eq!(m.resources.len(), 1);
    assert_eq!(m.resources[0].name, ".");
    assert_eq!(
        m.resources[0].digest_hex(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(m.model_name, "w.safetensors");
}

#[test]
fn model_name_of_dot_is_the_directory_name() {
    let d = tempfile::tempdir().unwrap();
    let sub = d.path().join("mymodel");
    fs::create_dir(&sub).unwrap();
    assert_eq!(manifest::model_name(&sub.join(".")), "mymodel");
    assert_eq!(manifest::model_name(&sub.join("x/..")), "mymodel");
    assert_eq!(manifest::model_name(Path::new("some/dir/")), "dir");
}

#[test]
fn missing_model_is_an_io_error_naming_the_path() {
    let err =
        manifest::list_files(Path::new("/nonexistent/model"), &HashOptions::new()).unwrap_err();
    assert!(err.is_environment());
    assert!(err.to_string().contains("/nonexistent/model"), "{err}");
}

#[test]
fn large_files_hash_across_chunks() {
    let d = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..(manifest::CHUNK_SIZE * 2 + 17))
        .map(|i| (i % 251) as u8)
        .collect();
    write(d.path(), "big", &data);
    let m = manifest::hash_model(d.path(), &HashOptions::new(), &()).unwrap();
    use sha2::Digest;
    assert_eq!(m.resources[0].digest, sha2::Sha256::digest(&data).to_vec());
}

#[test]
fn compare_reports_changed_missing_extra() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "a", b"1");
    write(d.path(), "b/c", b"2");
    write(d.path(), "d", b"3");
    let signed = manifest::hash_model(d.path(), &HashOptions::new(), &()).unwrap();
    write(d.path(), "a", b"changed");
    fs::remove_file(d.path().join("d")).unwrap();
    write(d.path(), "b/new", b"4");
    let now = manifest::hash_model(d.path(), &HashOptions::new(), &()).unwrap();
    let c = compare(&signed, &now);
    assert_eq!(c.changed.len(), 1);
    assert_eq!(c.changed[0].name, "a");
    assert_eq!(c.missing, ["d"]);
    assert_eq!(c.extra, ["b/new"]);
    assert_eq!(c.matched, 1);
    assert!(!c.is_match());
}

fn p256() -> PrivateKey {
    let pem = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sign/p256-pkcs8.pem"),
    )
    .unwrap();
    PrivateKey::from_pem(&pem, None, "p256").unwrap()
}

#[test]
fn key_errors_are_clear() {
    let err = PrivateKey::from_pem(b"hello", None, "k.pem").unwrap_err();
    assert!(
        err.to_string().starts_with("k.pem: not a PEM file"),
        "{err}"
    );
    let pubpem = p256().public_key().to_pem();
    let err = PrivateKey::from_pem(pubpem.as_bytes(), None, "k.pem").unwrap_err();
    assert!(err.to_string().contains("public key"), "{err}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sign");
    let k256 = std::fs::read(dir.join("k256-pkcs8.pem")).unwrap();
    let err = PrivateKey::from_pem(&k256, None, "k.pem").unwrap_err();
    assert!(err.to_string().contains("secp256k1"), "{err}");
    let k256 = std::fs::read(dir.join("k256-pub.pem")).unwrap();
    let err = PublicKey::from_pem(&k256, "k.pem").unwrap_err();
    assert!(err.to_string().contains("secp256k1"), "{err}");
    let err = PublicKey::from_pem(
        b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        "c.pem",
    )
    .unwrap_err();
    assert!(err.to_string().contains("CERTIFICATE"), "{err}");
}

#[test]
fn malformed_bundles_give_typed_errors() {
    let key = p256().public_key();
    for (input, want) in [
        (&b"not json"[..], "not a Sigstore bundle"),
        (br#"{"mediaType":"x"}"#, "media type"),
        (
            br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}"#,
            "verificationMaterial",
        ),
        (
            br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{},"dsseEnvelope":{"payload":"!!","payloadType":"x","signatures":[]}}"#,
            "base64",
        ),
        (
            br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{},"dsseEnvelope":{"payload":"","payloadType":"x","signatures":[]}}"#,
            "no signature",
        ),
    ] {
        let err = verify_bundle(input, &key).unwrap_err();
        assert!(err.to_string().contains(want), "{err} / {want}");
    }
}

#[test]
fn statement_checks_root_digest_and_types() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "a", b"1");
    let m = manifest::hash_model(d.path(), &HashOptions::new(), &()).unwrap();
    let stmt = String::from_utf8(bundle::statement_json(&m)).unwrap();
    let back = bundle::parse_statement("application/vnd.in-toto+json", stmt.as_bytes()).unwrap();
    assert_eq!(back, m);
    let root = manifest::to_hex(&m.root_digest());
    let bad = stmt.replace(&root, &"0".repeat(64));
    let err = bundle::parse_statement("application/vnd.in-toto+json", bad.as_bytes()).unwrap_err();
    assert!(matches!(err, SignError::Inconsistent(_)), "{err}");
    let err = bundle::parse_statement("text/plain", stmt.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("text/plain"), "{err}");
    let shards = stmt.replace("\"files\"", "\"shards\"");
    let err =
        bundle::parse_statement("application/vnd.in-toto+json", shards.as_bytes()).unwrap_err();
    assert!(matches!(err, SignError::Unsupported(_)), "{err}");
    // Sign and verify round trip, key hint and all.
    let key = p256();
    let b = sign_manifest(&m, &key);
    assert_eq!(verify_bundle(&b, &key.public_key()).unwrap(), m);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn garbage_bundles_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let key = p256().public_key();
        let _ = verify_bundle(&bytes, &key);
        let _ = bundle::parse_bundle(&bytes);
        let _ = bundle::parse_statement("application/vnd.in-toto+json", &bytes);
    }

    #[test]
    fn json_shaped_garbage_never_panics(s in r#"\{("[a-zA-Z_]{1,12}":("[ -~]{0,20}"|\[\]|\{\}|true|1|null),?){0,6}\}"#) {
        let _ = bundle::parse_bundle(s.as_bytes());
        let _ = bundle::parse_statement("application/vnd.in-toto+json", s.as_bytes());
    }

    #[test]
    fn hex_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let h = manifest::to_hex(&bytes);
        prop_assert_eq!(manifest::from_hex(&h).unwrap(), bytes);
    }
}
