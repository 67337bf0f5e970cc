//! Model manifests: every file of a model paired with its SHA-256 digest,
//! built the way `model-signing` 1.1.1 builds them with its `files`
//! serialization method.
//!
//! Rules (taken from `model_signing.hashing` and `_serialization.file`):
//! - every regular file under the model directory, at any depth, hidden files
//!   included; directories are not items;
//! - resource names are POSIX paths relative to the model directory; a model
//!   that is a single file has one resource named `.`;
//! - resources are ordered by their path *components* (so `a/b` comes before
//!   `a.txt`), each component compared by code point;
//! - an ignore path matches a file when its components are a prefix of the
//!   file's components (so an ignored directory ignores everything below it);
//! - symbolic links are an error unless allowed; when allowed, a link to a
//!   file is hashed (its target's content, under the link's name) and a link to
//!   a directory is neither descended into nor listed;
//! - the root (subject) digest is SHA-256 over the concatenated raw digests of
//!   the resources in that order.

use std::cmp::Ordering;
use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::error::{Result, SignError};

/// Bytes read at a time when hashing a file (as model-signing: 1 MiB).
pub const CHUNK_SIZE: usize = 1 << 20;

/// The git metadata that model-signing ignores by default.
pub const GIT_PATHS: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];

/// One file of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// POSIX path relative to the model root (`.` for a single-file model).
    pub name: String,
    /// Digest algorithm name as written in the manifest (`sha256`).
    pub algorithm: String,
    /// Raw digest bytes.
    pub digest: Vec<u8>,
}

impl Resource {
    /// The digest in lower-case hex.
    pub fn digest_hex(&self) -> String {
        to_hex(&self.digest)
    }
}

/// How a manifest was produced (the predicate's `serialization` object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serialization {
    /// Serialization method; only `files` is produced.
    pub method: String,
    /// Digest algorithm of every resource.
    pub hash_type: String,
    /// Whether symbolic links were followed.
    pub allow_symlinks: bool,
    /// Ignored paths, relative to the model root (omitted when empty).
    pub ignore_paths: Vec<String>,
}

/// A model manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Informative model name (last component of the model path).
    pub model_name: String,
    /// How the manifest was built.
    pub serialization: Serialization,
    /// The files, in canonical order.
    pub resources: Vec<Resource>,
}

impl Manifest {
    /// SHA-256 over the concatenation of the resource digests, in order.
    pub fn root_digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for r in &self.resources {
            h.update(&r.digest);
        }
        h.finalize().into()
    }

    /// Total number of bytes hashed is not recorded in manifests; this is the
    /// number of resources.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// True when the manifest lists no file.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// Sorts resources into the canonical model-signing order.
    pub fn sort(&mut self) {
        self.resources
            .sort_by(|a, b| compare_names(&a.name, &b.name));
    }
}

/// Orders two resource names as model-signing does: by their `/`-separated
/// components, each compared by code point (Python `PurePosixPath` order).
pub fn compare_names(a: &str, b: &str) -> Ordering {
    a.split('/')
        .filter(|c| !c.is_empty())
        .cmp(b.split('/').filter(|c| !c.is_empty()))
}

/// A path to ignore, as components relative to the model root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnorePath {
    components: Vec<String>,
}

impl IgnorePath {
    /// Parses a relative POSIX path. Empty and `.` components are dropped;
    /// returns `None` for an absolute path or one with a `..` component (such a
    /// path can never match a file inside the model, model-signing drops or
    /// never matches it too). A path with no component left (`.`) matches
    /// everything, as in model-signing.
    pub fn parse(s: &str) -> Option<Self> {
        if s.starts_with('/') {
            return None;
        }
        let mut components = Vec::new();
        for c in s.split('/') {
            match c {
                "" | "." => {}
                ".." => return None,
                c => components.push(c.to_owned()),
            }
        }
        Some(IgnorePath { components })
    }

    /// The path as written in a manifest (`.` when it has no component).
    pub fn as_posix(&self) -> String {
        if self.components.is_empty() {
            ".".to_owned()
        } else {
            self.components.join("/")
        }
    }

    /// True when this path has no component (it ignores the whole model).
    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    fn matches(&self, rel: &[String]) -> bool {
        rel.len() >= self.components.len() && self.components.iter().zip(rel).all(|(a, b)| a == b)
    }
}

/// Receives progress reports while a model is hashed (from several threads).
pub trait Progress: Sync {
    /// The files to hash are known: how many and their total size.
    fn listed(&self, _files: usize, _bytes: u64) {}
    /// `bytes` more bytes were hashed.
    fn hashed(&self, _bytes: u64) {}
}

/// No progress reporting.
impl Progress for () {}

/// Options of [`hash_model`].
#[derive(Debug, Clone, Default)]
pub struct HashOptions {
    /// Paths to ignore (files or directories), relative to the model root.
    pub ignore_paths: Vec<IgnorePath>,
    /// Also ignore `.git`, `.gitattributes`, `.github` and `.gitignore`.
    pub ignore_git_paths: bool,
    /// Follow symbolic links to files instead of refusing them.
    pub allow_symlinks: bool,
}

impl HashOptions {
    /// The options model-signing uses by default: git paths ignored, links
    /// refused.
    pub fn new() -> Self {
        HashOptions {
            ignore_paths: Vec::new(),
            ignore_git_paths: true,
            allow_symlinks: false,
        }
    }

    /// Every ignore path in effect, the git paths included.
    pub fn effective_ignores(&self) -> Vec<IgnorePath> {
        let mut v = self.ignore_paths.clone();
        if self.ignore_git_paths {
            v.extend(GIT_PATHS.iter().filter_map(|p| IgnorePath::parse(p)));
        }
        v
    }

    /// The `ignore_paths` list recorded in the manifest: every ignore path in
    /// effect, deduplicated and sorted (model-signing writes a set, so its
    /// order carries no meaning).
    pub fn recorded_ignores(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .effective_ignores()
            .iter()
            .map(IgnorePath::as_posix)
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// A file found in the model, before hashing.
#[derive(Debug, Clone)]
pub struct FileEntry {
    /// Resource name.
    pub name: String,
    /// Path on disk.
    pub path: PathBuf,
    /// Size when listed.
    pub size: u64,
}

/// Lists the files of a model in canonical order, applying the ignore and
/// symlink rules. Does not read file contents.
pub fn list_files(model: &Path, opts: &HashOptions) -> Result<Vec<FileEntry>> {
    let model = normalize(model);
    let lmeta = fs::symlink_metadata(&model).map_err(|e| SignError::io(&model, e))?;
    if lmeta.file_type().is_symlink() && !opts.allow_symlinks {
        return Err(SignError::SymlinkRefused { path: model });
    }
    let meta = fs::metadata(&model).map_err(|e| SignError::io(&model, e))?;
    if meta.is_file() {
        return Ok(vec![FileEntry {
            name: ".".to_owned(),
            path: model,
            size: meta.len(),
        }]);
    }
    if !meta.is_dir() {
        return Err(SignError::SpecialFile { path: model });
    }
    let ignores = opts.effective_ignores();
    let mut out = Vec::new();
    let mut rel = Vec::new();
    walk(&model, &mut rel, &ignores, opts.allow_symlinks, &mut out)?;
    out.sort_by(|a: &(Vec<String>, FileEntry), b| a.0.cmp(&b.0));
    Ok(out.into_iter().map(|(_, e)| e).collect())
}

fn walk(
    dir: &Path,
    rel: &mut Vec<String>,
    ignores: &[IgnorePath],
    allow_symlinks: bool,
    out: &mut Vec<(Vec<String>, FileEntry)>,
) -> Result<()> {
    let rd = fs::read_dir(dir).map_err(|e| SignError::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| SignError::io(dir, e))?;
        let path = entry.path();
        let name = match entry.file_name().into_string() {
            Ok(n) => n,
            Err(_) => return Err(SignError::NonUtf8Name { path }),
        };
        rel.push(name);
        let res = visit(&path, rel, ignores, allow_symlinks, out);
        rel.pop();
        res?;
    }
    Ok(())
}

fn visit(
    path: &Path,
    rel: &mut Vec<String>,
    ignores: &[IgnorePath],
    allow_symlinks: bool,
    out: &mut Vec<(Vec<String>, FileEntry)>,
) -> Result<()> {
    // Ignored paths are pruned before anything else is looked at.
    if ignores.iter().any(|i| i.matches(rel)) {
        return Ok(());
    }
    let lmeta = fs::symlink_metadata(path).map_err(|e| SignError::io(path, e))?;
    let ft = lmeta.file_type();
    if ft.is_symlink() {
        if !allow_symlinks {
            return Err(SignError::SymlinkRefused {
                path: path.to_owned(),
            });
        }
        // Followed: a link to a file is hashed, a link to a directory is
        // neither listed nor descended into (as Python's glob("**/*")).
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SignError::SpecialFile {
                    path: path.to_owned(),
                })
            }
            Err(e) => return Err(SignError::io(path, e)),
        };
        if meta.is_file() {
            push_file(path, rel, meta.len(), out);
        } else if !meta.is_dir() {
            return Err(SignError::SpecialFile {
                path: path.to_owned(),
            });
        }
        return Ok(());
    }
    if ft.is_dir() {
        walk(path, rel, ignores, allow_symlinks, out)
    } else if ft.is_file() {
        push_file(path, rel, lmeta.len(), out);
        Ok(())
    } else {
        Err(SignError::SpecialFile {
            path: path.to_owned(),
        })
    }
}

fn push_file(path: &Path, rel: &[String], size: u64, out: &mut Vec<(Vec<String>, FileEntry)>) {
    out.push((
        rel.to_vec(),
        FileEntry {
            name: rel.join("/"),
            path: path.to_owned(),
            size,
        },
    ));
}

/// Hashes one file with SHA-256, reading it in [`CHUNK_SIZE`] chunks;
/// `progress` is told the size of each chunk.
pub fn hash_file(path: &Path, progress: &dyn Progress) -> Result<[u8; 32]> {
    // Listed as a regular file, but it may have been replaced since: never
    // block on a FIFO or read a device forever.
    let mut f = tensorseal_format::open_regular(path).map_err(|e| SignError::io(path, e))?;
    let mut buf = vec![0u8; CHUNK_SIZE];
    let mut h = Sha256::new();
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SignError::io(path, e)),
        };
        // `n <= buf.len()` is guaranteed by `Read::read`.
        if let Some(chunk) = buf.get(..n) {
            h.update(chunk);
        }
        progress.hashed(n as u64);
    }
    Ok(h.finalize().into())
}

/// Hashes listed files in parallel (largest first, so big files do not end up
/// last on one thread) and returns them as resources in the listed order.
pub fn hash_files(files: &[FileEntry], progress: &dyn Progress) -> Result<Vec<Resource>> {
    progress.listed(files.len(), files.iter().map(|f| f.size).sum());
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by(|&a, &b| {
        let sa = files.get(a).map_or(0, |f| f.size);
        let sb = files.get(b).map_or(0, |f| f.size);
        sb.cmp(&sa)
    });
    let failed = AtomicBool::new(false);
    let mut digests: Vec<(usize, Result<[u8; 32]>)> = order
        .par_iter()
        .with_max_len(1)
        .filter_map(|&i| {
            if failed.load(AtomicOrdering::Relaxed) {
                return None;
            }
            let f = files.get(i)?;
            let r = hash_file(&f.path, progress);
            if r.is_err() {
                failed.store(true, AtomicOrdering::Relaxed);
            }
            Some((i, r))
        })
        .collect();
    digests.sort_by_key(|(i, _)| *i);
    let mut out = Vec::with_capacity(files.len());
    for (i, r) in digests {
        let digest = r?;
        if let Some(f) = files.get(i) {
            out.push(Resource {
                name: f.name.clone(),
                algorithm: "sha256".to_owned(),
                digest: digest.to_vec(),
            });
        }
    }
    if out.len() != files.len() {
        return Err(SignError::Raced {
            path: PathBuf::from("."),
            detail: "not every file was hashed".to_owned(),
        });
    }
    Ok(out)
}

/// The model name model-signing records: the last component of the path, or
/// of the absolute path when the path ends in `.` or `..`.
pub fn model_name(model: &Path) -> String {
    let norm = normalize(model);
    match norm.components().next_back() {
        Some(Component::Normal(n)) => n.to_string_lossy().into_owned(),
        _ => resolve_lenient(model)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// Builds the manifest of a model: lists, hashes, records how.
pub fn hash_model(model: &Path, opts: &HashOptions, progress: &dyn Progress) -> Result<Manifest> {
    let files = list_files(model, opts)?;
    let resources = hash_files(&files, progress)?;
    Ok(Manifest {
        model_name: model_name(model),
        serialization: Serialization {
            method: "files".to_owned(),
            hash_type: "sha256".to_owned(),
            allow_symlinks: opts.allow_symlinks,
            ignore_paths: opts.recorded_ignores(),
        },
        resources,
    })
}

/// Python `Path.resolve(strict=False)`: absolute, symlinks of the existing
/// part resolved, the rest appended with `..` applied lexically.
pub fn resolve_lenient(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => out.push(c.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => {
                out.push(n);
                if let Ok(real) = std::fs::canonicalize(&out) {
                    out = real;
                }
            }
        }
    }
    out
}

/// Drops `.` components and trailing slashes (so `model/` and `model/.` name
/// the directory itself, as in Python's pathlib).
fn normalize(p: &Path) -> PathBuf {
    let n: PathBuf = p.components().collect();
    if n.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        n
    }
}

/// Lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

/// Parses hex (either case); `None` when not an even number of hex digits.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    fn nib(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if b.len() & 1 != 0 {
        return None;
    }
    b.chunks_exact(2)
        .map(|p| match p {
            [h, l] => Some(nib(*h)? << 4 | nib(*l)?),
            _ => None,
        })
        .collect()
}
