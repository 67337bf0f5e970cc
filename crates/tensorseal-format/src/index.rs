//! Sharded checkpoints: `*.safetensors.index.json` (as written by Hugging
//! Face `save_pretrained`): `{"metadata": {"total_size": …}, "weight_map":
//! {tensor: shard file}}`.
//!
//! [`ShardedIndex::open`] parses the index strictly (duplicate keys, non-string
//! file names, and file names that are not plain relative paths inside the
//! checkpoint directory are refused). [`ShardedIndex::validate`] then reads
//! every shard's header and checks that each tensor is where the index says,
//! and that no shard holds a tensor the index does not map to it. Symbolic
//! links inside the directory are followed (the Hugging Face cache relies on
//! them); the check on names is lexical.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use crate::header::{Entry, Pairs};
use crate::read::{PreadFile, ReadTensors};
use crate::FormatError;

/// Suffix of index file names.
pub const INDEX_SUFFIX: &str = ".safetensors.index.json";

/// The largest index file accepted (bytes).
pub const MAX_INDEX_LEN: u64 = 100_000_000;

/// A parsed `*.safetensors.index.json`.
#[derive(Debug, Clone)]
pub struct ShardedIndex {
    path: PathBuf,
    dir: PathBuf,
    metadata: serde_json::Map<String, Value>,
    weight_map: Vec<(String, String)>,
    lookup: HashMap<String, usize>,
}

/// A shard whose header was read and checked against the index.
#[derive(Debug)]
pub struct Shard {
    /// File name as written in the index.
    pub file: String,
    /// The shard, open (its path, header and file handle).
    pub reader: PreadFile,
}

fn bad(path: &Path, reason: impl Into<String>) -> FormatError {
    FormatError::InvalidIndex {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Whether `file` is a plain relative path with no `..`, root or prefix.
pub fn is_safe_relative(file: &str) -> bool {
    if file.is_empty() || file.contains('\0') || file.contains('\\') {
        return false;
    }
    // A Windows drive prefix such as `C:` is refused on every platform.
    if file.len() >= 2 && file.as_bytes()[1] == b':' {
        return false;
    }
    Path::new(file)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && Path::new(file)
            .components()
            .any(|c| matches!(c, Component::Normal(_)))
}

impl ShardedIndex {
    /// Reads and parses the index at `path` (no shard is opened).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FormatError> {
        let path = path.as_ref();
        let file = crate::open::open_regular(path).map_err(|e| FormatError::io(path, e))?;
        let len = file.metadata().map_err(|e| FormatError::io(path, e))?.len();
        if len > MAX_INDEX_LEN {
            return Err(bad(
                path,
                format!("{len} bytes is larger than the limit of {MAX_INDEX_LEN}"),
            ));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        use std::io::Read;
        file.take(MAX_INDEX_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| FormatError::io(path, e))?;
        Self::parse(path, &bytes)
    }

    /// Parses index JSON `bytes`; `path` locates the shards (its directory)
    /// and names the index in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, FormatError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| bad(path, format!("not UTF-8 (at byte {})", e.valid_up_to())))?;
        let top: Pairs<Entry> =
            serde_json::from_str(text).map_err(|e| bad(path, format!("not a JSON object: {e}")))?;
        let mut metadata = None;
        let mut weight_map = None;
        for (k, v) in top.0 {
            let slot = match k.as_str() {
                "metadata" => &mut metadata,
                "weight_map" => &mut weight_map,
                _ => continue,
            };
            if slot.replace(v).is_some() {
                return Err(bad(path, format!("duplicate key {k:?}")));
            }
        }
        let metadata = match metadata {
            None => serde_json::Map::new(),
            Some(Entry::Object(pairs)) => {
                let mut m = serde_json::Map::new();
                for (k, v) in pairs {
                    if m.insert(k.clone(), v).is_some() {
                        return Err(bad(path, format!("duplicate key \"metadata.{k}\"")));
                    }
                }
                m
            }
            Some(Entry::Other(Value::Null)) => serde_json::Map::new(),
            Some(other) => {
                return Err(bad(
                    path,
                    format!("\"metadata\" is {}, not an object", other.describe()),
                ))
            }
        };
        if let Some(ts) = metadata.get("total_size") {
            if !ts.is_u64() {
                return Err(bad(
                    path,
                    format!("metadata.total_size {ts} is not a non-negative integer"),
                ));
            }
        }
        let pairs = match weight_map {
            Some(Entry::Object(pairs)) => pairs,
            Some(other) => {
                return Err(bad(
                    path,
                    format!("\"weight_map\" is {}, not an object", other.describe()),
                ))
            }
            None => return Err(bad(path, "missing \"weight_map\"")),
        };
        let mut map = Vec::with_capacity(pairs.len());
        let mut lookup = HashMap::with_capacity(pairs.len());
        for (tensor, v) in pairs {
            let Value::String(file) = v else {
                return Err(bad(
                    path,
                    format!("weight_map[{tensor:?}] is {v}, not a file name"),
                ));
            };
            if !is_safe_relative(&file) {
                return Err(FormatError::IndexPathEscape {
                    path: path.to_owned(),
                    tensor,
                    file,
                });
            }
            if lookup.insert(tensor.clone(), map.len()).is_some() {
                return Err(bad(path, format!("duplicate key \"weight_map.{tensor}\"")));
            }
            map.push((tensor, file));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        Ok(ShardedIndex {
            path: path.to_owned(),
            dir,
            metadata,
            weight_map: map,
            lookup,
        })
    }

    /// Path of the index file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The checkpoint directory (the index's parent).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The index's `metadata` object (usually `{"total_size": …}`).
    pub fn metadata(&self) -> &serde_json::Map<String, Value> {
        &self.metadata
    }

    /// `metadata.total_size`, if present.
    pub fn total_size(&self) -> Option<u64> {
        self.metadata.get("total_size").and_then(Value::as_u64)
    }

    /// `(tensor, shard file)` pairs in the order of the index.
    pub fn weight_map(&self) -> &[(String, String)] {
        &self.weight_map
    }

    /// The shard file holding `tensor`, per the index.
    pub fn shard_of(&self, tensor: &str) -> Option<&str> {
        self.lookup
            .get(tensor)
            .map(|&i| self.weight_map[i].1.as_str())
    }

    /// Distinct shard file names, sorted.
    pub fn shard_files(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.weight_map.iter().map(|(_, f)| f.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Opens every shard, reads and validates its header, and checks it
    /// against the index. Shards are returned sorted by file name.
    pub fn validate(&self) -> Result<Vec<Shard>, FormatError> {
        let mut expected: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (t, f) in &self.weight_map {
            expected.entry(f.as_str()).or_default().push(t.as_str());
        }
        let mut shards = Vec::with_capacity(expected.len());
        for (file, tensors) in expected {
            let path = self.dir.join(file);
            let reader = PreadFile::open(&path).map_err(|e| e.in_file(&path))?;
            let header = reader.header();
            for t in tensors {
                if header.get(t).is_none() {
                    return Err(FormatError::IndexTensorMissing {
                        path: self.path.clone(),
                        tensor: t.to_owned(),
                        file: file.to_owned(),
                    });
                }
            }
            for name in header.names() {
                let mapped = self.shard_of(name);
                if mapped != Some(file) {
                    return Err(FormatError::IndexTensorUnlisted {
                        path: self.path.clone(),
                        tensor: name.to_owned(),
                        file: file.to_owned(),
                        mapped_to: mapped.map(str::to_owned),
                    });
                }
            }
            shards.push(Shard {
                file: file.to_owned(),
                reader,
            });
        }
        self.check_orphans(&shards)?;
        Ok(shards)
    }

    /// A file named like a member of the shard set (`P-00002-of-00003.safetensors`
    /// where the index names other `P-…-of-00003` files) but absent from the
    /// index holds tensors the index does not list.
    fn check_orphans(&self, shards: &[Shard]) -> Result<(), FormatError> {
        let referenced: std::collections::HashSet<&str> =
            shards.iter().map(|s| s.file.as_str()).collect();
        let mut sets = std::collections::BTreeSet::new();
        for f in &referenced {
            if let Some((prefix, _, n)) = split_shard_name(f) {
                sets.insert((prefix.to_owned(), n));
            }
        }
        for (prefix, n) in sets {
            for i in 1..=n {
                let name = format!("{prefix}-{i:05}-of-{n:05}.safetensors");
                if referenced.contains(name.as_str()) {
                    continue;
                }
                let path = self.dir.join(&name);
                if !path.is_file() {
                    continue;
                }
                let shard = PreadFile::open(&path).map_err(|e| e.in_file(&path))?;
                let first = shard.header().names().next().map(str::to_owned);
                if let Some(tensor) = first {
                    let mapped_to = self.shard_of(&tensor).map(str::to_owned);
                    return Err(FormatError::IndexTensorUnlisted {
                        path: self.path.clone(),
                        tensor,
                        file: name,
                        mapped_to,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Splits `P-00001-of-00003.safetensors` into `("P", 1, 3)`.
fn split_shard_name(name: &str) -> Option<(&str, u32, u32)> {
    let stem = name.strip_suffix(".safetensors")?;
    let (head, n) = stem.rsplit_once("-of-")?;
    let (prefix, i) = head.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(n) || !digits(i) {
        return None;
    }
    Some((prefix, i.parse().ok()?, n.parse().ok()?))
}

/// What a path holds: a single file or a sharded checkpoint.
#[derive(Debug)]
pub enum Checkpoint {
    /// One `.safetensors` file.
    Single(PathBuf),
    /// A sharded checkpoint's index.
    Sharded(ShardedIndex),
}

/// Resolves a `.safetensors` file, an index, or a directory holding either.
///
/// In a directory, `model.safetensors.index.json` wins, then a single
/// `*.safetensors.index.json`, then `model.safetensors`, then a single
/// `*.safetensors`; anything ambiguous is an error naming the candidates.
pub fn open_path(path: impl AsRef<Path>) -> Result<Checkpoint, FormatError> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path).map_err(|e| FormatError::io(path, e))?;
    if meta.is_dir() {
        return open_dir(path);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.ends_with(INDEX_SUFFIX) || name.ends_with(".index.json") {
        Ok(Checkpoint::Sharded(ShardedIndex::open(path)?))
    } else {
        Ok(Checkpoint::Single(path.to_owned()))
    }
}

/// Finds the checkpoint in directory `dir` (see [`open_path`]).
pub fn open_dir(dir: impl AsRef<Path>) -> Result<Checkpoint, FormatError> {
    let dir = dir.as_ref();
    let mut indexes = Vec::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| FormatError::io(dir, e))? {
        let entry = entry.map_err(|e| FormatError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if name.ends_with(INDEX_SUFFIX) {
            indexes.push(name);
        } else if name.ends_with(".safetensors") {
            files.push(name);
        }
    }
    indexes.sort();
    files.sort();
    let pick =
        |list: &[String], preferred: &str, what: &str| -> Result<Option<PathBuf>, FormatError> {
            if list.iter().any(|n| n == preferred) {
                return Ok(Some(dir.join(preferred)));
            }
            match list {
                [] => Ok(None),
                [one] => Ok(Some(dir.join(one))),
                many => Err(FormatError::io(
                    dir,
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("several {what} files, name one: {}", many.join(", ")),
                    ),
                )),
            }
        };
    if let Some(p) = pick(&indexes, "model.safetensors.index.json", "index")? {
        return Ok(Checkpoint::Sharded(ShardedIndex::open(p)?));
    }
    if let Some(p) = pick(&files, "model.safetensors", ".safetensors")? {
        return Ok(Checkpoint::Single(p));
    }
    Err(FormatError::io(
        dir,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no .safetensors file or *.safetensors.index.json in this directory",
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_paths() {
        for ok in [
            "model-00001-of-00002.safetensors",
            "sub/x.safetensors",
            "./a",
        ] {
            assert!(is_safe_relative(ok), "{ok}");
        }
        for no in [
            "",
            "../x",
            "/etc/passwd",
            "a/../../b",
            "C:x",
            "a\\..\\b",
            ".",
            "a\0b",
        ] {
            assert!(!is_safe_relative(no), "{no}");
        }
    }

    #[test]
    fn shard_name_parts() {
        assert_eq!(
            split_shard_name("model-00002-of-00003.safetensors"),
            Some(("model", 2, 3))
        );
        assert_eq!(
            split_shard_name("diffusion_pytorch_model-00001-of-00002.safetensors"),
            Some(("diffusion_pytorch_model", 1, 2))
        );
        assert_eq!(split_shard_name("model.safetensors"), None);
        assert_eq!(split_shard_name("model-1-of-2.safetensors"), None);
    }

    #[test]
    fn parse_errors() {
        let p = Path::new("m.safetensors.index.json");
        let k = |s: &str| ShardedIndex::parse(p, s.as_bytes()).unwrap_err().kind();
        assert_eq!(k("[]"), "invalid_index");
        assert_eq!(k("{}"), "invalid_index");
        assert_eq!(k(r#"{"weight_map":{"a":"x","a":"y"}}"#), "invalid_index");
        assert_eq!(k(r#"{"weight_map":{"a":1}}"#), "invalid_index");
        assert_eq!(k(r#"{"weight_map":{"a":"../x"}}"#), "index_path_escape");
        assert_eq!(k(r#"{"weight_map":{"a":"/x"}}"#), "index_path_escape");
        assert_eq!(
            k(r#"{"metadata":{"total_size":-1},"weight_map":{}}"#),
            "invalid_index"
        );
        let ok = ShardedIndex::parse(
            p,
            br#"{"metadata":{"total_size":8},"weight_map":{"b":"2.st","a":"1.st","c":"1.st"}}"#,
        )
        .unwrap();
        assert_eq!(ok.total_size(), Some(8));
        assert_eq!(ok.shard_files(), vec!["1.st", "2.st"]);
        assert_eq!(ok.shard_of("b"), Some("2.st"));
    }
}
