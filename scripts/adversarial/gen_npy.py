"""Adversarial NumPy samples: object arrays whose dtype hides behind numpy's header
semantics (scanner item 5), in .npy and .npz.

The header of a .npy is a Python dict literal that numpy evaluates with
ast.literal_eval: the last of duplicate keys wins, string escapes are decoded,
adjacent strings concatenate, and numpy.dtype() accepts many spellings of the object
type. Each sample's data is a pickle that np.load(allow_pickle=True) runs.

Run with the project venv: python scripts/adversarial/gen_npy.py
"""

from __future__ import annotations

import io
import struct
import sys
import zipfile

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import Group, payload_pickle  # noqa: E402


def npy(header: str, data: bytes, version: int = 1, pad: bool = True) -> bytes:
    """A .npy with `header` as written (numpy pads to 64 bytes and ends with a newline)."""
    enc = "utf8" if version == 3 else "latin1"
    h = header.encode(enc)
    pre = 10 if version == 1 else 12
    if pad:
        total = pre + len(h) + 1
        h += b" " * ((64 - total % 64) % 64) + b"\n"
    if version == 1:
        head = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h))
    else:
        head = b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(h))
    return head + h + data


def hdr(descr: str, shape: str = "(1,)", fortran: str = "False") -> str:
    return "{'descr': " + descr + ", 'fortran_order': " + fortran + ", 'shape': " + shape + ", }"


def npz(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


F4x2 = struct.pack("<2f", 1.5, -2.0)

# (file stem, header, version, note): every one is an object array whose data is a pickle.
OBJECT_HEADERS = [
    ("dup_descr_last_object", "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'descr': '|O'}", 1,
     "duplicate descr key, the object one last (numpy keeps the last)"),
    ("escape_x", hdr("'\\x4f'"), 1, "descr '\\x4f' (an escaped O)"),
    ("escape_u", hdr("'\\u004f'"), 1, "descr '\\u004f'"),
    ("escape_U", hdr("'|\\U0000004f'"), 1, "descr '|\\U0000004f'"),
    ("escape_octal", hdr("'\\117'"), 1, "descr '\\117' (octal O)"),
    ("escape_N", hdr("'\\N{LATIN CAPITAL LETTER O}'"), 1, "descr spelled with a \\N{...} escape"),
    ("concat", hdr("'O' \"8\""), 1, "implicit string concatenation 'O' \"8\""),
    ("triple_raw", hdr("r'''|O'''"), 1, "raw triple-quoted descr"),
    ("word_object", hdr("'object'"), 1, "descr 'object'"),
    ("word_object_", hdr("'object_'"), 1, "descr 'object_'"),
    ("code_O8", hdr("'O8'"), 1, "descr 'O8'"),
    ("code_O4", hdr("'>O4'"), 1, "descr '>O4'"),
    ("code_Oplus", hdr("'=O+8'"), 1, "descr '=O+8' (strtol size)"),
    ("typenum_17", hdr("'\\x11'"), 1, "descr chr(17), numpy's object type number"),
    ("stringdtype_T", hdr("'T'"), 1, "descr 'T' (StringDType, which holds objects)"),
    ("comma_f4_O", hdr("'f4,O'"), 1, "comma-separated dtype string with an object field"),
    ("subarray_str", hdr("'(2,)O'"), 1, "sub-array spelled in the string"),
    ("repeat_str", hdr("'2O'"), 1, "repeat count spelled in the string"),
    ("subarray_tuple", hdr("('|O', (2,))"), 1, "sub-array tuple descr"),
    ("nested_deep", hdr("[('a', '<f4'), ('b', [('c', [('d', [('e', '|O')])])])]"), 1,
     "structured dtype with an object field four levels deep"),
    ("title_field", hdr("[(('a title', 'a'), '<f4'), (('t', 'b'), '|O')]"), 1, "titled structured fields"),
    ("field_subarray", hdr("[('a', '<f4'), ('b', '|O', (2, 2))]"), 1, "object sub-array field"),
    ("field_list", hdr("[['a', '|O']]"), 1, "field written as a list, not a tuple"),
    ("dict_descr", hdr("{'aO': 1}"), 1, "descr dict iterated by numpy: key 'aO' unpacks to name 'a', dtype 'O'"),
    ("comments_newlines", "{'descr': # the dtype\n  '|O' ,\n 'fortran_order':False,'shape':(\n1,\n)}", 1,
     "comments and newlines inside the header"),
    ("paren_wrapped", "({'descr': u'|O', 'fortran_order': False, 'shape': (1,)})", 1, "parenthesised dict, u prefix"),
    ("py2_long", hdr("'|O'", shape="(1L,)"), 1, "Python 2 'L' integer suffix (numpy filters it)"),
    ("v2", hdr("'|O'"), 2, "format version 2.0"),
    ("v3_utf8", hdr("[('\u00e9\u4e2d', '<f4'), ('b', '|O')]"), 3, "format version 3.0, UTF-8 field names"),
    ("big_header", hdr("'<f4'").replace(", }", ", 'descr': '|O', }") + " " * 12000, 2,
     "header over numpy's 10000-character limit (allow_pickle=True lifts it), object descr last"),
]

BENIGN_HEADERS = [
    ("dup_descr_last_numeric", "{'descr': '|O', 'fortran_order': False, 'shape': (2,), 'descr': '<f4'}", 1,
     "duplicate descr key, the numeric one last"),
    ("escaped_numeric", hdr("'\\x3cf4'", shape="(2,)"), 1, "descr '\\x3cf4' is '<f4'"),
    ("field_named_O", hdr("[('O', '<f4'), ('object', '<f4')]"), 1, "fields named like the object type"),
    ("structured_numeric", hdr("[('a', '<f4', (2,))]"), 1, "numeric sub-array field"),
    ("py2_long_numeric", hdr("'<f4'", shape="(2L,)"), 2, "Python 2 'L' suffix, numeric"),
    ("v3_numeric", hdr("[('\u00e9', '<f4'), ('b', '<f4')]", shape="()"), 3, "format 3.0, numeric"),
    ("big_header_numeric", hdr("'<f4'", shape="(2,)") + " " * 12000, 2, "header over 10000 characters, numeric"),
]


def main() -> None:
    g = Group("npy")
    for i, (stem, header, version, note) in enumerate(OBJECT_HEADERS):
        g.sample(f"{stem}.npy", npy(header, payload_pickle(2 + i % 4), version), "numpy", "5", note)
    for stem, header, version, note in BENIGN_HEADERS:
        g.benign(f"{stem}.npy", npy(header, F4x2, version), note)

    plain = npy(hdr("'<f4'", shape="(2,)"), F4x2)
    by_stem = {s: (h, v) for s, h, v, _ in OBJECT_HEADERS}
    for stem, method in [
        ("dup_descr_last_object", zipfile.ZIP_DEFLATED),
        ("escape_u", zipfile.ZIP_STORED),
        ("nested_deep", zipfile.ZIP_DEFLATED),
        ("word_object", zipfile.ZIP_STORED),
        ("big_header", zipfile.ZIP_DEFLATED),
        ("typenum_17", zipfile.ZIP_DEFLATED),
    ]:
        h, v = by_stem[stem]
        data = npz({"weights.npy": plain, "hidden.npy": npy(h, payload_pickle(4), v)}, method)
        g.sample(f"npz_{stem}.npz", data, "numpy", "5", f"npz member: {stem}")
    dup = dict((s, (h, v)) for s, h, v, _ in BENIGN_HEADERS)
    g.benign(
        "npz_near_misses.npz",
        npz({f"{s}.npy": npy(h, F4x2, v) for s, (h, v) in dup.items()}),
        "npz of the benign near misses",
    )
    g.write()


if __name__ == "__main__":
    main()
