//! `AtomicFile`: the target shows the old file or the complete new one,
//! whatever the durability; temporary files never stay behind.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use tensorseal_format::{AtomicFile, Durability};

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn replaces_the_target_only_on_commit() {
    for durability in [Durability::Sync, Durability::NoSync] {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        std::fs::write(&target, b"old").unwrap();
        let mut f = AtomicFile::create_with(&target, durability).unwrap();
        assert_eq!(f.durability(), durability);
        f.write_all(b"new contents").unwrap();
        f.flush().unwrap();
        // Before the commit: the old file at the target, the new one beside it.
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(std::fs::read(f.temp_path()).unwrap(), b"new contents");
        assert_eq!(names(dir.path()).len(), 2);
        f.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new contents");
        assert_eq!(names(dir.path()), ["out.bin"]);
    }
}

#[test]
fn dropped_without_commit_leaves_nothing() {
    for durability in [Durability::Sync, Durability::NoSync] {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let mut f = AtomicFile::create_with(&target, durability).unwrap();
        f.write_all(&[7; 4096]).unwrap();
        drop(f);
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }
}

#[test]
fn seek_patches_earlier_bytes() {
    // Zip writers go back to fill in sizes: seeking must flush the buffer
    // and land where asked.
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.bin");
    let mut f = AtomicFile::create_with(&target, Durability::NoSync).unwrap();
    f.write_all(b"0123456789").unwrap();
    assert_eq!(f.seek(SeekFrom::Start(2)).unwrap(), 2);
    f.write_all(b"ab").unwrap();
    assert_eq!(f.seek(SeekFrom::End(0)).unwrap(), 10);
    f.write_all(b"!").unwrap();
    f.commit().unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"01ab456789!");
}

#[test]
fn create_defaults_to_sync() {
    let dir = tempfile::tempdir().unwrap();
    let f = AtomicFile::create(dir.path().join("x")).unwrap();
    assert_eq!(f.durability(), Durability::Sync);
    assert_eq!(Durability::default(), Durability::Sync);
}

#[test]
fn file_writer_shows_each_tensor_in_the_file_before_the_next() {
    use std::os::unix::fs::FileExt;
    use tensorseal_format::write::{FileWriter, Layout, TensorSpec, WriteOptions};
    use tensorseal_format::{Dtype, SafeTensors};
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("t.safetensors");
    let specs: Vec<TensorSpec> = [("b", 3usize), ("a", 5000), ("c", 0), ("d", 1 << 20)]
        .iter()
        .map(|&(n, len)| TensorSpec {
            name: n.into(),
            dtype: Dtype::U8,
            shape: vec![len],
        })
        .collect();
    let data: Vec<Vec<u8>> = specs
        .iter()
        .enumerate()
        .map(|(k, s)| (0..s.shape[0]).map(|i| (i * 7 + k) as u8).collect())
        .collect();
    let opts = WriteOptions::new().with_durability(Durability::NoSync);
    let mut seen = Vec::new();
    let mut w = FileWriter::create(&target, &specs, &opts).unwrap();
    for i in w.layout().order().to_vec() {
        let range = w.write_tensor(i, |out| out.write_all(&data[i])).unwrap();
        // The tensor's bytes are already in the file, at its range.
        let mut back = vec![0u8; (range.end - range.start) as usize];
        w.flushed_file()
            .unwrap()
            .read_exact_at(&mut back, range.start)
            .unwrap();
        assert_eq!(back, data[i], "{}", specs[i].name);
        seen.push(i);
    }
    w.commit().unwrap();
    assert_eq!(seen, Layout::plan(&specs, None).unwrap().order());
    let bytes = std::fs::read(&target).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for (s, d) in specs.iter().zip(&data) {
        assert_eq!(st.tensor(&s.name).unwrap().data(), &d[..]);
    }

    // Dropped half-way (the caller's check failed): nothing at the target,
    // no temporary file.
    let other = dir.path().join("u.safetensors");
    let mut w = FileWriter::create(&other, &specs, &opts).unwrap();
    let first = w.layout().order()[0];
    w.write_tensor(first, |out| out.write_all(&data[first]))
        .unwrap();
    drop(w);
    assert_eq!(names(dir.path()), ["t.safetensors"]);

    // Out of layout order, twice, or committed early: refused, nothing written.
    let mut w = FileWriter::create(&other, &specs, &opts).unwrap();
    let order = w.layout().order().to_vec();
    let e = w.write_tensor(order[1], |_| Ok(())).unwrap_err();
    assert_eq!(e.kind(), "invalid_write");
    assert!(e.to_string().contains("out of layout order"), "{e}");
    w.write_tensor(order[0], |out| out.write_all(&data[order[0]]))
        .unwrap();
    let e = w.write_tensor(order[0], |_| Ok(())).unwrap_err();
    assert_eq!(e.kind(), "invalid_write");
    let e = w.commit().unwrap_err();
    assert!(
        e.to_string().contains("before this tensor was written"),
        "{e}"
    );
    assert_eq!(names(dir.path()), ["t.safetensors"]);
}

#[test]
fn an_error_creating_the_temporary_file_quotes_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("missing-dir").join("out.bin");
    let err = AtomicFile::create(&target).expect_err("created a file in a missing directory");
    let msg = err.to_string();
    assert!(msg.contains(&*target.to_string_lossy()), "{msg}");
    assert!(!msg.contains(".tmp-"), "{msg}");
    assert!(err.is_io());
}

#[test]
fn an_empty_target_path_is_not_found() {
    let err = AtomicFile::create("").expect_err("created a file at the empty path");
    assert!(err.is_io());
    match err {
        tensorseal_format::FormatError::Io { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
        }
        other => panic!("not an I/O error: {other}"),
    }
}
