"""Differential tests of tensorseal's .npy header reader against numpy's own.

Many headers are generated (duplicate keys, every escape, odd whitespace and comments,
implicit string concatenation, Python 2 `L` suffixes, format versions 1.0/2.0/3.0,
headers over numpy's 10000-character limit, every object spelling, structured dtypes
nested at random) and each is judged twice: by numpy (`_read_array_header` with the
limit `allow_pickle=True` uses, then `dtype.hasobject`) and by `tensorseal scan` and
`tensorseal convert`.

The rules checked:
* numpy says object  -> scan fails the default policy (never clean), convert refuses;
* numpy writes it    -> scan is clean (headers from numpy's own writer, no objects);
* convert succeeds   -> its tensor equals numpy.load's, element for element.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import warnings

import numpy as np
import pytest
from numpy.lib import _format_impl as npformat  # _read_array_header is what np.load uses

safetensors_numpy = pytest.importorskip("safetensors.numpy")

OBJECT = ["O", "|O", "<O", ">O", "=O", "O8", "O4", "|O8", "O 8", "O+8", "object", "object_", "\x11", "T",
          "f4,O", "(2,)O", "2O", "<f4, O8"]
PLAIN = ["<f4", ">f8", "|b1", "<i2", ">u4", "|u1", "|i1", "<c8", "<f2", "<U3", "|S2", "|V4", "<M8[ns]", ">m8[s]", "?"]


def enc_str(s: str, rng: random.Random) -> str:
    """Python source for the string s, spelled with random escapes, quotes and splits."""
    parts = []
    for c in s:
        o = ord(c)
        r = rng.random()
        if r < 0.2 and o < 256:
            parts.append(f"\\x{o:02x}")
        elif r < 0.35 and o < 0x10000:
            parts.append(f"\\u{o:04x}")
        elif r < 0.45:
            parts.append(f"\\U{o:08x}")
        elif r < 0.55 and o < 512:
            parts.append(f"\\{o:03o}")
        elif c in "'\"\\" or o < 32 or o == 127:
            parts.append(f"\\x{o:02x}")
        else:
            parts.append(c)
    q = rng.choice(["'", '"'])
    if len(parts) > 1 and rng.random() < 0.3:
        k = rng.randrange(1, len(parts))
        sep = rng.choice([" ", "", "  "])
        return f"{q}{''.join(parts[:k])}{q}{sep}{rng.choice(['', 'u'])}{q}{''.join(parts[k:])}{q}"
    return q + "".join(parts) + q


def ws(rng: random.Random) -> str:
    return rng.choice(["", " ", "  ", "\t", "\n", " # c\n ", "\n\n"])


def gen_descr(rng: random.Random, depth: int, p_object: float) -> str:
    r = rng.random()
    if depth >= 3 or r < 0.5:
        return enc_str(rng.choice(OBJECT) if rng.random() < p_object else rng.choice(PLAIN), rng)
    if r < 0.6:
        return f"({gen_descr(rng, depth + 1, p_object)},{ws(rng)}({rng.randint(1, 3)},))"
    fields = []
    for i in range(rng.randint(1, 3)):
        name = enc_str(f"f{i}", rng)
        if rng.random() < 0.2:
            name = f"({enc_str('title', rng)}, {name})"
        sub = gen_descr(rng, depth + 1, p_object)
        shape = f", ({rng.randint(1, 3)},)" if rng.random() < 0.2 else ""
        open_, close = ("[", "]") if rng.random() < 0.1 else ("(", ")")
        fields.append(f"{open_}{name},{ws(rng)}{sub}{shape}{close}")
    return "[" + ("," + ws(rng)).join(fields) + "]"


def gen_header(rng: random.Random) -> tuple[str, int]:
    descr = gen_descr(rng, 0, p_object=0.3)
    items = [
        (enc_str("descr", rng), descr),
        (enc_str("fortran_order", rng), rng.choice(["False", "True"])),
        (enc_str("shape", rng), "(" + "".join(f"{rng.randint(0, 3)}, " for _ in range(rng.randint(0, 2))) + ")"),
    ]
    rng.shuffle(items)
    version = rng.choice([1, 2, 3])
    if rng.random() < 0.4:
        # A duplicate descr: the last one wins in numpy.
        other = gen_descr(rng, 0, p_object=0.5)
        pos = rng.randrange(len(items) + 1)
        items.insert(pos, (enc_str("descr", rng), other))
    if version < 3 and rng.random() < 0.2:
        items = [(k, v.replace("1, ", "1L, ")) if "shape" in k else (k, v) for k, v in items]
    body = ("," + ws(rng)).join(f"{k}:{ws(rng)}{v}" for k, v in items)
    text = "{" + ws(rng).replace("\n", "") + body + rng.choice(["", ",", ", "]) + "}"
    if rng.random() < 0.1:
        text = "(" + text + ")"
    if rng.random() < 0.05:
        text += " " * 10500
    return text + "\n", version


def write_npy(path, header: str, version: int, data: bytes) -> None:
    h = header.encode("utf8" if version == 3 else "latin1", errors="strict")
    if version == 1:
        if len(h) > 0xFFFF:
            version = 2
        else:
            path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + data)
            return
    path.write_bytes(b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(h)) + h + data)


def numpy_verdict(path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with open(path, "rb") as f:
                version = npformat.read_magic(f)
                shape, fortran, dtype = npformat._read_array_header(f, version, max_header_size=2**64)
        except Exception:
            return "refused"
    return "object" if dtype.hasobject else "plain"


def scan_dir(tensorseal_bin, folder) -> dict[str, dict]:
    r = subprocess.run([str(tensorseal_bin), "scan", "--format", "json", str(folder)], capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stderr
    doc = json.loads(r.stdout)
    return {f["path"].rsplit("/", 1)[-1]: f for f in doc["files"]}


def fails(entry: dict) -> bool:
    return any(f["fails_policy"] for f in entry["findings"])


def test_generated_headers_agree_with_numpy(tmp_path, tensorseal_bin):
    rng = random.Random(1101)
    verdicts = {}
    for i in range(600):
        header, version = gen_header(rng)
        p = tmp_path / f"h{i:04d}.npy"
        try:
            write_npy(p, header, version, b"\x80\x02N.")
        except UnicodeEncodeError:
            continue
        verdicts[p.name] = (numpy_verdict(p), header)
    counts = {v: sum(1 for x, _ in verdicts.values() if x == v) for v in ("object", "plain", "refused")}
    # The generator must exercise both sides, or the test proves little.
    assert counts["object"] > 100 and counts["plain"] > 50, counts
    scanned = scan_dir(tensorseal_bin, tmp_path)
    missed = [(n, h) for n, (v, h) in verdicts.items() if v == "object" and not fails(scanned[n])]
    assert not missed, f"object arrays scanned clean: {missed[:5]}"
    # The plain headers here use only constructs and type spellings the reader evaluates
    # (everything but the object spellings is what numpy writes, however escaped), so
    # none may fail closed: a false alarm here is a reader bug too.
    plain_failed = [(n, h) for n, (v, h) in verdicts.items() if v == "plain" and fails(scanned[n])]
    assert not plain_failed, plain_failed[:5]


def numpy_written_arrays():
    rng = np.random.default_rng(7)
    out = {
        "f4": rng.standard_normal((3, 4)).astype("<f4"),
        "f8_be": rng.standard_normal((2, 3)).astype(">f8"),
        "i8_fortran": np.asfortranarray(rng.integers(-9, 9, (3, 5))),
        "u2": rng.integers(0, 60000, (7,)).astype("<u2"),
        "b1": rng.random((4, 2)) > 0.5,
        "c8_be": (rng.standard_normal(5) + 1j * rng.standard_normal(5)).astype(">c8"),
        "f2_fortran": np.asfortranarray(rng.standard_normal((2, 3, 4)).astype("<f2")),
        "scalar": np.array(3.5, dtype="<f8"),
        "empty": np.zeros((0, 3), dtype="<i4"),
        "structured": np.zeros(3, dtype=[("a", "<f4"), ("b", "<i8", (2,)), ("c", [("d", "|u1")])]),
        "titled": np.zeros(2, dtype={"names": ["x"], "formats": ["<f4"], "titles": ["the x"]}),
        "unicode": np.array(["ab", "c"]),
        "datetime": np.array(["2020-01-01"], dtype="M8[D]"),
        "bytes": np.array([b"xy"]),
        "void": np.zeros(2, dtype="V3"),
        "big_structured": np.zeros(1, dtype=[(f"field_{i:04d}", "<f4") for i in range(600)]),
    }
    return out


def test_numpy_written_files_scan_clean_and_convert_equal(tmp_path, tensorseal_bin, run_cli):
    arrays = numpy_written_arrays()
    for name, a in arrays.items():
        np.save(tmp_path / f"{name}.npy", a)
    np.savez(tmp_path / "all.npz", **{k: v for k, v in arrays.items() if v.dtype.names is None and v.dtype.kind in "biufc"})
    np.savez_compressed(tmp_path / "allc.npz", a=arrays["f4"], b=arrays["i8_fortran"])
    scanned = scan_dir(tensorseal_bin, tmp_path)
    dirty = {n: e["findings"] for n, e in scanned.items() if e["findings"]}
    assert not dirty
    for f in sorted(tmp_path.glob("*.np[yz]")):
        out = tmp_path / (f.stem + ".safetensors")
        r = run_cli("convert", f, out)
        if f.suffix == ".npy":
            expected = {f.stem: np.load(f, allow_pickle=True)}
        else:
            with np.load(f, allow_pickle=True) as z:
                expected = {k: z[k] for k in z.files}
        convertible = all(v.dtype.names is None and v.dtype.kind in "biuf" or v.dtype.str[1:] == "c8" for v in expected.values())
        if not convertible:
            assert r.returncode != 0, f"{f.name}: converted a dtype safetensors cannot hold"
            continue
        assert r.returncode == 0, (f.name, r.stderr)
        got = safetensors_numpy.load_file(str(out))
        assert set(got) == set(expected)
        for k, v in expected.items():
            assert got[k].shape == v.shape, (f.name, k)
            assert np.array_equal(got[k], v.astype(v.dtype.newbyteorder("<"))), (f.name, k)


def test_odd_numeric_headers_convert_like_numpy(tmp_path, run_cli):
    """Headers only an attacker writes: whatever numpy returns, convert returns, or it refuses."""
    rng = random.Random(11)
    data = np.arange(6, dtype="<i4")
    done = 0
    for i in range(60):
        descr = rng.choice(["'<i4'", "'\\x3ci4'", "'<' 'i4'", "'|O', 'descr': '<i4'", "'<f4', 'descr': u'<\\u0069\\x34'"])
        shape = rng.choice(["(2, 3)", "(3L, 2L)", "( 6 , )", "(2,3,)"])
        fortran = rng.choice(["True", "False"])
        header = "{" + f"'descr': {descr},{ws(rng)}'fortran_order': {fortran}, 'shape': {shape}" + "}\n"
        version = rng.choice([1, 2, 3])
        p = tmp_path / f"o{i}.npy"
        write_npy(p, header, version, data.tobytes())
        if numpy_verdict(p) != "plain":
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = np.load(p)
        out = tmp_path / f"o{i}.safetensors"
        r = run_cli("convert", p, out)
        assert r.returncode == 0, (header, r.stderr)
        got = safetensors_numpy.load_file(str(out))[p.stem]
        assert got.shape == expected.shape and np.array_equal(got, expected), header
        done += 1
    assert done > 20


@pytest.mark.parametrize("spelling", OBJECT)
def test_object_spellings_are_objects_to_numpy_and_refused(tmp_path, run_cli, spelling):
    # Each spelling really is an object dtype to numpy (so the lists above stay honest)...
    assert np.dtype(spelling).hasobject
    p = tmp_path / "o.npy"
    write_npy(p, "{'descr': " + repr(spelling) + ", 'fortran_order': False, 'shape': (1,)}\n", 1, b"\x80\x02N.")
    assert numpy_verdict(p) == "object"
    # ...and convert refuses it without writing anything.
    r = run_cli("convert", p, tmp_path / "o.safetensors")
    assert r.returncode != 0
    assert not (tmp_path / "o.safetensors").exists()
