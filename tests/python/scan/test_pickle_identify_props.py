"""Property: any opcode sequence that CPython's pickle.load accepts up to STOP is identified
as a pickle by `tensorseal scan` (format `pickle`, or `torch_legacy`).

Programs are generated opcode by opcode with a model of the unpickler's stack, so most of
them are valid; each is then checked against CPython itself (a Unpickler whose find_class
and persistent_load refuse, although no global or persistent-id opcode is generated), and
only the accepted ones are asserted on. Any opcode may come first: PROTO 0-5 or none, FRAME,
memo opcodes, marks, strings of any width, long leading opcodes. The examples of one
hypothesis run are scanned in one directory scan, so the test takes seconds.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import subprocess

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


class _Refuse(pickle.Unpickler):
    def find_class(self, module, name):  # pragma: no cover - never generated
        raise pickle.UnpicklingError(f"global {module}.{name} refused")

    def persistent_load(self, pid):  # pragma: no cover - never generated
        raise pickle.UnpicklingError("persistent id refused")


def cpython_accepts(data: bytes) -> bool:
    try:
        _Refuse(io.BytesIO(data)).load()
    except Exception:
        return False
    return True


# Leaf opcodes: each pushes one value. (kind is "h" hashable, "u" unhashable, "l" list,
# "d" dict, "s" set.)
def _leaf(draw) -> tuple[bytes, str]:
    k = draw(st.integers(0, 27))
    small = draw(st.integers(0, 255))
    text = draw(st.text(max_size=draw(st.sampled_from([3, 40, 300]))))
    raw = text.encode("utf-8", "surrogatepass")
    blob = draw(st.binary(max_size=300))
    if k == 0:
        return b"N", "h"
    if k == 1:
        return b"\x88", "h"
    if k == 2:
        return b"\x89", "h"
    if k == 3:
        return b"K" + bytes([small]), "h"
    if k == 4:
        return b"M" + struct.pack("<H", draw(st.integers(0, 65535))), "h"
    if k == 5:
        return b"J" + struct.pack("<i", draw(st.integers(-(2**31), 2**31 - 1))), "h"
    if k == 6:
        return b"I" + str(draw(st.integers(-(10**30), 10**30))).encode() + b"\n", "h"
    if k == 7:
        return b"L" + str(draw(st.integers(-(10**30), 10**30))).encode() + b"L\n", "h"
    if k == 8:
        n = draw(st.integers(-(2**70), 2**70))
        enc = pickle.encode_long(n)
        return b"\x8a" + bytes([len(enc)]) + enc, "h"
    if k == 9:
        return b"F" + repr(draw(st.floats(allow_nan=False))).encode() + b"\n", "h"
    if k == 10:
        return b"G" + struct.pack(">d", draw(st.floats())), "h"
    if k == 11:
        return b"\x8c" + bytes([len(raw[:255])]) + raw[:255], "h"
    if k == 12:
        return b"X" + struct.pack("<I", len(raw)) + raw, "h"
    if k == 13:
        return b"\x8d" + struct.pack("<Q", len(raw)) + raw, "h"
    if k == 14:
        for c, esc in (("\\", "\\u005c"), ("\0", "\\u0000"), ("\n", "\\u000a"), ("\r", "\\u000d"), ("\x1a", "\\u001a")):
            text = text.replace(c, esc)
        return b"V" + text.encode("raw_unicode_escape") + b"\n", "h"
    if k == 15:
        return b"S" + repr(blob.decode("latin-1")).encode("ascii", "backslashreplace") + b"\n", "h"
    if k == 16:
        return b"U" + bytes([len(blob[:255])]) + blob[:255], "h"
    if k == 17:
        return b"T" + struct.pack("<i", len(blob)) + blob, "h"
    if k == 18:
        return b"C" + bytes([len(blob[:255])]) + blob[:255], "h"
    if k == 19:
        return b"B" + struct.pack("<I", len(blob)) + blob, "h"
    if k == 20:
        return b"\x8e" + struct.pack("<Q", len(blob)) + blob, "h"
    if k == 21:
        return b"\x96" + struct.pack("<Q", len(blob)) + blob, "u"
    if k == 22:
        return b"]", "l"
    if k == 23:
        return b"}", "d"
    if k == 24:
        return b")", "h"
    if k == 25:
        return b"\x8f", "s"
    if k == 26:
        return b"(l", "l"
    return b"(d", "d"


@st.composite
def program(draw) -> bytes:
    """A pickle body (no PROTO/FRAME) driven by a model of the stack, ending in STOP."""
    out = bytearray()
    stack: list[str] = []  # kinds; "m" is a mark
    memo: list[int] = []
    for _ in range(draw(st.integers(1, 25))):
        above = stack[::-1].index("m") if "m" in stack else len(stack)
        choice = draw(st.integers(0, 12))
        if choice <= 4 or not stack:
            op, kind = _leaf(draw)
            out += op
            stack.append(kind)
        elif choice == 5:
            out += b"("
            stack.append("m")
        elif choice == 6 and stack[-1] != "m":
            key = draw(st.integers(0, 300))
            form = draw(st.integers(0, 3))
            if form == 0:
                out += b"p" + str(key).encode() + b"\n"
            elif form == 1 and key < 256:
                out += b"q" + bytes([key])
            elif form == 2:
                out += b"r" + struct.pack("<I", key)
            else:
                key = len(memo)
                out += b"\x94"
            memo.append(key)
        elif choice == 7 and memo:
            key = draw(st.sampled_from(memo))
            form = draw(st.integers(0, 2))
            if form == 0:
                out += b"g" + str(key).encode() + b"\n"
            elif form == 1 and key < 256:
                out += b"h" + bytes([key])
            else:
                out += b"j" + struct.pack("<I", key)
            stack.append("u")  # kind unknown after a memo round trip: never a dict key
        elif choice == 8 and above >= 1:
            out += draw(st.sampled_from([b"0", b"2", b"\x85"]))
            if out[-1:] == b"0":
                stack.pop()
            elif out[-1:] == b"2":
                stack.append(stack[-1])
            else:
                stack[-1] = "h" if stack[-1] == "h" else "u"
        elif choice == 9 and above >= 2:
            hashable = stack[-1] == "h" and stack[-2] == "h"
            out += b"\x86"
            stack[-2:] = ["h" if hashable else "u"]
        elif choice == 10 and "m" in stack:
            i = len(stack) - 1 - stack[::-1].index("m")
            items = stack[i + 1 :]
            op = draw(st.sampled_from([b"t", b"l", b"1"]))
            out += op
            del stack[i:]
            if op == b"t":
                stack.append("h" if all(k == "h" for k in items) else "u")
            elif op == b"l":
                stack.append("l")
        elif choice == 11 and above >= 2 and stack[-2] == "l":
            out += b"a"
            stack.pop()
        elif choice == 12 and above >= 3 and stack[-3] == "d" and stack[-2] == "h":
            out += b"s"
            del stack[-2:]
    if not stack or stack[-1] == "m":
        out += b"N"
    out += b"."
    return bytes(out)


@st.composite
def stream(draw) -> bytes:
    """A whole file: optional PROTO, optional FRAME, the program, optional trailing bytes."""
    body = draw(program())
    if draw(st.integers(0, 9)) == 0:
        # A leading opcode longer than a 64 KiB window.
        body = b"X" + struct.pack("<I", 70_000) + b"a" * 70_000 + b"0" + body
    proto = b"\x80" + bytes([draw(st.integers(0, 5))]) if draw(st.booleans()) else b""
    layout = draw(st.integers(0, 2))
    if layout == 0:  # PROTO, then FRAME (what CPython writes)
        body = proto + b"\x95" + struct.pack("<Q", len(body)) + body
    elif layout == 1:  # FRAME first, PROTO inside it (or none)
        body = proto + body
        body = b"\x95" + struct.pack("<Q", len(body)) + body
    else:  # no FRAME
        body = proto + body
    tail = draw(st.sampled_from([b"", b"\xff\xff", b"trailing text\n", b"\x00" * 16]))
    return body + tail


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(stream(), min_size=40, max_size=40))
def test_accepted_opcode_streams_are_identified_as_pickles(tmp_path_factory, tensorseal_bin, streams):
    folder = tmp_path_factory.mktemp("streams")
    kept = {}
    for i, data in enumerate(streams):
        if cpython_accepts(data):
            name = f"s{i:02d}.bin"
            (folder / name).write_bytes(data)
            kept[name] = data
    assert kept, "the generator produced no stream that CPython accepts"
    r = subprocess.run(
        [str(tensorseal_bin), "scan", "--format", "json", str(folder)], capture_output=True, text=True, timeout=120
    )
    doc = json.loads(r.stdout)
    formats = {f["path"].rsplit("/", 1)[-1]: f["format"] for f in doc["files"]}
    for name, data in kept.items():
        assert formats.get(name) in ("pickle", "torch_legacy"), (name, formats.get(name), data[:200])


def test_cpython_oracle_is_meaningful():
    """The oracle refuses what CPython refuses (so the property is not vacuous)."""
    assert cpython_accepts(b"N.")
    assert cpython_accepts(b"\x95\x02\x00\x00\x00\x00\x00\x00\x00N.")
    assert not cpython_accepts(b"\x80\x06N.")
    assert not cpython_accepts(b"cos\nsystem\n.")
    assert not cpython_accepts(b".")
