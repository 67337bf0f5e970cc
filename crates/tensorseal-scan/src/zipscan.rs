//! Archives: zip (both views), tar and gzip. Every member's content is scanned within the
//! limits of [`crate::Config`]; torch tensor storages are never read.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use crate::finding::{ids, quote, quote_bytes, Severity};
use crate::identify::Format;
use crate::source::{read_range, read_upto, Source};
use crate::zipread::{self, CentralEntry, LocalHeader, RangeReader};
use crate::{formats, pickles, scan_content, Ctx};

/// Flag bits that are normal: 1-2 (deflate level), 3 (data descriptor), 11 (UTF-8 names).
const NORMAL_FLAGS: u16 = 0b0000_1000_0000_1110;

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Reports absolute paths, `..`, backslashes, control characters and empty names.
pub(crate) fn check_member_name(ctx: &mut Ctx<'_>, loc: &[String], raw: &[u8]) {
    let name = lossy(raw);
    let mut why = Vec::new();
    if name.is_empty() {
        why.push("an empty name");
    }
    if name.starts_with('/') || name.starts_with('\\') {
        why.push("an absolute path");
    }
    let b = name.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        why.push("a drive letter");
    }
    if name.split(['/', '\\']).any(|c| c == "..") {
        why.push("a '..' component (path traversal)");
    }
    if name.contains('\\') {
        why.push("backslashes");
    }
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
    {
        why.push("control characters");
    }
    if std::str::from_utf8(raw).is_err() {
        why.push("bytes that are not UTF-8");
    }
    if !why.is_empty() {
        ctx.add(
            ids::ARCHIVE_UNUSUAL_NAME,
            loc,
            None,
            None,
            format!(
                "member name {} has {}",
                quote_bytes(raw, 200),
                why.join(", ")
            ),
        );
    }
}

/// What kind of zip the member names say this is.
struct ZipKind {
    format: Format,
    /// `<root>/` of a torch checkpoint, whose `data/` members are storages.
    torch_root: Option<String>,
}

/// Whether torch's readers may unpickle a record of this name: `data.pkl`,
/// `constants.pkl` and the other `*.pkl` records of torch and TorchScript archives, in any
/// spelling of case (its zip reader, miniz, looks names up case-insensitively).
pub(crate) fn torch_pickle_name(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".pkl")
}

fn zip_kind(names: &[String]) -> ZipKind {
    // torch finds records case-insensitively: `ARCHIVE/DATA.PKL` is its `data.pkl`.
    let torch_root = names.iter().find_map(|n| {
        let (root, file) = n.rsplit_once('/')?;
        (file.eq_ignore_ascii_case("data.pkl") && !root.contains('/')).then(|| format!("{root}/"))
    });
    let is_script = names.iter().any(|n| {
        n.split_once('/').is_some_and(|(root, rest)| {
            let rest = rest.to_ascii_lowercase();
            !root.is_empty() && (rest.starts_with("code/") || rest == "constants.pkl")
        })
    });
    if is_script {
        let root = torch_root.clone().or_else(|| {
            names
                .iter()
                .find_map(|n| n.split_once('/').map(|(r, _)| format!("{r}/")))
        });
        return ZipKind {
            format: Format::Torchscript,
            torch_root: root,
        };
    }
    if torch_root.is_some() {
        return ZipKind {
            format: Format::TorchZip,
            torch_root,
        };
    }
    let files: Vec<&String> = names.iter().filter(|n| !n.ends_with('/')).collect();
    if !files.is_empty() && files.iter().all(|n| n.ends_with(".npy")) {
        return ZipKind {
            format: Format::Npz,
            torch_root: None,
        };
    }
    if names.iter().any(|n| n == "config.json")
        && names
            .iter()
            .any(|n| n == "model.weights.h5" || n == "metadata.json")
    {
        return ZipKind {
            format: Format::KerasZip,
            torch_root: None,
        };
    }
    ZipKind {
        format: Format::Zip,
        torch_root: None,
    }
}

fn child(loc: &[String], name: String) -> Vec<String> {
    let mut v = loc.to_vec();
    v.push(name);
    v
}

/// One member to read: where its data is and what the directory says about it.
struct Member {
    name: String,
    data_start: u64,
    csize: u64,
    usize: u64,
    crc: u32,
    method: u16,
    encrypted: bool,
    /// A record a torch reader may unpickle (`*.pkl` in any case): analysed as a pickle
    /// whatever its content looks like.
    force_pickle: bool,
}

/// Scans a zip archive. Returns the refined format (torch zip, TorchScript, npz, Keras or zip).
pub(crate) fn scan_zip(ctx: &mut Ctx<'_>, src: &dyn Source, loc: &[String], depth: u32) -> Format {
    // Without a readable central directory, report why and scan what the
    // local headers hold.
    let locals_only = |ctx: &mut Ctx<'_>, why: String| {
        ctx.add(
            ids::ZIP_INVALID,
            loc,
            None,
            None,
            format!("{why}; scanning the local entries"),
        );
        walk_locals(ctx, src, loc, depth, &BTreeMap::new(), 0, src.len(), true);
        Format::Zip
    };
    let eocd = match zipread::read_eocd(src) {
        Ok(e) => e,
        Err(e) => return locals_only(ctx, format!("no usable central directory ({e})")),
    };
    let central = match zipread::read_central(src, &eocd, ctx.cfg.max_members) {
        Ok(c) => c,
        Err(e) => return locals_only(ctx, format!("central directory unreadable ({e})")),
    };
    if central.len() >= ctx.cfg.max_members {
        ctx.add(
            ids::ARCHIVE_LIMIT,
            loc,
            None,
            None,
            format!(
                "more than {} members; the rest were not scanned",
                ctx.cfg.max_members
            ),
        );
    } else if central.len() as u64 != eocd.entries {
        ctx.add(
            ids::ZIP_INVALID,
            loc,
            Some(eocd.offset),
            None,
            format!(
                "end of central directory declares {} entries but the directory holds {}",
                eocd.entries,
                central.len()
            ),
        );
    }
    let starts_pk =
        read_range(src, 0, 4).ok().as_deref() == Some(&zipread::LOCAL_SIG.to_le_bytes()[..]);
    if eocd.base > 0 && starts_pk {
        ctx.add(
            ids::ZIP_INVALID,
            loc,
            None,
            None,
            format!(
                "central directory offsets are off by {} bytes (data inserted before the archive)",
                eocd.base
            ),
        );
    }
    let eocd_end = eocd.offset + 22 + u64::from(eocd.comment_len);
    if eocd_end < src.len() {
        ctx.add(
            ids::ZIP_HIDDEN_MEMBER,
            loc,
            Some(eocd_end),
            None,
            format!(
                "{} bytes after the end of the archive",
                src.len() - eocd_end
            ),
        );
    }
    let names: Vec<String> = central.iter().map(|e| lossy(&e.name)).collect();
    let kind = zip_kind(&names);
    let mut seen: BTreeMap<&[u8], usize> = BTreeMap::new();
    for e in &central {
        *seen.entry(&e.name).or_insert(0) += 1;
    }
    for (name, n) in &seen {
        if *n > 1 {
            ctx.add(
                ids::ARCHIVE_DUPLICATE_NAME,
                loc,
                None,
                None,
                format!("member name {} appears {n} times", quote_bytes(name, 200)),
            );
        }
    }
    let cd_start = eocd.cd_offset.saturating_add(eocd.base);
    let outer_script = ctx.in_torchscript;
    ctx.in_torchscript = kind.format == Format::Torchscript;
    let mut ranges: Vec<(u64, u64, String)> = Vec::new();
    let mut by_offset: BTreeMap<u64, u64> = BTreeMap::new();
    let mut script_code = 0usize;
    let torchish = matches!(kind.format, Format::TorchZip | Format::Torchscript);
    for (e, name) in central.iter().zip(&names) {
        let mloc = child(loc, name.clone());
        check_member_name(ctx, &mloc, &e.name);
        check_flags(ctx, &mloc, e.flags, "central directory");
        let local = match zipread::read_local(src, e.local_offset) {
            Ok(l) => l,
            Err(err) => {
                ctx.add(
                    ids::ZIP_INVALID,
                    &mloc,
                    Some(e.local_offset),
                    None,
                    format!("local header unreadable: {err}"),
                );
                continue;
            }
        };
        by_offset.insert(e.local_offset, e.csize);
        compare_headers(ctx, &mloc, src, e, &local);
        let end = local.data_start.saturating_add(e.csize);
        if end > cd_start {
            ctx.add(
                ids::ZIP_INVALID,
                &mloc,
                Some(local.data_start),
                None,
                format!(
                    "member data {}..{end} runs into the central directory at {cd_start}",
                    local.data_start
                ),
            );
        }
        ranges.push((e.local_offset, end, name.clone()));
        let storage = kind.torch_root.as_ref().is_some_and(|root| {
            name.strip_prefix(root.as_str())
                .is_some_and(|rest| rest.starts_with("data/"))
        });
        if kind.format == Format::Torchscript
            && kind.torch_root.as_ref().is_some_and(|r| {
                name.strip_prefix(r.as_str())
                    .is_some_and(|s| s.to_ascii_lowercase().starts_with("code/"))
            })
        {
            script_code += 1;
        }
        // A `.pkl` record is never taken for a storage: torch finds records by name in any
        // case, so one of these may be what it unpickles.
        if (storage && !torch_pickle_name(name)) || name.ends_with('/') && e.usize == 0 {
            continue; // tensor storage (never read) or a directory entry
        }
        let m = Member {
            name: name.clone(),
            data_start: local.data_start,
            csize: e.csize,
            usize: e.usize,
            crc: e.crc,
            method: e.method,
            encrypted: (e.flags | local.flags) & 1 != 0,
            force_pickle: torchish && torch_pickle_name(name),
        };
        let fmt = read_member(ctx, src, &mloc, depth, &m);
        if kind.format == Format::Torchscript && is_script_code(name) {
            match read_small(src, &m, 64 << 20) {
                Some(data) => formats::torchscript_code_check(ctx, &data, &mloc),
                None => ctx.add(
                    ids::TORCH_INVALID,
                    &mloc,
                    None,
                    None,
                    "TorchScript code member could not be read within 64 MiB; its operations were not checked".into(),
                ),
            }
        }
        if let Some(fmt) = fmt {
            if kind.format == Format::KerasZip && name == "config.json" {
                if let Some(data) = read_small(src, &m, 64 << 20) {
                    formats::keras_lambda_check(ctx, &data, &mloc);
                }
            }
            if torchish && torch_pickle_name(name) && fmt != Format::Pickle {
                ctx.add(
                    ids::TORCH_INVALID,
                    &mloc,
                    None,
                    None,
                    format!("{} is {fmt}, not a pickle", quote(name, 200)),
                );
            }
        }
    }
    // Overlapping members (a decompression-bomb and confusion technique).
    ranges.sort();
    for w in ranges.windows(2) {
        if let [(_, end_a, a), (start_b, _, b)] = w {
            if start_b < end_a {
                ctx.add(
                    ids::ZIP_INVALID,
                    loc,
                    Some(*start_b),
                    None,
                    format!("members {} and {} overlap", quote(a, 120), quote(b, 120)),
                );
            }
        }
    }
    let first = central
        .iter()
        .map(|e| e.local_offset)
        .min()
        .unwrap_or(eocd.base);
    walk_locals(
        ctx,
        src,
        loc,
        depth,
        &by_offset,
        first.min(eocd.base),
        cd_start,
        false,
    );
    ctx.in_torchscript = outer_script;
    if script_code > 0 {
        ctx.add(
            ids::TORCHSCRIPT_CODE,
            loc,
            None,
            None,
            format!("TorchScript archive with {script_code} code members: torch.jit.load compiles and runs them"),
        );
    }
    kind.format
}

/// Whether a TorchScript archive member is code torch.jit.load compiles: anything under a
/// `code/` folder (at the archive root or one level down, in any case of letters).
/// Source ranges (`*.debug_pkl`) only serve error messages; they are scanned as pickles.
fn is_script_code(name: &str) -> bool {
    let mut parts = name.split('/');
    let first = parts.next().unwrap_or("");
    let code = |p: &str| p.eq_ignore_ascii_case("code");
    (code(first) || parts.next().is_some_and(code)) && !name.ends_with(".debug_pkl")
}

/// Reads at most `limit` bytes of a member for a second look (config files).
fn read_small(src: &dyn Source, m: &Member, limit: u64) -> Option<Vec<u8>> {
    let inf = zipread::inflate(src, m.data_start, m.csize, m.method, m.usize, limit)?;
    (!inf.truncated && inf.corrupt.is_none()).then_some(inf.data)
}

fn check_flags(ctx: &mut Ctx<'_>, loc: &[String], flags: u16, view: &str) {
    if flags & 1 != 0 {
        ctx.add(
            ids::ZIP_FLAGS,
            loc,
            None,
            None,
            format!("{view}: encryption bit set (flags 0x{flags:04x})"),
        );
    }
    if flags & (1 << 6) != 0 || flags & (1 << 13) != 0 {
        ctx.add(
            ids::ZIP_FLAGS,
            loc,
            None,
            None,
            format!("{view}: strong/central-directory encryption bit set (flags 0x{flags:04x})"),
        );
    }
    let odd = flags & !(NORMAL_FLAGS | 1 | (1 << 6) | (1 << 13));
    if odd != 0 {
        ctx.add_sev(
            ids::ZIP_FLAGS,
            Severity::Medium,
            loc,
            None,
            None,
            format!("{view}: unusual flag bits 0x{odd:04x} (flags 0x{flags:04x})"),
        );
    }
}

fn compare_headers(
    ctx: &mut Ctx<'_>,
    loc: &[String],
    src: &dyn Source,
    e: &CentralEntry,
    l: &LocalHeader,
) {
    if l.name != e.name {
        ctx.add(
            ids::ZIP_NAME_MISMATCH,
            loc,
            Some(l.offset),
            None,
            format!(
                "local header names the member {} but the central directory says {}",
                quote_bytes(&l.name, 200),
                quote_bytes(&e.name, 200)
            ),
        );
        check_member_name(ctx, loc, &l.name);
    }
    if l.flags != e.flags {
        ctx.add(
            ids::ZIP_FLAGS,
            loc,
            Some(l.offset),
            None,
            format!(
                "flag bits differ: local header 0x{:04x}, central directory 0x{:04x}",
                l.flags, e.flags
            ),
        );
        check_flags(ctx, loc, l.flags & !e.flags, "local header");
    }
    if l.method != e.method {
        ctx.add(
            ids::ZIP_INVALID,
            loc,
            Some(l.offset),
            None,
            format!(
                "compression method differs: local header {}, central directory {}",
                zipread::method_name(l.method),
                zipread::method_name(e.method)
            ),
        );
    }
    let local_dd = l.flags & 8 != 0;
    if local_dd {
        let zero = l.crc == 0 && l.csize == 0 && l.usize == 0;
        let same = l.crc == e.crc && l.csize == e.csize && l.usize == e.usize;
        if !zero && !same {
            ctx.add(
                ids::ZIP_FLAGS,
                loc,
                Some(l.offset),
                None,
                format!(
                    "data-descriptor bit set but the local header carries different values (crc 0x{:08x}, {} → {} bytes; central: crc 0x{:08x}, {} → {} bytes)",
                    l.crc, l.csize, l.usize, e.crc, e.csize, e.usize
                ),
            );
        }
        let data_end = l.data_start.saturating_add(e.csize);
        match zipread::read_descriptor(src, data_end, l.zip64) {
            Some(d) if d.crc == e.crc && d.csize == e.csize && d.usize == e.usize => {}
            Some(d) => ctx.add(
                ids::ZIP_FLAGS,
                loc,
                Some(data_end),
                None,
                format!(
                    "data descriptor disagrees with the central directory (descriptor: crc 0x{:08x}, {} → {} bytes; central: crc 0x{:08x}, {} → {} bytes)",
                    d.crc, d.csize, d.usize, e.crc, e.csize, e.usize
                ),
            ),
            None => ctx.add(
                ids::ZIP_FLAGS,
                loc,
                Some(data_end),
                None,
                "data-descriptor bit set but no data descriptor follows the data".into(),
            ),
        }
    } else if l.crc != e.crc || l.csize != e.csize || l.usize != e.usize {
        ctx.add(
            ids::ZIP_INVALID,
            loc,
            Some(l.offset),
            None,
            format!(
                "local header disagrees with the central directory (local: crc 0x{:08x}, {} → {} bytes; central: crc 0x{:08x}, {} → {} bytes)",
                l.crc, l.csize, l.usize, e.crc, e.csize, e.usize
            ),
        );
    }
}

/// Decompresses (within limits), checks CRC and size, and scans a member's content.
/// Returns its format when its content could be looked at.
fn read_member(
    ctx: &mut Ctx<'_>,
    src: &dyn Source,
    loc: &[String],
    depth: u32,
    m: &Member,
) -> Option<Format> {
    let limit = ctx.cfg.max_member_bytes.min(ctx.budget);
    if m.data_start.saturating_add(m.csize) > src.len() {
        ctx.add(
            ids::ZIP_INVALID,
            loc,
            Some(m.data_start),
            None,
            format!(
                "member data of {} bytes at offset {} runs past the end of the file",
                m.csize, m.data_start
            ),
        );
        return None;
    }
    let Some(inf) = zipread::inflate(src, m.data_start, m.csize, m.method, m.usize, limit) else {
        ctx.add(
            ids::ARCHIVE_UNSCANNABLE,
            loc,
            None,
            None,
            format!(
                "compression {} is not supported by the scanner; content not scanned",
                zipread::method_name(m.method)
            ),
        );
        return None;
    };
    if !ctx.spend(inf.data.len() as u64, loc) {
        return None;
    }
    if inf.truncated {
        ctx.add(
            ids::ARCHIVE_LIMIT,
            loc,
            None,
            None,
            format!(
                "member decompresses to more than {limit} bytes (declared {}); only the first {limit} were scanned",
                m.usize
            ),
        );
    } else if let Some(err) = &inf.corrupt {
        if m.encrypted {
            ctx.add(
                ids::ARCHIVE_UNSCANNABLE,
                loc,
                None,
                None,
                format!("encrypted member cannot be decompressed ({err})"),
            );
            return None;
        }
        ctx.add(
            ids::ZIP_INVALID,
            loc,
            Some(m.data_start),
            None,
            format!("compressed data is corrupt: {err}"),
        );
    } else {
        let crc = crc32fast::hash(&inf.data);
        if crc != m.crc {
            ctx.add(
                ids::ZIP_BAD_CRC,
                loc,
                Some(m.data_start),
                None,
                format!(
                    "CRC-32 of the content is 0x{crc:08x} but the archive records 0x{:08x}",
                    m.crc
                ),
            );
        }
        if inf.data.len() as u64 != m.usize {
            ctx.add(
                ids::ZIP_INVALID,
                loc,
                Some(m.data_start),
                None,
                format!(
                    "content is {} bytes but the archive records {}",
                    inf.data.len(),
                    m.usize
                ),
            );
        }
    }
    let fmt = scan_content(ctx, &inf.data, loc, depth + 1, &m.name);
    if m.force_pickle && !matches!(fmt, Format::Pickle | Format::TorchLegacy) {
        // Whatever the content looks like, torch would hand it to the unpickler.
        crate::pickles::analyze_bytes(ctx, &inf.data, loc, 0, depth + 1);
    }
    if m.encrypted && fmt == Format::Unknown {
        ctx.add(
            ids::ARCHIVE_UNSCANNABLE,
            loc,
            None,
            None,
            "encrypted member: its content could not be identified".into(),
        );
    }
    if fmt == Format::Pickle {
        let lower = m.name.to_ascii_lowercase();
        if !(lower.ends_with(".pkl") || lower.ends_with(".pickle") || lower.ends_with(".debug_pkl"))
        {
            ctx.add(
                ids::PICKLE_MISNAMED,
                loc,
                None,
                None,
                format!(
                    "member {} is a pickle but is not named *.pkl",
                    quote(&m.name, 200)
                ),
            );
        }
    }
    Some(fmt)
}

/// Walks local headers in file order between `start` and `end`, reporting (and scanning)
/// entries that the central directory does not list. With `all`, every entry found is
/// scanned (no central directory at all).
#[allow(clippy::too_many_arguments)]
fn walk_locals(
    ctx: &mut Ctx<'_>,
    src: &dyn Source,
    loc: &[String],
    depth: u32,
    known: &BTreeMap<u64, u64>,
    start: u64,
    end: u64,
    all: bool,
) {
    let mut pos = start;
    let mut steps = 0usize;
    let known_set: BTreeSet<u64> = known.keys().copied().collect();
    while pos < end && steps < ctx.cfg.max_members.saturating_mul(2) {
        steps += 1;
        let Ok(l) = zipread::read_local(src, pos) else {
            // Not a local header here: jump to the next listed one, reporting the gap.
            match known_set.range(pos + 1..).next() {
                Some(&next) => {
                    scan_gap(ctx, src, loc, depth, pos, next);
                    pos = next;
                    continue;
                }
                None => {
                    if pos < end {
                        scan_gap(ctx, src, loc, depth, pos, end);
                    }
                    break;
                }
            }
        };
        let listed = known.get(&pos).copied();
        let csize = match listed {
            Some(c) => c,
            None if l.flags & 8 != 0 && l.csize == 0 => {
                next_signature(src, l.data_start, end).unwrap_or(end) - l.data_start
            }
            None => l.csize,
        };
        let name = lossy(&l.name);
        if listed.is_none() {
            let mloc = child(loc, name.clone());
            if !all {
                ctx.add(
                    ids::ZIP_HIDDEN_MEMBER,
                    &mloc,
                    Some(pos),
                    None,
                    format!(
                        "local entry {} at offset {pos} is not listed in the central directory",
                        quote(&name, 200)
                    ),
                );
            }
            check_member_name(ctx, &mloc, &l.name);
            check_flags(ctx, &mloc, l.flags, "local header");
            let m = Member {
                name: name.clone(),
                data_start: l.data_start,
                csize,
                usize: l.usize,
                crc: l.crc,
                method: l.method,
                encrypted: l.flags & 1 != 0,
                force_pickle: torch_pickle_name(&name),
            };
            if !(l.flags & 8 != 0 && l.crc == 0) {
                read_member(ctx, src, &mloc, depth, &m);
            } else if let Some(inf) = zipread::inflate(
                src,
                m.data_start,
                m.csize,
                m.method,
                m.usize,
                ctx.cfg.max_member_bytes.min(ctx.budget),
            ) {
                if ctx.spend(inf.data.len() as u64, &mloc) {
                    scan_content(ctx, &inf.data, &mloc, depth + 1, &name);
                }
            }
        }
        let mut next = l.data_start.saturating_add(csize);
        if l.flags & 8 != 0 {
            if let Some(d) = zipread::read_descriptor(src, next, l.zip64) {
                next = d.end;
            }
        }
        if next <= pos {
            break;
        }
        pos = next;
    }
}

/// Bytes between members that no header accounts for: reported, and scanned if they look
/// like something.
fn scan_gap(ctx: &mut Ctx<'_>, src: &dyn Source, loc: &[String], depth: u32, from: u64, to: u64) {
    let len = to.saturating_sub(from);
    if len == 0 {
        return;
    }
    ctx.add_sev(
        ids::ZIP_HIDDEN_MEMBER,
        Severity::Medium,
        loc,
        Some(from),
        None,
        format!("{len} bytes at offset {from} belong to no zip entry"),
    );
    let cap = len.min(ctx.cfg.max_member_bytes).min(ctx.budget);
    if let Ok(data) = read_range(src, from, cap) {
        if ctx.spend(cap, loc) {
            // Identified by content, pickles without PROTO included (the machine decides).
            scan_content(
                ctx,
                &data,
                &child(loc, format!("[bytes at {from}]")),
                depth + 1,
                "",
            );
        }
    }
}

fn next_signature(src: &dyn Source, from: u64, end: u64) -> Option<u64> {
    let mut pos = from;
    let chunk = 1u64 << 20;
    while pos < end {
        let n = chunk.min(end - pos);
        let buf = read_range(src, pos, n).ok()?;
        for (i, w) in buf.windows(4).enumerate() {
            let sig = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            if matches!(
                sig,
                zipread::LOCAL_SIG | zipread::CENTRAL_SIG | zipread::DESCRIPTOR_SIG
            ) {
                return Some(pos + i as u64);
            }
        }
        if n < 4 {
            break;
        }
        pos += n - 3;
    }
    None
}

/// Scans a tar archive: names, links, and each regular member's content.
pub(crate) fn scan_tar(ctx: &mut Ctx<'_>, src: &dyn Source, loc: &[String], depth: u32) {
    let reader = RangeReader::new(src, 0, src.len());
    let mut archive = tar::Archive::new(reader);
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => {
            ctx.add(ids::ARCHIVE_INVALID, loc, None, None, format!("tar: {e}"));
            return;
        }
    };
    let mut names: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for (i, entry) in entries.enumerate() {
        if i >= ctx.cfg.max_members {
            ctx.add(
                ids::ARCHIVE_LIMIT,
                loc,
                None,
                None,
                format!(
                    "more than {} members; the rest were not scanned",
                    ctx.cfg.max_members
                ),
            );
            break;
        }
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                ctx.add(ids::ARCHIVE_INVALID, loc, None, None, format!("tar: {e}"));
                break;
            }
        };
        let raw = entry.path_bytes().into_owned();
        let name = lossy(&raw);
        let mloc = child(loc, name.clone());
        check_member_name(ctx, &mloc, &raw);
        *names.entry(raw.clone()).or_insert(0) += 1;
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|b| lossy(&b))
                .unwrap_or_default();
            let what = if kind.is_symlink() {
                "symbolic"
            } else {
                "hard"
            };
            let sev = if target.starts_with('/') || target.split('/').any(|c| c == "..") {
                Severity::High
            } else {
                Severity::Medium
            };
            ctx.add_sev(
                ids::ARCHIVE_LINK,
                sev,
                &mloc,
                None,
                None,
                format!("{what} link to {}", quote(&target, 200)),
            );
            continue;
        }
        if !(kind.is_file() || kind.is_contiguous()) {
            continue;
        }
        let limit = ctx.cfg.max_member_bytes.min(ctx.budget);
        let mut data = Vec::new();
        if let Err(e) = (&mut entry)
            .take(limit.saturating_add(1))
            .read_to_end(&mut data)
        {
            ctx.add(
                ids::ARCHIVE_INVALID,
                &mloc,
                None,
                None,
                format!("tar member unreadable: {e}"),
            );
            break;
        }
        if data.len() as u64 > limit {
            data.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            ctx.add(
                ids::ARCHIVE_LIMIT,
                &mloc,
                None,
                None,
                format!("member larger than {limit} bytes; only the first {limit} were scanned"),
            );
        }
        if !ctx.spend(data.len() as u64, &mloc) {
            break;
        }
        // torch.load's legacy tar reader opens these two by exact name and reads pickles
        // between raw bytes: walk them as it does (when they start with a pickle at all).
        let legacy = matches!(name.as_str(), "storages" | "tensors")
            && tensorseal_pickle::value_at(&data, 0, &tensorseal_pickle::Limits::default()).is_ok();
        if legacy {
            if name == "storages" {
                pickles::scan_legacy_tar_storages(ctx, &data, &mloc);
            } else {
                pickles::scan_legacy_tar_tensors(ctx, &data, &mloc);
            }
            crate::record_member(ctx, &mloc, Format::TorchLegacy, data.len() as u64);
            continue;
        }
        scan_content(ctx, &data, &mloc, depth + 1, &name);
    }
    for (name, n) in names {
        if n > 1 {
            ctx.add(
                ids::ARCHIVE_DUPLICATE_NAME,
                loc,
                None,
                None,
                format!("member name {} appears {n} times", quote_bytes(&name, 200)),
            );
        }
    }
}

/// Name of the content of a compressed file: its name without the compression extension
/// (`model.pkl.gz` holds `model.pkl`, `x.tgz` holds `x.tar`).
fn inner_name(name: &str, codec: tensorseal_codec::Codec) -> String {
    if let Some((stem, ext)) = name.rsplit_once('.') {
        match ext.to_ascii_lowercase().as_str() {
            "tgz" | "tbz" | "tbz2" | "txz" | "tzst" => return format!("{stem}.tar"),
            "gz" | "gzip" | "bz2" | "bz" | "xz" | "lzma" | "zst" | "zstd" | "lz4" | "z"
            | "zlib" => return stem.to_owned(),
            _ => {}
        }
    }
    format!("[{codec} content]")
}

/// Decompresses a compressed wrapper (gzip, zlib, bz2, xz, lzma-alone, zstd, lz4), within
/// the member and per-file limits, and scans its content as any content (recursively).
/// A stream that cannot be decoded within the limits is reported at a failing severity,
/// and whatever was decoded before the error is still scanned.
pub(crate) fn scan_compressed(
    ctx: &mut Ctx<'_>,
    src: &dyn Source,
    loc: &[String],
    depth: u32,
    name: &str,
    codec: tensorseal_codec::Codec,
) {
    scan_compressed_at(ctx, src, 0, loc, depth, inner_name(name, codec), codec);
}

/// Length of joblib's pre-0.9.3 `ZF` header: the prefix and an 18-character hex length.
const JOBLIB_ZFILE_HEADER: u64 = 2 + 19;

/// joblib's pre-0.9.3 compressed pickle (`ZF`, a hex length, then a zlib stream; a space
/// may pad the header by one byte). `joblib.load` still reads it: it decompresses the zlib
/// stream and unpickles it.
pub(crate) fn scan_joblib_zfile(ctx: &mut Ctx<'_>, src: &dyn Source, loc: &[String], depth: u32) {
    let pad = read_upto(src, JOBLIB_ZFILE_HEADER, 1).ok();
    let start = if pad.as_deref() == Some(b" ") {
        JOBLIB_ZFILE_HEADER + 1
    } else {
        JOBLIB_ZFILE_HEADER
    };
    let codec = tensorseal_codec::Codec::Zlib;
    scan_compressed_at(
        ctx,
        src,
        start,
        loc,
        depth,
        "[joblib ZF pickle]".to_owned(),
        codec,
    );
}

fn scan_compressed_at(
    ctx: &mut Ctx<'_>,
    src: &dyn Source,
    start: u64,
    loc: &[String],
    depth: u32,
    inner: String,
    codec: tensorseal_codec::Codec,
) {
    let limit = ctx.cfg.max_member_bytes.min(ctx.budget);
    let input = std::io::BufReader::with_capacity(
        64 << 10,
        RangeReader::new(src, start.min(src.len()), src.len()),
    );
    let decoder = tensorseal_codec::Decoder::new(codec, input, zipread::DICT_LIMIT);
    let d = tensorseal_codec::read_bounded(decoder, limit, codec.name());
    let mloc = child(loc, inner.clone());
    match &d.error {
        None => {}
        Some(tensorseal_codec::CodecError::Io(e)) => {
            ctx.add(ids::READ_ERROR, loc, None, None, format!("read failed: {e}"));
        }
        Some(e) if e.is_limit() => ctx.add(
            ids::ARCHIVE_LIMIT,
            loc,
            None,
            None,
            format!(
                "{codec} stream cannot be decompressed within the limits ({e}); only the first {} decoded bytes were scanned",
                d.data.len()
            ),
        ),
        Some(e) => ctx.add(
            ids::ARCHIVE_INVALID,
            loc,
            None,
            None,
            format!(
                "{codec} stream cannot be decompressed ({e}); a loader reading it may still run what decodes first, so the {} bytes decoded before the error were scanned",
                d.data.len()
            ),
        ),
    }
    if ctx.spend(d.data.len() as u64, loc) {
        scan_content(ctx, &d.data, &mloc, depth + 1, &inner);
    }
}
