//! Pickle streams: framing of stacked pickles, and the bridge to the non-executing analyser
//! of `tensorseal-pickle`.

use std::collections::BTreeMap;

use std::collections::BTreeSet;

use tensorseal_pickle::policy::{classify, classify_torchscript, Class};
use tensorseal_pickle::{
    analyze, Analysis, GlobalRef, Limits, Opcode, Operand, PickleError, Resolution, Value,
};

use crate::finding::{ids, quote};
use crate::identify::{self, Format};
use crate::pickle_lex::{self, Frame};
use crate::source::{read_range, read_upto, Source};
use crate::Ctx;

/// What the analysis machine makes of content run from one offset, as `pickle.load` would
/// run it: the bytes it needed and its analysis.
pub(crate) struct Probe {
    /// The bytes read, from the probed offset.
    pub data: Vec<u8>,
    /// The machine's analysis of them.
    pub analysis: Analysis,
    /// Offset of a `PERSID` in the first pickle: no loader gets past it (the machine does).
    pub barrier: Option<usize>,
}

impl Probe {
    /// The first pickle reached `STOP` with nothing that stops a loader on the way:
    /// `pickle.load` accepts these bytes.
    pub fn complete(&self) -> bool {
        self.barrier.is_none()
            && self
                .analysis
                .pickles
                .first()
                .is_some_and(|p| p.error.is_none())
    }

    /// Whether `g` is called (by `REDUCE`, `INST`, `OBJ`, `NEWOBJ`, `BUILD`) where a loader
    /// gets to: `pickle.load` makes that call even when the stream breaks later.
    pub fn called(&self, g: &GlobalRef) -> bool {
        g.resolution != Resolution::AfterError
            && g.calls
                .iter()
                .any(|c| self.barrier.is_none_or(|b| c.offset < b))
    }

    /// Whether a global is called before the stream stops a loader.
    pub fn calls(&self) -> bool {
        self.analysis.globals.iter().any(|g| self.called(g))
    }

    /// The machine stopped on one of its own limits (operations, memo, stack, memory), not
    /// on an error CPython would raise: what follows is unknown, so it counts as a pickle.
    pub fn limited(&self) -> bool {
        self.analysis
            .pickles
            .first()
            .is_some_and(|p| matches!(p.error, Some(PickleError::Limit { .. })))
    }

    /// The machine refused the first pickle, yet its bytes frame as opcodes up to `STOP`
    /// with a call of a global on the way (and no `PERSID` before it). The refusal may be
    /// the machine's, not CPython's (an operand spelling it does not know): a loader could
    /// make that call, so the content counts as a pickle (fail closed).
    pub fn framed_call(&self) -> bool {
        !self.complete()
            && self.barrier.is_none()
            && self.analysis.pickles.first().is_some_and(|p| {
                // An unsupported PROTO is CPython's own refusal, before anything runs.
                p.error.is_some() && !matches!(p.error, Some(PickleError::Protocol { .. }))
            })
            && pickle_lex::frames_call(&self.data, 0)
    }

    /// Whether a loader would run anything here: a complete pickle, a call before an error,
    /// opcodes the machine stopped following at a limit, or a refused pickle whose layout
    /// still calls a global.
    pub fn is_pickle(&self) -> bool {
        self.complete() || self.calls() || self.limited() || self.framed_call()
    }
}

/// Runs the analysis machine over `src` from `start`, as `pickle.load` would, reading a
/// window that starts at [`identify::PREFIX_LEN`] and grows only while the machine ran out
/// of window (not out of content), up to `--max-pickle-bytes`. Non-pickles stop at their
/// first bytes, so this costs one small read for most files.
pub(crate) fn probe(
    ctx: &mut Ctx<'_>,
    src: &dyn Source,
    start: u64,
    loc: &[String],
) -> Option<Probe> {
    let avail = src.len().checked_sub(start).filter(|&n| n > 0)?;
    let cap = avail.min(ctx.cfg.max_pickle_bytes);
    let mut window = (identify::PREFIX_LEN as u64).min(cap);
    let limits = Limits::default();
    loop {
        let data = ctx.read_or_report(loc, read_upto(src, start, window))?;
        let analysis = analyze(&data, &limits);
        // The pickle that failed for want of bytes, and how many it needs.
        let want = analysis.pickles.iter().find_map(|p| match p.error {
            Some(PickleError::Truncated { .. }) | Some(PickleError::Empty { .. }) => {
                Some(pickle_lex::needed_end(&data, p.end).unwrap_or(u64::MAX))
            }
            _ => None,
        });
        // A line argument (unknown length) or a counted one that the content can hold.
        let needs_more =
            want.is_some_and(|e| e > data.len() as u64 && (e == u64::MAX || e <= avail));
        if needs_more && window < cap {
            // A known length is read at once; a line of unknown length by growing 8 times.
            let target = match want {
                Some(e) if e != u64::MAX => e.saturating_add(identify::PREFIX_LEN as u64),
                _ => 0,
            };
            window = window.saturating_mul(8).max(target).min(cap);
            continue;
        }
        let cut = needs_more && cap < avail;
        if cut {
            ctx.add(
                ids::ARCHIVE_LIMIT,
                loc,
                Some(start),
                None,
                format!("content read as a pickle from byte {start} still needs bytes after the limit of {cap} bytes; the rest was not analysed"),
            );
        }
        let barrier = pickle_lex::first_persid(&data, 0);
        return Some(Probe {
            data,
            analysis,
            barrier,
        });
    }
}

/// Content identified as another format (or inside one) whose first bytes `pickle.load`
/// also runs: numpy.load(allow_pickle=True) hands every file without zip/npy magic to it,
/// and torch.load every file that is neither zip nor tar. A polyglot whose pickle reaches
/// `STOP` is analysed in full; one that breaks first is judged by the calls it makes before
/// that (only a call runs code: `GLOBAL` alone imports a module and returns).
pub(crate) fn scan_pickle_prefix(ctx: &mut Ctx<'_>, src: &dyn Source, loc: &[String], fmt: Format) {
    let Some(p) = probe(ctx, src, 0, loc) else {
        return;
    };
    if !p.is_pickle() {
        return;
    }
    let complete = p.complete();
    let mut a = p.analysis.clone();
    a.globals.retain(|g| {
        g.resolution != Resolution::AfterError
            && (complete || p.called(g))
            && rule_for(ctx, &g.class, &g.qualified()).is_some()
    });
    a.nested
        .retain(|n| complete || p.barrier.is_none_or(|b| n.offset < b));
    // Why the analysis stopped on the first pickle, for the two findings below.
    let first_error = || {
        p.analysis
            .pickles
            .first()
            .and_then(|x| x.error.as_ref())
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    if p.limited() {
        ctx.add(
            ids::PICKLE_INVALID,
            loc,
            Some(0),
            None,
            format!(
                "this {fmt} content runs as a pickle from its first byte until the analysis stopped at a limit ({}); a loader would carry on",
                first_error()
            ),
        );
    }
    if p.framed_call() && !p.calls() {
        ctx.add(
            ids::PICKLE_INVALID,
            loc,
            Some(0),
            None,
            format!(
                "this {fmt} content frames as a pickle from its first byte that calls a global before STOP, but the analysis refused it ({}); a loader that accepts it runs the call",
                first_error()
            ),
        );
    }
    if a.globals.is_empty() && a.nested.is_empty() {
        return; // a harmless pickle (`N.` in a header length, say): nothing runs
    }
    a.pickles.clear();
    a.errors.clear();
    ctx.add(
        ids::POLYGLOT,
        loc,
        Some(0),
        None,
        format!("this {fmt} content is also a pickle from its first byte: pickle.load, numpy.load(allow_pickle=True) and torch.load's legacy path run it"),
    );
    let mut seen = BTreeMap::new();
    report(ctx, &a, loc, 0, None, &mut seen);
}

/// Content the sniff could not place: it is a pickle if the machine, run from byte 0 over
/// the whole content, reaches `STOP` or makes a call before the stream breaks. Returns the
/// pickle format (legacy torch when the first pickle is its magic number).
pub(crate) fn identify_unsure(
    ctx: &mut Ctx<'_>,
    src: &dyn Source,
    loc: &[String],
) -> Option<Format> {
    let p = probe(ctx, src, 0, loc)?;
    if !p.is_pickle() {
        return None;
    }
    Some(if p.complete() && identify::is_legacy_torch(&p.data) {
        Format::TorchLegacy
    } else {
        Format::Pickle
    })
}

/// A pickle file (or member): read within the limit, analyse every pickle of the stream.
pub(crate) fn scan_pickle_file(ctx: &mut Ctx<'_>, src: &dyn Source, loc: &[String], depth: u32) {
    let len = src.len();
    let cap = len.min(ctx.cfg.max_pickle_bytes);
    let Some(data) = ctx.read_or_report(loc, read_range(src, 0, cap)) else {
        return;
    };
    if cap < len {
        ctx.add(
            ids::ARCHIVE_LIMIT,
            loc,
            Some(cap),
            None,
            format!("pickle stream of {len} bytes exceeds the limit; only the first {cap} bytes were analysed"),
        );
    }
    analyze_bytes(ctx, &data, loc, 0, depth);
}

/// Number of pickles at the head of a legacy torch file: magic number, protocol version,
/// sys_info, the object, the storage keys. Raw storage bytes follow.
const LEGACY_PICKLES: usize = 5;

/// Legacy torch (magic-number layout): frame the leading pickles (growing the read window as
/// needed, up to the pickle limit) and analyse them; then walk the storages as torch does
/// (for each key of the fifth pickle, an 8-byte element count and that many elements of the
/// storage type the object pickle names), seeking over their bytes without reading them, and
/// analyse whatever follows the last storage if it runs as a pickle.
pub(crate) fn scan_legacy_torch(ctx: &mut Ctx<'_>, src: &dyn Source, loc: &[String], depth: u32) {
    let len = src.len();
    let mut window = (1u64 << 20).min(len);
    loop {
        let Some(data) = ctx.read_or_report(loc, read_upto(src, 0, window)) else {
            return;
        };
        let mut pos = 0usize;
        let mut starts = Vec::new();
        let mut grow = false;
        let mut bad = None;
        while starts.len() < LEGACY_PICKLES && pos < data.len() {
            match pickle_lex::frame(&data, pos) {
                Frame::Complete { end, .. } => {
                    starts.push(pos);
                    pos = end;
                }
                Frame::Truncated { .. } if (data.len() as u64) < len => {
                    grow = true;
                    break;
                }
                Frame::Truncated { .. } => {
                    bad = Some((pos, "the stream ends inside a pickle".to_owned()));
                    break;
                }
                Frame::Invalid { offset, .. } => {
                    bad = Some((
                        offset,
                        format!(
                            "byte 0x{:02x} is not a pickle opcode",
                            data.get(offset).copied().unwrap_or(0)
                        ),
                    ));
                    break;
                }
            }
        }
        if grow && window < ctx.cfg.max_pickle_bytes.min(len) {
            window = window
                .saturating_mul(4)
                .min(ctx.cfg.max_pickle_bytes)
                .min(len);
            continue;
        }
        if grow {
            ctx.add(
                ids::ARCHIVE_LIMIT,
                loc,
                Some(pos as u64),
                None,
                format!(
                    "legacy torch pickle exceeds the limit of {window} bytes; analysed up to there"
                ),
            );
        }
        let count = starts.len();
        if count < LEGACY_PICKLES {
            let (off, why) =
                bad.unwrap_or((pos, "fewer pickles than the legacy format has".into()));
            ctx.add(
                ids::TORCH_INVALID,
                loc,
                Some(off as u64),
                None,
                format!("legacy torch file has {count} complete pickles of {LEGACY_PICKLES} before offset {off}: {why}"),
            );
            // Analyse everything read so that nothing before the problem is missed.
            analyze_bytes(ctx, &data, loc, 0, depth);
            return;
        }
        analyze_bytes(ctx, data.get(..pos).unwrap_or(&data), loc, 0, depth);
        if let (Some(&obj), Some(&keys)) = (starts.get(3), starts.get(4)) {
            walk_magic_storages(ctx, src, &data, obj, keys, pos as u64, loc);
        }
        return;
    }
}

/// Bytes per element of a legacy storage class (`torch.FloatStorage`, ...), as
/// `torch._utils._element_size` gives for its dtype.
fn storage_element_size(module: &str, name: &str) -> Option<u64> {
    if !matches!(module, "torch" | "torch.cuda" | "torch.storage") {
        return None;
    }
    Some(match name {
        "DoubleStorage" | "LongStorage" | "ComplexFloatStorage" => 8,
        "ComplexDoubleStorage" => 16,
        "FloatStorage" | "IntStorage" | "QInt32Storage" => 4,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "CharStorage" | "ByteStorage" | "BoolStorage" | "QInt8Storage" | "QUInt8Storage"
        | "QUInt4x2Storage" | "QUInt2x4Storage" | "UntypedStorage" => 1,
        _ => return None,
    })
}

/// A storage key as torch compares them (`str` keys; Python 2 files may hold bytes).
fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) => Some(s.clone()),
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Collects `('storage', storage_type, root_key, ...)` persistent ids: key -> element size
/// (`None` when the storage type is not one torch's legacy reader knows).
fn collect_storages(v: &Value, out: &mut BTreeMap<String, Option<u64>>, depth: usize) {
    if depth > 256 || out.len() > 10_000_000 {
        return;
    }
    match v {
        Value::PersistentId(inner) => {
            if let Value::Tuple(t) = inner.as_ref() {
                let tag = t.first().and_then(key_text);
                if tag.as_deref() == Some("storage") {
                    let size = match t.get(1) {
                        Some(Value::Global { module, name }) => storage_element_size(module, name),
                        _ => None,
                    };
                    if let Some(k) = t.get(2).and_then(key_text) {
                        out.entry(k).or_insert(size);
                    }
                }
            }
            collect_storages(inner, out, depth + 1);
        }
        Value::Tuple(items) | Value::List(items) | Value::Set(items) | Value::FrozenSet(items) => {
            for i in items {
                collect_storages(i, out, depth + 1);
            }
        }
        Value::Dict(items) => {
            for (k, val) in items {
                collect_storages(k, out, depth + 1);
                collect_storages(val, out, depth + 1);
            }
        }
        Value::Call(c) => {
            collect_storages(&c.callable, out, depth + 1);
            collect_storages(&c.args, out, depth + 1);
            if let Some(k) = &c.kwargs {
                collect_storages(k, out, depth + 1);
            }
            if let Some(st) = &c.state {
                collect_storages(st, out, depth + 1);
            }
            for i in &c.list_items {
                collect_storages(i, out, depth + 1);
            }
            for (k, val) in &c.dict_items {
                collect_storages(k, out, depth + 1);
                collect_storages(val, out, depth + 1);
            }
        }
        _ => {}
    }
}

/// The finding for a legacy layout that cannot be walked: torch still runs the pickles before
/// the point where the walk stopped, and whatever it finds after it is unknown to us.
fn walk_failed(ctx: &mut Ctx<'_>, loc: &[String], at: u64, why: String) {
    ctx.add(
        ids::TORCH_INVALID,
        loc,
        Some(at),
        None,
        format!("legacy torch layout cannot be walked past byte {at}: {why}; what follows was not analysed"),
    );
}

/// The 8-byte little-endian element count torch reads before a storage's bytes.
fn storage_span(numel: [u8; 8], elsize: u64) -> Option<u64> {
    let n = i64::from_le_bytes(numel);
    let n = u64::try_from(n).ok()?;
    n.checked_mul(elsize)?.checked_add(8)
}

fn walk_magic_storages(
    ctx: &mut Ctx<'_>,
    src: &dyn Source,
    head: &[u8],
    obj_at: usize,
    keys_at: usize,
    mut off: u64,
    loc: &[String],
) {
    let limits = Limits::default();
    let obj = match tensorseal_pickle::value_at(head, obj_at, &limits) {
        Ok((v, _)) => v,
        Err(e) => return walk_failed(ctx, loc, off, format!("the object pickle: {e}")),
    };
    let keys = match tensorseal_pickle::value_at(head, keys_at, &limits) {
        Ok((Value::List(k) | Value::Tuple(k), _)) => k,
        Ok((other, _)) => {
            return walk_failed(
                ctx,
                loc,
                off,
                format!("the storage keys are a {}, not a list", other.kind_name()),
            )
        }
        Err(e) => return walk_failed(ctx, loc, off, format!("the storage key pickle: {e}")),
    };
    let mut sizes = BTreeMap::new();
    collect_storages(&obj, &mut sizes, 0);
    let len = src.len();
    for k in &keys {
        let Some(key) = key_text(k) else {
            return walk_failed(
                ctx,
                loc,
                off,
                format!("a storage key is a {}", k.kind_name()),
            );
        };
        let Some(Some(elsize)) = sizes.get(&key).copied() else {
            return walk_failed(
                ctx,
                loc,
                off,
                format!(
                    "storage {} has no storage type torch's legacy reader knows",
                    quote(&key, 80)
                ),
            );
        };
        let numel = match read_range(src, off, 8) {
            Ok(b) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b.get(..8).unwrap_or(&[0; 8]));
                a
            }
            Err(e) => {
                return walk_failed(ctx, loc, off, format!("storage {}: {e}", quote(&key, 80)))
            }
        };
        match storage_span(numel, elsize).and_then(|n| off.checked_add(n)).filter(|&e| e <= len) {
            Some(end) => off = end,
            None => {
                return walk_failed(
                    ctx,
                    loc,
                    off,
                    format!(
                        "storage {} declares {} elements of {elsize} bytes, past the end of the file ({len} bytes)",
                        quote(&key, 80),
                        i64::from_le_bytes(numel)
                    ),
                )
            }
        }
    }
    scan_trailing(ctx, src, off, loc);
}

/// Bytes after the last thing a layout defines: analysed when they run as a pickle (a
/// reader that keeps calling pickle.load reaches them), ignored when they do not.
pub(crate) fn scan_trailing(ctx: &mut Ctx<'_>, src: &dyn Source, off: u64, loc: &[String]) {
    let Some(p) = probe(ctx, src, off, loc) else {
        return;
    };
    if !p.is_pickle() {
        return;
    }
    let mut seen = BTreeMap::new();
    report(ctx, &p.analysis, loc, off, None, &mut seen);
}

/// One pickle of a legacy tar member at `*pos`: analysed (reported with its offset), its
/// value returned and `*pos` moved past it. On failure the rest of the member is analysed,
/// the walk is reported as impossible and `None` returned.
fn tar_pickle(
    ctx: &mut Ctx<'_>,
    data: &[u8],
    pos: &mut usize,
    loc: &[String],
    what: &str,
) -> Option<Value> {
    let limits = Limits::default();
    match tensorseal_pickle::value_at(data, *pos, &limits) {
        Ok((v, end)) => {
            analyze_bytes(ctx, data.get(*pos..end).unwrap_or(&[]), loc, *pos as u64, 0);
            *pos = end;
            Some(v)
        }
        Err(e) => {
            analyze_bytes(ctx, data.get(*pos..).unwrap_or(&[]), loc, *pos as u64, 0);
            walk_failed(ctx, loc, *pos as u64, format!("{what}: {e}"));
            None
        }
    }
}

/// A non-negative count pickle of a legacy tar member, bounded by what the member can hold.
fn tar_count(
    ctx: &mut Ctx<'_>,
    data: &[u8],
    pos: &mut usize,
    loc: &[String],
    what: &str,
) -> Option<u64> {
    let at = *pos as u64;
    match tar_pickle(ctx, data, pos, loc, what)? {
        Value::Int(n) if n >= 0 && (n as u64) <= data.len() as u64 => Some(n as u64),
        other => {
            walk_failed(
                ctx,
                loc,
                at,
                format!(
                    "{what} is {}, not a count that fits the member",
                    describe(&other)
                ),
            );
            None
        }
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Int(n) => format!("the integer {n}"),
        other => format!("a {}", other.kind_name()),
    }
}

fn take8(data: &[u8], at: usize) -> Option<[u8; 8]> {
    let mut a = [0u8; 8];
    a.copy_from_slice(data.get(at..at.checked_add(8)?)?);
    Some(a)
}

/// The `storages` member of the legacy tar layout, walked as torch's `legacy_load` reads
/// it: a count, then per storage a `(key, location, storage_type)` pickle, an 8-byte element
/// count and the bytes; then the storage-views pickle. Every pickle is analysed, those after
/// raw storage bytes included, and so is anything after the views that runs as a pickle.
pub(crate) fn scan_legacy_tar_storages(ctx: &mut Ctx<'_>, data: &[u8], loc: &[String]) {
    let mut pos = 0usize;
    let Some(n) = tar_count(ctx, data, &mut pos, loc, "the storage count") else {
        return;
    };
    for i in 0..n {
        let at = pos as u64;
        let Some(v) = tar_pickle(ctx, data, &mut pos, loc, "a storage header") else {
            return;
        };
        let elsize = match &v {
            Value::Tuple(t) if t.len() == 3 => match t.get(2) {
                Some(Value::Global { module, name }) => storage_element_size(module, name),
                _ => None,
            },
            _ => None,
        };
        let Some(elsize) = elsize else {
            return walk_failed(
                ctx,
                loc,
                at,
                format!("storage {i} header is not (key, location, known storage type)"),
            );
        };
        let end = take8(data, pos)
            .and_then(|numel| storage_span(numel, elsize))
            .and_then(|span| (pos as u64).checked_add(span))
            .filter(|&e| e <= data.len() as u64);
        match end.and_then(|e| usize::try_from(e).ok()) {
            Some(e) => pos = e,
            None => {
                return walk_failed(
                    ctx,
                    loc,
                    pos as u64,
                    format!("storage {i} runs past the end of the member"),
                )
            }
        }
    }
    if tar_pickle(ctx, data, &mut pos, loc, "the storage views").is_none() {
        return;
    }
    scan_trailing(ctx, &data, pos as u64, loc);
}

/// The `tensors` member of the legacy tar layout: a count, then per tensor a
/// `(key, storage_id, type)` pickle, `ndim` (4 bytes), 4 skipped bytes, `ndim` sizes and
/// `ndim` strides (8 bytes each) and an 8-byte storage offset.
pub(crate) fn scan_legacy_tar_tensors(ctx: &mut Ctx<'_>, data: &[u8], loc: &[String]) {
    let mut pos = 0usize;
    let Some(n) = tar_count(ctx, data, &mut pos, loc, "the tensor count") else {
        return;
    };
    for i in 0..n {
        if tar_pickle(ctx, data, &mut pos, loc, "a tensor header").is_none() {
            return;
        }
        let ndim = data
            .get(pos..pos.saturating_add(4))
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let end = ndim
            .and_then(|d| u64::try_from(d).ok())
            .and_then(|d| d.checked_mul(16)?.checked_add(16))
            .and_then(|span| (pos as u64).checked_add(span))
            .filter(|&e| e <= data.len() as u64)
            .and_then(|e| usize::try_from(e).ok());
        match end {
            Some(e) => pos = e,
            None => {
                return walk_failed(
                    ctx,
                    loc,
                    pos as u64,
                    format!("tensor {i} dimensions run past the end of the member"),
                )
            }
        }
    }
    scan_trailing(ctx, &data, pos as u64, loc);
}

/// Analyses a pickle stream (all stacked pickles) and reports its globals. `base` is the
/// offset of `data` within the innermost member, added to every reported offset.
pub(crate) fn analyze_bytes(ctx: &mut Ctx<'_>, data: &[u8], loc: &[String], base: u64, depth: u32) {
    let _ = depth;
    let limits = Limits::default();
    let analysis = analyze(data, &limits);
    let mut seen = BTreeMap::new();
    report(ctx, &analysis, loc, base, None, &mut seen);
    // Where the machine stopped on an error, a lenient reader (joblib reads raw array bytes
    // in the middle of the stream and carries on) may still execute what follows: look for
    // global references in the rest by byte patterns.
    if let Some(stop) = analysis
        .pickles
        .iter()
        .filter(|p| p.error.is_some())
        .map(|p| p.end)
        .min()
    {
        let known: BTreeSet<usize> = analysis.globals.iter().map(|g| g.offset).collect();
        for hit in byte_search_globals(data, stop) {
            if known.contains(&hit.offset) {
                continue;
            }
            let q = format!("{}.{}", hit.module, hit.name);
            let Some((rule, why)) = rule_for(ctx, &classify(&hit.module, &hit.name), &q) else {
                continue;
            };
            if !first_report(ctx, &mut seen, rule, &q) {
                continue;
            }
            let at = base + hit.offset as u64;
            ctx.add(
                rule,
                loc,
                Some(at),
                Some(q.clone()),
                format!(
                    "global {} ({} at byte {at}, found by byte search after the stream became unreadable at byte {}; lenient loaders such as joblib still reach it): {why}",
                    quote(&q, 200),
                    hit.opcode,
                    base + stop as u64
                ),
            );
        }
    }
    // Repeated globals are reported once, with a count.
    for ((rule, global), (index, count)) in seen {
        let _ = rule;
        if count > 1 {
            if let Some(f) = ctx.findings.get_mut(index) {
                debug_assert_eq!(f.global.as_deref(), Some(global.as_str()));
                f.message
                    .push_str(&format!(" ({} more occurrences)", count - 1));
            }
        }
    }
}

fn calls_text(g: &GlobalRef, base: u64) -> String {
    if g.calls.is_empty() {
        return "referenced, not called".to_owned();
    }
    let mut parts: Vec<String> = g
        .calls
        .iter()
        .take(3)
        .map(|c| format!("{} at byte {}", c.kind.opcode(), base + c.offset as u64))
        .collect();
    if g.calls.len() > 3 {
        parts.push(format!("{} more", g.calls.len() - 3));
    }
    format!("called by {}", parts.join(", "))
}

fn resolution_text(r: Resolution) -> &'static str {
    match r {
        Resolution::Operand => "",
        Resolution::Stack => ", name built on the stack",
        Resolution::Dynamic => ", name computed at load time (not a literal)",
        Resolution::AfterError => ", found after the stream became invalid",
    }
}

/// Per `(rule, global)`: the index of its finding and how often it occurred.
type Seen = BTreeMap<(&'static str, String), (usize, usize)>;

/// The rule and reason a global of class `class` is reported under, or None
/// when it is not reported (allowed, or accepted with `--allow`).
fn rule_for(ctx: &Ctx<'_>, class: &Class, q: &str) -> Option<(&'static str, String)> {
    match class {
        Class::Allowed => None,
        Class::Dangerous { reason } => {
            Some((ids::PICKLE_DANGEROUS_GLOBAL, format!("dangerous: {reason}")))
        }
        Class::Unknown if ctx.cfg.is_allowed(q) => None,
        Class::Unknown => Some((
            ids::PICKLE_UNKNOWN_GLOBAL,
            "not on the weights allow-list (accept with --allow)".to_owned(),
        )),
    }
}

/// Whether `(rule, q)` is seen for the first time: then it is recorded as
/// the next finding, which the caller must add at once; otherwise its count
/// goes up (repeats are reported once, with a count).
fn first_report(ctx: &Ctx<'_>, seen: &mut Seen, rule: &'static str, q: &str) -> bool {
    match seen.get_mut(&(rule, q.to_owned())) {
        Some((_, count)) => {
            *count += 1;
            false
        }
        None => {
            seen.insert((rule, q.to_owned()), (ctx.findings.len(), 1));
            true
        }
    }
}

/// Reports one analysis (and, recursively, its nested pickles). `nested_at` is the offset
/// of the call that carries a nested pickle: offsets inside it are relative to the bytes
/// argument, so the call's offset is reported instead.
fn report(
    ctx: &mut Ctx<'_>,
    a: &Analysis,
    loc: &[String],
    base: u64,
    nested_at: Option<u64>,
    seen: &mut Seen,
) {
    let stacked = a.pickles.len() > 1;
    for g in &a.globals {
        let q = g.qualified();
        let class = if ctx.in_torchscript && !matches!(g.class, Class::Dangerous { .. }) {
            classify_torchscript(&g.module, &g.name).unwrap_or_else(|| g.class.clone())
        } else {
            g.class.clone()
        };
        let Some((rule, why)) = rule_for(ctx, &class, &q) else {
            continue;
        };
        if !first_report(ctx, seen, rule, &q) {
            continue;
        }
        let offset = nested_at.unwrap_or(base + g.offset as u64);
        let which = match (nested_at, stacked) {
            (Some(_), _) => " of the nested pickle".to_owned(),
            (None, true) => format!(
                " in pickle {} of {} of the stream",
                g.pickle + 1,
                a.pickles.len()
            ),
            (None, false) => String::new(),
        };
        let message = format!(
            "global {} ({} at byte {}{}){which}, {}: {why}",
            quote(&q, 200),
            g.opcode,
            base + g.offset as u64,
            resolution_text(g.resolution),
            calls_text(g, base),
        );
        ctx.add(rule, loc, Some(offset), Some(q), message);
    }
    for p in &a.pickles {
        if let Some(e) = &p.error {
            let offset = nested_at.unwrap_or(base + p.start as u64);
            ctx.add(
                ids::PICKLE_INVALID,
                loc,
                Some(offset),
                None,
                format!(
                    "pickle starting at byte {} could not be fully analysed: {e}",
                    base + p.start as u64
                ),
            );
        }
    }
    for e in &a.errors {
        // Errors not tied to a pickle (stream-level limits).
        if !a.pickles.iter().any(|p| p.error.as_ref() == Some(e)) {
            ctx.add(
                ids::PICKLE_INVALID,
                loc,
                nested_at.or(Some(base)),
                None,
                format!("pickle stream could not be fully analysed: {e}"),
            );
        }
    }
    for n in &a.nested {
        let at = nested_at.unwrap_or(base + n.offset as u64);
        match &n.analysis {
            Some(inner) => {
                ctx.add(
                    ids::PICKLE_NESTED,
                    loc,
                    Some(at),
                    None,
                    format!(
                        "{} at byte {at} receives a {}-byte pickle ({}); it was analysed too",
                        n.opcode,
                        n.len,
                        quote(&n.via, 120)
                    ),
                );
                report(ctx, inner, loc, 0, Some(at), seen);
            }
            None => ctx.add(
                ids::PICKLE_INVALID,
                loc,
                Some(at),
                None,
                format!(
                    "pickles nested deeper than the analysis limit at byte {at} ({}) were not analysed",
                    quote(&n.via, 120)
                ),
            ),
        }
    }
}

/// A global reference found by byte patterns (not by running the machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ByteHit {
    /// Offset of the opcode.
    pub offset: usize,
    /// `GLOBAL`, `INST` or `STACK_GLOBAL`.
    pub opcode: &'static str,
    /// Module.
    pub module: String,
    /// Name.
    pub name: String,
}

fn is_dotted_identifier(s: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.first()
            .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        && s.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
}

/// Reads a short string operand (`SHORT_BINUNICODE`, `BINUNICODE`, `SHORT_BINSTRING`) at
/// `pos`, then skips a memo store; returns the string and the next position.
fn string_operand(data: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    use Opcode::*;
    let op = Opcode::from_byte(*data.get(pos)?)?;
    let (len, start) = match op {
        SHORT_BINUNICODE | SHORT_BINSTRING => (usize::from(*data.get(pos + 1)?), pos + 2),
        BINUNICODE => {
            let b = data.get(pos + 1..pos + 5)?;
            (
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
                pos + 5,
            )
        }
        _ => return None,
    };
    let s = data.get(start..start.checked_add(len)?)?;
    let mut next = start + len;
    if let Some(store @ (MEMOIZE | BINPUT | LONG_BINPUT)) =
        data.get(next).copied().and_then(Opcode::from_byte)
    {
        if let Operand::Fixed(n) = store.operand() {
            next += n;
        }
        next += 1;
    }
    Some((s, next))
}

/// Finds `GLOBAL`/`INST` operands and `STACK_GLOBAL`s fed by two literal strings in
/// `data[from..]`, by pattern alone.
pub(crate) fn byte_search_globals(data: &[u8], from: usize) -> Vec<ByteHit> {
    use Opcode::*;
    let mut out = Vec::new();
    let mut i = from;
    while i < data.len() && out.len() < 10_000 {
        let op = data.get(i).copied().and_then(Opcode::from_byte);
        if let Some(named @ (GLOBAL | INST)) = op {
            let rest = data.get(i + 1..).unwrap_or(&[]);
            let window = rest.get(..rest.len().min(520)).unwrap_or(rest);
            let mut lines = window.splitn(3, |&c| c == b'\n');
            if let (Some(m), Some(n), Some(_)) = (lines.next(), lines.next(), lines.next()) {
                if is_dotted_identifier(m) && is_dotted_identifier(n) {
                    out.push(ByteHit {
                        offset: i,
                        opcode: named.name(),
                        module: String::from_utf8_lossy(m).into_owned(),
                        name: String::from_utf8_lossy(n).into_owned(),
                    });
                    i += 1 + m.len() + 1 + n.len() + 1;
                    continue;
                }
            }
        }
        if matches!(op, Some(SHORT_BINUNICODE | BINUNICODE | SHORT_BINSTRING)) {
            if let Some((m, next)) = string_operand(data, i) {
                if let Some((n, after)) = string_operand(data, next) {
                    if data.get(after) == Some(&STACK_GLOBAL.byte())
                        && is_dotted_identifier(m)
                        && is_dotted_identifier(n)
                    {
                        out.push(ByteHit {
                            offset: after,
                            opcode: STACK_GLOBAL.name(),
                            module: String::from_utf8_lossy(m).into_owned(),
                            name: String::from_utf8_lossy(n).into_owned(),
                        });
                        i = after + 1;
                        continue;
                    }
                }
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_search_finds_all_three_forms() {
        let data =
            b"\x00\x00cos\nsystem\n\x01\x8c\x02os\x94\x8c\x06system\x94\x93\xff(ibuiltins\nexec\n";
        let hits = byte_search_globals(data, 0);
        let names: Vec<String> = hits
            .iter()
            .map(|h| format!("{}.{}", h.module, h.name))
            .collect();
        assert_eq!(names, ["os.system", "os.system", "builtins.exec"]);
        assert_eq!(hits[1].opcode, "STACK_GLOBAL");
        assert_eq!(hits[2].opcode, "INST");
    }

    #[test]
    fn byte_search_ignores_text() {
        assert!(byte_search_globals(b"call me\nmaybe later", 0).is_empty());
        assert!(byte_search_globals(b"c\n\n", 0).is_empty());
    }
}
