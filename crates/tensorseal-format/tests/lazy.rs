#![cfg(unix)]
//! Opening is lazy: a 100 GB (sparse) file opens by reading its header only,
//! and slices read only what they need, through both file readers.

use tensorseal_format::write::{Layout, TensorSpec};
use tensorseal_format::{Dtype, MmapFile, PreadFile, ReadTensors, SliceArg};

#[test]
fn hundred_gigabyte_file_opens_lazily() {
    const ROWS: usize = 100_000;
    const COLS: usize = 250_000; // 100,000 × 250,000 F32 = 100 GB
    let specs = vec![TensorSpec {
        name: "huge".into(),
        dtype: Dtype::F32,
        shape: vec![ROWS, COLS],
    }];
    let l = Layout::plan(&specs, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.safetensors");
    std::fs::write(&path, l.header_bytes()).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    if let Err(e) = f.set_len(l.file_len() as u64) {
        eprintln!("skipping: this filesystem cannot make a 100 GB sparse file: {e}");
        return;
    }
    // One known value at the very end.
    use std::os::unix::fs::FileExt;
    f.write_all_at(&7.5f32.to_le_bytes(), l.file_len() as u64 - 4)
        .unwrap();
    drop(f);

    let p = PreadFile::open(&path).unwrap();
    assert_eq!(p.header().data_len(), ROWS * COLS * 4);
    let last = p
        .read_slice(
            "huge",
            &[SliceArg::Index(-1), SliceArg::range(-2, COLS as i64)],
        )
        .unwrap();
    assert_eq!(last.shape, vec![2]);
    assert_eq!(&last.data[4..], &7.5f32.to_le_bytes());

    let m = MmapFile::open(&path).unwrap();
    let t = m.tensor("huge").unwrap();
    assert_eq!(t.data().len(), ROWS * COLS * 4);
    let col = m
        .read_slice(
            "huge",
            &[SliceArg::range(-3, ROWS as i64), SliceArg::Index(-1)],
        )
        .unwrap();
    assert_eq!(col.shape, vec![3]);
    assert_eq!(&col.data[8..], &7.5f32.to_le_bytes());
}
