//! Decoding what Python writes (scripts/gen_codec_vectors.py).

use std::io::Read;
use std::path::PathBuf;

use tensorseal_codec::{
    decode_slice, read_bounded, sniff, zip_member, Bounded, Codec, CodecError, Decoder, Limits,
};

fn data(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn expected() -> Vec<u8> {
    let mut v = data("plain_a.bin");
    v.extend(data("plain_b.bin"));
    v
}

#[test]
fn every_wrapper_decodes_all_concatenated_streams() {
    let want = expected();
    for (file, codec) in [
        ("gzip2.gz", Codec::Gzip),
        ("zlib2.z", Codec::Zlib),
        ("bzip2.bz2", Codec::Bzip2),
        ("xz2.xz", Codec::Xz),
        ("lzma2.lzma", Codec::LzmaAlone),
        ("zstd2.zst", Codec::Zstd),
        ("lz4_2.lz4", Codec::Lz4),
    ] {
        let input = data(file);
        assert_eq!(sniff(&input), Some(codec), "{file}");
        let d = decode_slice(codec, &input, Limits::default());
        assert!(d.error.is_none(), "{file}: {:?}", d.error);
        assert_eq!(d.data.len(), want.len(), "{file}");
        assert!(d.data == want, "{file}: content differs");
    }
}

#[test]
fn limit_is_distinct_from_corruption() {
    let bomb = data("bomb.bz2");
    let d = decode_slice(
        Codec::Bzip2,
        &bomb,
        Limits {
            max_output: 1 << 20,
            max_memory: 1 << 20,
        },
    );
    assert!(
        matches!(d.error, Some(CodecError::ExceedsLimit { limit }) if limit == 1 << 20),
        "{:?}",
        d.error
    );
    assert_eq!(d.data.len(), 1 << 20);

    let t = decode_slice(Codec::Gzip, &data("truncated.gz"), Limits::default());
    assert!(
        matches!(t.error, Some(CodecError::Corrupt { codec: "gzip", .. })),
        "{:?}",
        t.error
    );
    assert!(!t.error.as_ref().is_some_and(CodecError::is_limit));

    let x = decode_slice(Codec::Xz, &data("trailing.xz"), Limits::default());
    assert!(
        matches!(x.error, Some(CodecError::Corrupt { .. })),
        "{:?}",
        x.error
    );
    assert_eq!(
        x.data,
        data("plain_a.bin"),
        "bytes before the error are kept"
    );
}

#[test]
fn a_stream_ending_exactly_at_the_limit_is_complete() {
    let want = expected();
    let d = decode_slice(
        Codec::Gzip,
        &data("gzip2.gz"),
        Limits {
            max_output: want.len() as u64,
            max_memory: 1 << 20,
        },
    );
    assert!(d.error.is_none(), "{:?}", d.error);
    let short = decode_slice(
        Codec::Gzip,
        &data("gzip2.gz"),
        Limits {
            max_output: want.len() as u64 - 1,
            max_memory: 1 << 20,
        },
    );
    assert!(matches!(short.error, Some(CodecError::ExceedsLimit { .. })));
}

#[test]
fn lzma_dictionary_over_the_memory_limit_is_refused_before_allocation() {
    let mut h = data("lzma2.lzma");
    h[1..5].copy_from_slice(&(1u32 << 30).to_le_bytes());
    let d = decode_slice(Codec::LzmaAlone, &h, Limits::default());
    assert!(
        matches!(d.error, Some(CodecError::TooMuchMemory { need, .. }) if need == 1 << 30),
        "{:?}",
        d.error
    );
}

#[test]
fn zip_members_decode_like_zipfile() {
    let meta: serde_like::Meta =
        serde_like::parse(&String::from_utf8(data("members.json")).unwrap());
    let want = expected();
    for (name, method, size) in meta {
        let raw = data(&format!("member_{name}.bin"));
        let r = zip_member(method, raw.as_slice(), size, 64 << 20).unwrap();
        let d = read_bounded(r, 1 << 30, "zip");
        assert!(d.error.is_none(), "{name}: {:?}", d.error);
        assert!(d.data == want, "{name}: content differs");
        // Only a prefix: the reader can stop early and skip ahead through a buffer.
        let mut r = zip_member(method, raw.as_slice(), size, 64 << 20).unwrap();
        tensorseal_codec::skip(&mut r, 100).unwrap();
        let mut part = [0u8; 50];
        r.read_exact(&mut part).unwrap();
        assert_eq!(&part[..], &want[100..150], "{name}");
    }
    assert!(matches!(
        zip_member(9, &b""[..], 0, 1 << 20),
        Err(CodecError::UnsupportedMethod(9))
    ));
}

#[test]
fn bounded_reports_the_limit_through_io() {
    let input = data("zlib2.z");
    let mut b = Bounded::new(Decoder::new(Codec::Zlib, input.as_slice(), 1 << 20), 10);
    let mut out = Vec::new();
    let e = b.read_to_end(&mut out).unwrap_err();
    assert_eq!(out.len(), 10);
    assert!(CodecError::from_io("zlib", e).is_limit());
}

#[test]
fn sniff_rejects_plain_data() {
    assert_eq!(sniff(b"\x80\x04\x95"), None);
    assert_eq!(sniff(b"hello world, this is text"), None);
    assert_eq!(sniff(b""), None);
    // MARK, STRING: a valid zlib header for another window size, but a pickle.
    assert_eq!(sniff(b"(S'id'\nios\nsystem\n."), None);
}

/// A tiny reader for members.json (no serde dependency for one test).
mod serde_like {
    pub type Meta = Vec<(String, u16, u64)>;
    pub fn parse(s: &str) -> Meta {
        let mut out = Vec::new();
        let mut name = None;
        let mut method = None;
        for line in s.lines() {
            let t = line.trim().trim_end_matches(',');
            if let Some(n) = t.strip_suffix(": {") {
                name = Some(n.trim_matches('"').to_owned());
            } else if let Some(v) = t.strip_prefix("\"method\": ") {
                method = Some(v.parse().unwrap());
            } else if let Some(v) = t.strip_prefix("\"size\": ") {
                out.push((
                    name.take().unwrap(),
                    method.take().unwrap(),
                    v.parse().unwrap(),
                ));
            }
        }
        assert_eq!(out.len(), 4, "{s}");
        out
    }
}
