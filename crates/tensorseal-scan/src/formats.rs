//! Checks for the non-archive, non-pickle formats: safetensors, NumPy, GGUF, HDF5/Keras,
//! TensorFlow SavedModel, and zip data appended to another format.

use tensorseal_format::header::read_header_len;
use tensorseal_format::Header;

use crate::finding::{ids, quote, Severity};
use crate::identify::{contains, find};
use crate::source::{read_range, read_upto, Source};
use crate::{pickles, zipread, zipscan, Ctx};

/// Metadata larger than this (keys + values) is reported as very large.
const LARGE_METADATA: usize = 64 * 1024;

/// Bidirectional-override characters ("Trojan Source") count as control characters.
fn is_control_like(c: char) -> bool {
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

const CODE_PATTERNS: &[&str] = &[
    "__import__",
    "import os",
    "import subprocess",
    "import sys",
    "eval(",
    "exec(",
    "os.system",
    "subprocess.",
    "<script",
    "{%",
    "{{",
    "#!/",
    "$(",
    "powershell",
    "base64 -d",
    "__builtins__",
    "__globals__",
];

const URL_PATTERNS: &[&str] = &["http://", "https://", "ftp://", "file://", "data:", "s3://"];

/// safetensors: full header validation by the core, then metadata and tensor-name checks.
/// Tensor bytes are never read.
pub(crate) fn scan_safetensors(ctx: &mut Ctx<'_>, src: &dyn Source, loc: &[String]) {
    let len = src.len();
    let Some(prefix) = ctx.read_or_report(loc, read_upto(src, 0, 8)) else {
        return;
    };
    let invalid = |ctx: &mut Ctx<'_>, kind: &str, msg: String| {
        ctx.add(
            ids::SAFETENSORS_INVALID,
            loc,
            None,
            None,
            format!("invalid safetensors ({kind}): {msg}"),
        );
    };
    let n = match read_header_len(&prefix, len) {
        Ok(n) => n,
        Err(e) => return invalid(ctx, e.kind(), e.to_string()),
    };
    let Some(json) = ctx.read_or_report(loc, read_range(src, 8, n as u64)) else {
        return;
    };
    let header = match Header::parse(&json) {
        Ok(h) => h,
        Err(e) => return invalid(ctx, e.kind(), e.to_string()),
    };
    if let Err(e) = header.check_data_len(len - 8 - n as u64) {
        invalid(ctx, e.kind(), e.to_string());
    }
    if let Some(meta) = header.metadata() {
        let total: usize = meta.iter().map(|(k, v)| k.len() + v.len()).sum();
        if total > LARGE_METADATA {
            ctx.add(
                ids::SAFETENSORS_METADATA,
                loc,
                None,
                None,
                format!("__metadata__ is very large: {total} bytes (limit {LARGE_METADATA})"),
            );
        }
        for (k, v) in meta {
            let mut why = Vec::new();
            if k.chars().chain(v.chars()).any(is_control_like) {
                why.push("control characters".to_owned());
            }
            if let Some(p) = CODE_PATTERNS
                .iter()
                .find(|p| v.contains(*p) || k.contains(*p))
            {
                why.push(format!("code-like text {}", quote(p, 40)));
            }
            if let Some(p) = URL_PATTERNS
                .iter()
                .find(|p| v.to_ascii_lowercase().contains(*p))
            {
                why.push(format!("a URL ({p})"));
            }
            if !why.is_empty() {
                ctx.add(
                    ids::SAFETENSORS_METADATA,
                    loc,
                    None,
                    None,
                    format!(
                        "__metadata__ entry {} = {} contains {}",
                        quote(k, 80),
                        quote(v, 120),
                        why.join(", ")
                    ),
                );
            }
        }
    }
    for name in header.names() {
        let mut why = Vec::new();
        let mut sev = Severity::Low;
        if name.chars().any(is_control_like) {
            why.push("control characters");
            sev = Severity::Medium;
        }
        if name.contains('\\') {
            why.push("a backslash");
            sev = Severity::Medium;
        }
        if name.starts_with('/') {
            why.push("a leading '/'");
            sev = Severity::Medium;
        }
        if name.split(['/', '\\']).any(|c| c == "..") {
            why.push("a '..' component");
            sev = Severity::Medium;
        }
        if why.is_empty() && name.contains('/') {
            why.push("a path separator '/'");
        }
        if !why.is_empty() {
            ctx.add_sev(
                ids::SAFETENSORS_TENSOR_NAME,
                sev,
                loc,
                None,
                None,
                format!(
                    "tensor name {} contains {}",
                    quote(name, 120),
                    why.join(", ")
                ),
            );
        }
    }
}

/// Analyses the bytes from `offset` on as the pickle `numpy.load(allow_pickle=True)`
/// would unpickle there.
fn analyze_npy_data(ctx: &mut Ctx<'_>, src: &dyn Source, loc: &[String], offset: u64, depth: u32) {
    let len = src.len().saturating_sub(offset);
    let cap = len.min(ctx.cfg.max_pickle_bytes);
    if let Some(data) = ctx.read_or_report(loc, read_range(src, offset, cap)) {
        if cap < len {
            ctx.add(
                ids::ARCHIVE_LIMIT,
                loc,
                Some(offset),
                None,
                format!("object array pickle of {len} bytes exceeds the limit; only the first {cap} analysed"),
            );
        }
        pickles::analyze_bytes(ctx, &data, loc, offset, depth);
    }
}

/// NumPy `.npy`: the header is read by the shared `tensorseal-npy` reader with numpy's
/// semantics. An array whose dtype is, or cannot be proven not to be, an object dtype
/// holds a pickle that `np.load(allow_pickle=True)` runs; that pickle is analysed.
/// `allow_pickle=True` also lifts numpy's 10000-character header limit, so large
/// headers are read too (up to [`tensorseal_npy::DEFAULT_MAX_HEADER`]; beyond it the
/// file is reported and its data analysed as a possible pickle).
pub(crate) fn scan_npy(ctx: &mut Ctx<'_>, src: &dyn Source, loc: &[String], depth: u32) {
    let Some(pre) = ctx.read_or_report(loc, read_upto(src, 0, 12)) else {
        return;
    };
    let invalid = |ctx: &mut Ctx<'_>, e: tensorseal_npy::NpyError| {
        ctx.add(
            ids::NUMPY_INVALID,
            loc,
            None,
            None,
            format!("invalid .npy: {e}"),
        )
    };
    let preamble = match tensorseal_npy::read_preamble(&pre) {
        Ok(p) => p,
        Err(e) => return invalid(ctx, e),
    };
    let want = preamble
        .data_offset()
        .min(tensorseal_npy::DEFAULT_MAX_HEADER as u64 + 12);
    let Some(prefix) = ctx.read_or_report(loc, read_upto(src, 0, want)) else {
        return;
    };
    let data_offset = preamble.data_offset();
    let header = match tensorseal_npy::parse_header(&prefix, tensorseal_npy::DEFAULT_MAX_HEADER) {
        Ok(h) => h,
        Err(e) if e.may_load() => {
            ctx.add(
                ids::NUMPY_INVALID,
                loc,
                None,
                None,
                format!(
                    "unreadable .npy header ({e}); numpy.load(allow_pickle=True) may still read it, so its data is analysed as a possible pickle"
                ),
            );
            return analyze_npy_data(ctx, src, loc, data_offset, depth);
        }
        Err(e) => return invalid(ctx, e),
    };
    let why = match header.dtype_verdict() {
        tensorseal_npy::Verdict::Plain => return,
        tensorseal_npy::Verdict::Object(spelling) => format!(
            "array with object dtype {spelling}: its data is a pickle (np.load(allow_pickle=True) runs it)"
        ),
        tensorseal_npy::Verdict::Unknown(why) => format!(
            "array whose dtype may hold objects ({why}): its data may be a pickle that np.load(allow_pickle=True) runs; treated as one"
        ),
    };
    ctx.add(ids::NUMPY_OBJECT_ARRAY, loc, Some(data_offset), None, why);
    analyze_npy_data(ctx, src, loc, data_offset, depth);
}

/// GGUF: header sanity and chat-template injection patterns.
pub(crate) fn scan_gguf(ctx: &mut Ctx<'_>, src: &dyn Source, loc: &[String]) {
    let Some(window) = ctx.read_or_report(loc, read_upto(src, 0, 64 << 20)) else {
        return;
    };
    let complete = window.len() as u64 == src.len();
    let mut g = Gguf {
        b: &window,
        pos: 4,
        v1: false,
    };
    let result = g.walk(|key, value, offset| {
        if key.contains("chat_template") {
            let lower = value.to_ascii_lowercase();
            let hit = [
                "__class__",
                "__globals__",
                "__subclasses__",
                "__builtins__",
                "__import__",
                "__mro__",
                "__init__",
                "popen",
                "os.system",
                "subprocess",
                "eval(",
                "exec(",
            ]
            .iter()
            .find(|p| lower.contains(*p));
            hit.map(|p| (key.to_owned(), (*p).to_owned(), offset))
        } else {
            None
        }
    });
    match result {
        Ok(hits) => {
            for (key, pat, off) in hits {
                ctx.add(
                    ids::GGUF_CHAT_TEMPLATE,
                    loc,
                    Some(off),
                    None,
                    format!(
                        "metadata {} uses {} (template injection)",
                        quote(&key, 80),
                        quote(&pat, 40)
                    ),
                );
            }
        }
        Err(GgufErr::Truncated) if !complete => {}
        Err(GgufErr::Truncated) => ctx.add(
            ids::GGUF_INVALID,
            loc,
            None,
            None,
            "GGUF header runs past the end of the file".into(),
        ),
        Err(GgufErr::Bad(why)) => ctx.add(
            ids::GGUF_INVALID,
            loc,
            None,
            None,
            format!("invalid GGUF: {why}"),
        ),
    }
}

enum GgufErr {
    Truncated,
    Bad(String),
}

struct Gguf<'a> {
    b: &'a [u8],
    pos: usize,
    v1: bool,
}

impl Gguf<'_> {
    fn take(&mut self, n: u64) -> Result<&[u8], GgufErr> {
        let n = usize::try_from(n).map_err(|_| GgufErr::Truncated)?;
        let end = self.pos.checked_add(n).ok_or(GgufErr::Truncated)?;
        let s = self.b.get(self.pos..end).ok_or(GgufErr::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, GgufErr> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, GgufErr> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    fn count(&mut self) -> Result<u64, GgufErr> {
        if self.v1 {
            self.u32().map(u64::from)
        } else {
            self.u64()
        }
    }
    fn string(&mut self) -> Result<String, GgufErr> {
        let n = self.count()?;
        if n > 1 << 30 {
            return Err(GgufErr::Bad(format!("string length {n} is absurd")));
        }
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    fn skip_value(&mut self, ty: u32, depth: u32) -> Result<Option<String>, GgufErr> {
        let fixed = match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            8 => return self.string().map(Some),
            9 => {
                if depth > 2 {
                    return Err(GgufErr::Bad("arrays nested too deep".into()));
                }
                let inner = self.u32()?;
                let n = self.count()?;
                let left = (self.b.len() - self.pos) as u64;
                if n > left.max(1 << 20) && inner != 9 {
                    return Err(GgufErr::Truncated);
                }
                for _ in 0..n {
                    self.skip_value(inner, depth + 1)?;
                }
                return Ok(None);
            }
            t => return Err(GgufErr::Bad(format!("unknown value type {t}"))),
        };
        self.take(fixed)?;
        Ok(None)
    }
    fn walk<T>(
        &mut self,
        mut visit: impl FnMut(&str, &str, u64) -> Option<T>,
    ) -> Result<Vec<T>, GgufErr> {
        let version = self.u32()?;
        if !(1..=3).contains(&version) {
            return Err(GgufErr::Bad(format!("unsupported version {version}")));
        }
        self.v1 = version == 1;
        let tensors = self.count()?;
        let kvs = self.count()?;
        if tensors > 1 << 24 {
            return Err(GgufErr::Bad(format!("tensor count {tensors} is absurd")));
        }
        if kvs > 1 << 20 {
            return Err(GgufErr::Bad(format!("metadata count {kvs} is absurd")));
        }
        let mut out = Vec::new();
        for _ in 0..kvs {
            let key = self.string()?;
            let ty = self.u32()?;
            let at = self.pos as u64;
            if let Some(s) = self.skip_value(ty, 0)? {
                if let Some(t) = visit(&key, &s, at) {
                    out.push(t);
                }
            }
        }
        Ok(out)
    }
}

const KERAS_LAMBDA_PATTERNS: &[&[u8]] = &[
    b"\"class_name\": \"Lambda\"",
    b"\"class_name\":\"Lambda\"",
    b"\"function_type\": \"lambda\"",
    b"\"function_type\":\"lambda\"",
];

/// Reports Keras Lambda layers found in model config JSON text (HDF5 attribute or
/// `.keras` `config.json`).
pub(crate) fn keras_lambda_check(ctx: &mut Ctx<'_>, data: &[u8], loc: &[String]) {
    if let Some((pat, off)) = KERAS_LAMBDA_PATTERNS
        .iter()
        .find_map(|p| find(data, p).map(|o| (p, o)))
    {
        ctx.add(
            ids::KERAS_LAMBDA,
            loc,
            Some(off as u64),
            None,
            format!(
                "Keras model config has a Lambda layer ({}): it runs serialized Python code when loaded",
                crate::finding::quote_bytes(pat, 60)
            ),
        );
    }
}

/// HDF5: the only code risk in Keras `.h5` files is a Lambda layer in the model config.
pub(crate) fn scan_hdf5(ctx: &mut Ctx<'_>, src: &dyn Source, loc: &[String]) {
    if let Some(w) = ctx.read_or_report(loc, read_upto(src, 0, 64 << 20)) {
        keras_lambda_check(ctx, &w, loc);
    }
}

/// TensorFlow SavedModel: graph ops that touch files or call Python.
pub(crate) fn scan_tf(ctx: &mut Ctx<'_>, src: &dyn Source, loc: &[String]) {
    let Some(w) = ctx.read_or_report(loc, read_upto(src, 0, 256 << 20)) else {
        return;
    };
    for op in [
        "ReadFile",
        "WriteFile",
        "MatchingFiles",
        "PyFunc",
        "EagerPyFunc",
        "PyFuncStateless",
    ] {
        // NodeDef.op is field 2 (tag 0x12), a short length-delimited string.
        let mut pat = vec![0x12, op.len() as u8];
        pat.extend_from_slice(op.as_bytes());
        if let Some(off) = find(&w, &pat) {
            ctx.add(
                ids::TF_DANGEROUS_OP,
                loc,
                Some(off as u64),
                None,
                format!("graph uses op {}", quote(op, 40)),
            );
        }
    }
}

/// Zip data appended to a file of another format (pickle + zip, safetensors + zip, …): an
/// end-of-central-directory record whose directory parses is scanned as a second view.
pub(crate) fn check_polyglot(
    ctx: &mut Ctx<'_>,
    src: &dyn Source,
    loc: &[String],
    depth: u32,
    fmt: crate::Format,
) {
    let Ok(tail) = read_upto(src, src.len().saturating_sub(65_557), 65_557) else {
        return;
    };
    if !contains(&tail, &zipread::EOCD_SIG.to_le_bytes()) {
        return;
    }
    let Ok(eocd) = zipread::read_eocd(src) else {
        return;
    };
    match zipread::read_central(src, &eocd, 16) {
        Ok(entries) if !entries.is_empty() => {}
        _ => return,
    }
    ctx.add(
        ids::POLYGLOT,
        loc,
        Some(eocd.base),
        None,
        format!(
            "{fmt} content with a zip archive after it (central directory at offset {}); the zip view is scanned too",
            eocd.offset
        ),
    );
    if depth < ctx.cfg.max_depth + 1 {
        let mut inner = loc.to_vec();
        inner.push("[zip view]".into());
        zipscan::scan_zip(ctx, src, &inner, depth + 1);
    }
}

/// ONNX: external-data locations (`StringStringEntryProto {key: "location", value}`) that
/// are absolute or contain `..`.
pub(crate) fn scan_onnx(ctx: &mut Ctx<'_>, src: &dyn Source, loc: &[String]) {
    let Some(w) = ctx.read_or_report(loc, read_upto(src, 0, 256 << 20)) else {
        return;
    };
    let key: &[u8] = b"\x0a\x08location\x12";
    let mut from = 0usize;
    let mut reported = 0;
    while let Some(i) = w.get(from..).and_then(|rest| find(rest, key)) {
        let at = from + i + key.len();
        from = at;
        // Value length: a varint (paths are short; accept up to two bytes).
        let (len, start) = match (w.get(at), w.get(at + 1)) {
            (Some(&b0), _) if b0 < 0x80 => (usize::from(b0), at + 1),
            (Some(&b0), Some(&b1)) if b1 < 0x80 => {
                (usize::from(b0 & 0x7f) | (usize::from(b1) << 7), at + 2)
            }
            _ => continue,
        };
        let Some(value) = start.checked_add(len).and_then(|end| w.get(start..end)) else {
            continue;
        };
        let path = String::from_utf8_lossy(value);
        let bad = path.starts_with('/')
            || path.starts_with('\\')
            || path.as_bytes().get(1) == Some(&b':')
            || path.split(['/', '\\']).any(|c| c == "..");
        if bad && reported < 100 {
            reported += 1;
            ctx.add(
                ids::ONNX_EXTERNAL_DATA,
                loc,
                Some(start as u64),
                None,
                format!(
                    "external data location {} leaves the model folder",
                    quote(&path, 200)
                ),
            );
        }
    }
}

/// TorchScript ops that touch the file system: `aten::from_file` (with `shared=True` it
/// creates the file), `aten::save` (`torch.save` in TorchScript writes one),
/// `load_library` (loads a shared object), and any op or method named `*_file`/`file_*`
/// (extension ops such as torchvision's `image::write_file`/`read_file` or torchaudio's
/// `*_audio_file`, callable from TorchScript once their library is imported).
fn script_file_op(tokens: &[&str], i: usize) -> Option<&'static str> {
    let t = *tokens.get(i)?;
    let prev = |k: usize| i.checked_sub(k).and_then(|j| tokens.get(j)).copied();
    match t {
        "from_file" => Some("from_file (maps a file, creating it when shared)"),
        "load_library" => Some("load_library (loads a shared library)"),
        "save" if prev(1) == Some(".") && matches!(prev(2), Some("torch" | "aten")) => {
            Some("torch.save (writes a file)")
        }
        _ if prev(1) == Some(".") && (t.ends_with("_file") || t.starts_with("file_")) => {
            Some("an op named after files (reads or writes one)")
        }
        _ => None,
    }
}

/// Splits TorchScript source into identifiers and single punctuation characters; whitespace
/// and line continuations vanish, as they do for TorchScript's own lexer.
fn script_tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        let ident = c.is_alphanumeric() || c == '_';
        match (ident, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(text.get(s..i).unwrap_or(""));
                start = None;
            }
            _ => {}
        }
        if !ident && !c.is_whitespace() && c != '\\' {
            out.push(text.get(i..i + c.len_utf8()).unwrap_or(""));
        }
    }
    if let Some(s) = start {
        out.push(text.get(s..).unwrap_or(""));
    }
    out
}

/// Reports TorchScript code (a `code/` member of a TorchScript archive) that touches the
/// file system: torch.jit.load compiles it and runs `__setstate__` while loading.
pub(crate) fn torchscript_code_check(ctx: &mut Ctx<'_>, data: &[u8], loc: &[String]) {
    let text = String::from_utf8_lossy(data);
    let tokens = script_tokens(&text);
    let mut found: Vec<&'static str> = Vec::new();
    for i in 0..tokens.len() {
        if let Some(what) = script_file_op(&tokens, i) {
            if !found.contains(&what) {
                found.push(what);
            }
        }
    }
    for what in found {
        ctx.add(
            ids::TORCHSCRIPT_FILE_ACCESS,
            loc,
            None,
            None,
            format!("TorchScript code calls {what}"),
        );
    }
}

#[cfg(test)]
mod script_tests {
    use super::*;

    #[test]
    fn finds_file_ops_across_spacing() {
        let toks = script_tokens(
            "t = torch . from_file(\"m\", True)\n torch.\\\n save(x, p)\n self.save(1)",
        );
        let hits: Vec<_> = (0..toks.len())
            .filter_map(|i| script_file_op(&toks, i))
            .collect();
        assert_eq!(hits.len(), 2, "{toks:?}");
        let toks = script_tokens("x = ops.image.write_file(p, d)\n");
        assert!((0..toks.len()).any(|i| script_file_op(&toks, i).is_some()));
        let toks = script_tokens("def save(self): return self.save_to(ops.profiler.x(profile))");
        assert!((0..toks.len()).all(|i| script_file_op(&toks, i).is_none()));
    }
}
