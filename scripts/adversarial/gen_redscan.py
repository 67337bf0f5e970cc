"""Adversarial samples from a red-team reading of the scanner (issue 11, items 1, 4, 6, 9).

Run with the venv python: `python scripts/adversarial/gen_redscan.py`. Writes
tests/fixtures/adversarial/redscan/ and its manifest. Every malicious sample is proved by
tests/python/scan/test_adversarial.py: its payload runs under the named loader and
`tensorseal scan` exits 1. Near misses must scan clean.

Classes found by reading the code (each passed `tensorseal scan` with exit 0 before its fix):
  operand   protocol-0 operands CPython reads with int() semantics that the analysis machine
            refused: INT/LONG in hex, octal, binary or with underscores, PUT/GET keys with
            underscores or "-0". The machine stopped before the call, the content was not
            identified as a pickle, and the file passed.
  memo      stacked pickles read with a fresh memo per pickle (pickle.load in a loop, torch's
            legacy reader): MEMOIZE numbers entries from 0 again, but the machine kept one
            memo for the stream, so BINGET resolved to harmless strings of an earlier pickle
            while CPython resolved it to builtins.exec.
  zfile     joblib's pre-0.9.3 "ZF" format (ZF, a hex length, a zlib stream): joblib.load
            decompresses and unpickles it; the scanner did not know the prefix.
Nothing here unpickles anything: samples are raw opcode bytes (pickle.dumps only builds the
benign near misses).
"""

from __future__ import annotations

import pickle
import zlib

from common import MARKER_CODE, Group, bu, exec_call_p0, su

G = Group("redscan")

LEGACY_MAGIC = b"\x8a\x0a" + bytes([0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19])


# ------------------------------------------------------------ operand spellings CPython reads
def operands() -> None:
    call = exec_call_p0()
    for name, op in [
        ("int_hex", b"I0x10\n"),
        ("int_octal_prefix", b"I0o17\n"),
        ("int_binary", b"I0b1_01\n"),
        ("int_underscore", b"I1_000\n"),
        ("int_leading_zero_octal", b"I010\n"),
        ("int_hex_underscore_after_prefix", b"I 0x_1f\n"),
        ("long_underscore", b"L1_0L\n"),
        ("long_hex", b"L-0X1fL\n"),
    ]:
        G.sample(f"{name}.bin", op + b"0" + call + b".", "pickle", "operand",
                 f"{op[:-1]!r} is an integer to CPython; the machine refused it before the call")
    # Memo keys: PUT/GET with int(text, 10) spellings that name the same entry.
    G.sample("put_underscore.bin", b"N" + b"p1_0\n0" + call + b".", "pickle", "operand",
             "PUT key 1_0 (CPython: 10)")
    G.sample("put_minus_zero.bin", b"N" + b"p-0\n0" + call + b".", "pickle", "operand",
             "PUT key -0 (CPython: 0)")
    # The name of the callable comes through GET keys spelled differently from their PUT.
    code = MARKER_CODE.encode("raw_unicode_escape").replace(b"\n", b"\\u000a")
    G.sample(
        "get_spelling_names_callable.bin",
        b"Vbuiltins\np0_1\n0Vexec\np+2\n0" + b"g01\ng 2\n\x93(V" + code + b"\ntR.",
        "pickle", "operand",
        "STACK_GLOBAL of strings fetched by GET 01 / GET ' 2' after PUT 0_1 / PUT +2",
    )
    # Several pickles in a stream: the second one starts with a spelling the machine refused,
    # which used to be taken for trailing data.
    G.sample("stacked_second_hex.bin", b"N." + b"I0x1\n0" + call + b".", "pickle_all", "operand",
             "second pickle of a stack starts with INT 0x1")


# ------------------------------------------------------------ memo aliasing across pickles
def memo() -> None:
    harmless = b"\x80\x04" + su("collections") + b"\x94" + su("OrderedDict") + b"\x94\x86."
    payload = (b"\x80\x04" + su("builtins") + b"\x94" + su("exec") + b"\x94" + b"0h\x00h\x01\x93"
               + bu(MARKER_CODE) + b"\x85R.")
    G.sample("memo_alias_stacked.bin", harmless + payload, "pickle_all", "memo",
             "pickle 2 MEMOIZEs builtins/exec at 0/1 (fresh memo); the machine's shared memo "
             "gave BINGET 0/1 = collections/OrderedDict")
    # Protocol 2 has no MEMOIZE: explicit BINPUTs agree, but LONG_BINGET of a key only an
    # earlier pickle defined fails under CPython; MEMOIZE is the spelling that aliases.
    G.sample("memo_alias_three.bin", harmless + b"N." + payload, "pickle_all", "memo",
             "a harmless pickle between the two")
    # torch's legacy reader loads the magic number, protocol, sys_info and the object with
    # separate pickle.load calls: the object pickle's memo starts empty.
    magic = (b"\x80\x02" + su("collections") + b"q\x00" + su("OrderedDict") + b"q\x01" + b"00"
             + LEGACY_MAGIC + b".")
    proto = b"\x80\x02M\xe9\x03."
    sys_info = b"\x80\x02}(X\x0d\x00\x00\x00little_endian\x88u."
    keys = b"\x80\x02]."
    G.sample("memo_alias_legacy_torch.pt", magic + proto + sys_info + payload + keys, "torch", "memo",
             "legacy torch: the object pickle MEMOIZEs builtins/exec; the magic pickle put "
             "collections/OrderedDict at 0/1")


# ------------------------------------------------------------ joblib's old ZF format
def zfile() -> None:
    pk = b"\x80\x02cbuiltins\nexec\n" + bu(MARKER_CODE) + b"\x85R."

    def zf(length_field: str, body: bytes, pad: bytes = b"") -> bytes:
        return b"ZF" + length_field.ljust(19).encode() + pad + zlib.compress(body)

    G.sample("joblib_zfile.pkl", zf(hex(len(pk)), pk), "joblib", "zfile", "ZF + hex length + zlib pickle")
    G.sample("joblib_zfile_space.pkl", zf(hex(len(pk)), pk, b" "), "joblib", "zfile",
             "old joblib wrote a one-byte-wider header: a space before the zlib stream")
    G.sample("joblib_zfile_plain_hex.dat", zf(f"  {len(pk):x}", pk), "joblib", "zfile",
             "length without 0x, padded with spaces, under a name that says nothing")


# ------------------------------------------------------------ near misses
def near_misses() -> None:
    G.benign("int_spellings_data.pkl", b"(I0x10\nI1_000\nL0o17L\nI010\nI01\nl.",
             "integer spellings CPython accepts, no global: plain data")
    G.benign("memo_keys_spelled.pkl", b"(Vweights\np1_0\ng10\ng01_0\nl.",
             "PUT/GET keys with underscores and leading zeros, no global")
    one = pickle.dumps({"w": [1.0, 2.0], "names": ["a", "a"]}, protocol=4)
    two = pickle.dumps([{"k": "v"}, {"k": "v"}], protocol=4)
    G.benign("stacked_memoized.pkl", one + two + one,
             "three stacked protocol-4 pickles that MEMOIZE and BINGET within themselves")
    G.benign("zf_text.txt", b"ZF is short for zero-field; this note is plain text.\n",
             "text starting with ZF whose header is no hex length: joblib raises before unpickling")
    G.benign("zf_harmless.pkl",
             b"ZF" + hex(20).ljust(19).encode() + zlib.compress(pickle.dumps({"a": 1}, protocol=2)),
             "joblib ZF file of plain data")


if __name__ == "__main__":
    operands()
    memo()
    zfile()
    near_misses()
    G.write()
