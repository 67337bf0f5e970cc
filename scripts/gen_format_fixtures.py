"""Generates the safetensors validation corpus in tests/fixtures/format/.

invalid/<kind>__<what>.safetensors   must be refused with FormatError kind <kind>
valid/<what>.safetensors             unusual but valid: must be accepted

One invalid file per validation rule (several for rules with several ways to
break them). Files are built byte by byte (no safetensors library), so they can
be anything. Deterministic. Run with any Python 3:

    python3 scripts/gen_format_fixtures.py
"""

import json
import pathlib
import shutil
import struct

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "format"

DTYPE_BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8,
    "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}


def raw(header: bytes, data: bytes = b"", n=None) -> bytes:
    """8-byte length (default: the header's) + header + data."""
    return struct.pack("<Q", len(header) if n is None else n) + header + data


def pad8(text: str) -> bytes:
    b = text.encode("utf-8")
    return b + b" " * (-len(b) % 8)


def file_of(header_text: str, data: bytes = b"", padded: bool = True) -> bytes:
    h = pad8(header_text) if padded else header_text.encode("utf-8")
    return raw(h, data)


def t(dtype, shape, start, end) -> str:
    return json.dumps({"dtype": dtype, "shape": shape, "data_offsets": [start, end]}, separators=(",", ":"))


INVALID = {
    "file_too_small__empty": b"",
    "file_too_small__3_bytes": b"\x01\x02\x03",
    "header_too_large__100mb_plus_1": struct.pack("<Q", 100_000_001) + b"{}",
    "header_too_large__u64_max": b"\xff" * 8 + b"{}",
    "header_past_end__len_100": raw(b"{}", n=100),
    "invalid_utf8__ff_byte": raw(b"{\"\xff\":1}   "),
    "invalid_json__not_json": file_of("hello"),
    "invalid_json__array": file_of("[1,2]"),
    "invalid_json__truncated": file_of('{"a":'),
    "invalid_json__trailing_garbage": file_of("{} x"),
    "invalid_json__nul_padding": raw(b"{}\x00\x00\x00\x00\x00\x00"),
    "duplicate_key__tensor": file_of('{"a":' + t("U8", [1], 0, 1) + ',"a":' + t("U8", [1], 1, 2) + "}", b"\x00\x00"),
    "duplicate_key__field": file_of('{"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}}', b"\x00"),
    "duplicate_key__metadata_key": file_of('{"__metadata__":{"k":"1","k":"2"}}'),
    "duplicate_key__metadata": file_of('{"__metadata__":{},"__metadata__":{}}'),
    "empty_name__tensor": file_of('{"":' + t("U8", [1], 0, 1) + "}", b"\x00"),
    "name_contains_nul__tensor": file_of('{"a\\u0000b":' + t("U8", [1], 0, 1) + "}", b"\x00"),
    "invalid_tensor_entry__number": file_of('{"a":1}'),
    "invalid_tensor_entry__array": file_of('{"a":["U8",[1],[0,1]]}', b"\x00"),
    "invalid_tensor_entry__missing_dtype": file_of('{"a":{"shape":[1],"data_offsets":[0,1]}}', b"\x00"),
    "invalid_tensor_entry__missing_shape": file_of('{"a":{"dtype":"U8","data_offsets":[0,1]}}', b"\x00"),
    "invalid_tensor_entry__missing_offsets": file_of('{"a":{"dtype":"U8","shape":[1]}}', b"\x00"),
    "unknown_dtype__f128": file_of('{"a":' + t("F128", [1], 0, 16) + "}", b"\x00" * 16),
    "unknown_dtype__lowercase": file_of('{"a":' + t("f32", [1], 0, 4) + "}", b"\x00" * 4),
    "unknown_dtype__number": file_of('{"a":{"dtype":7,"shape":[1],"data_offsets":[0,1]}}', b"\x00"),
    "invalid_shape__negative": file_of('{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}', b"\x00"),
    "invalid_shape__fraction": file_of('{"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}', b"\x00"),
    "invalid_shape__string": file_of('{"a":{"dtype":"U8","shape":["1"],"data_offsets":[0,1]}}', b"\x00"),
    "invalid_shape__not_array": file_of('{"a":{"dtype":"U8","shape":1,"data_offsets":[0,1]}}', b"\x00"),
    "invalid_shape__too_big_for_u64": file_of('{"a":{"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,1]}}', b"\x00"),
    "invalid_offsets__single": file_of('{"a":{"dtype":"U8","shape":[1],"data_offsets":[1]}}', b"\x00"),
    "invalid_offsets__triple": file_of('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}', b"\x00"),
    "invalid_offsets__negative": file_of('{"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}}', b"\x00"),
    "invalid_offsets__float": file_of('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0.0,1.0]}}', b"\x00"),
    "invalid_offsets__string": file_of('{"a":{"dtype":"U8","shape":[1],"data_offsets":"0,1"}}', b"\x00"),
    "offsets_reversed__end_before_start": file_of('{"a":' + t("U8", [0], 4, 0) + "}", b"\x00" * 4),
    "non_contiguous__gap_at_start": file_of('{"a":' + t("U8", [1], 1, 2) + "}", b"\x00\x00"),
    "non_contiguous__gap_between": file_of('{"a":' + t("U8", [1], 0, 1) + ',"b":' + t("U8", [1], 2, 3) + "}", b"\x00" * 3),
    "non_contiguous__overlap": file_of('{"a":' + t("U8", [2], 0, 2) + ',"b":' + t("U8", [2], 1, 3) + "}", b"\x00" * 3),
    "size_overflow__shape_product": file_of('{"a":' + t("U8", [4294967296, 4294967296, 16], 0, 1) + "}", b"\x00"),
    "size_overflow__bits": file_of('{"a":' + t("F64", [2305843009213693952, 2], 0, 1) + "}", b"\x00"),
    "partial_byte__f4_odd": file_of('{"a":' + t("F4", [3], 0, 2) + "}", b"\x00\x00"),
    "partial_byte__f6_one": file_of('{"a":' + t("F6_E2M3", [1], 0, 1) + "}", b"\x00"),
    "size_mismatch__f32_short": file_of('{"a":' + t("F32", [2], 0, 4) + "}", b"\x00" * 4),
    "size_mismatch__f4": file_of('{"a":' + t("F4", [4], 0, 4) + "}", b"\x00" * 4),
    "buffer_length_mismatch__trailing": file_of('{"a":' + t("U8", [1], 0, 1) + "}", b"\x00\x00"),
    "buffer_length_mismatch__truncated": file_of('{"a":' + t("U8", [4], 0, 4) + "}", b"\x00\x00"),
    "buffer_length_mismatch__empty_header_with_data": file_of("{}", b"\x00"),
    "invalid_metadata__number_value": file_of('{"__metadata__":{"k":1}}'),
    "invalid_metadata__nested": file_of('{"__metadata__":{"k":{"x":"y"}}}'),
    "invalid_metadata__array": file_of('{"__metadata__":["a"]}'),
}

ALL_DTYPES = {}
_off = 0
_parts = []
_data = b""
for _i, (_d, _bits) in enumerate(DTYPE_BITS.items()):
    _shape = [2, 4] if _bits in (4, 6) else [3]
    _n = (_shape[0] * (_shape[1] if len(_shape) > 1 else 1) * _bits) // 8
    _parts.append(json.dumps("t_" + _d) + ":" + t(_d, _shape, _off, _off + _n))
    _data += bytes((_i * 16 + k) % 256 for k in range(_n))
    _off += _n

VALID = {
    "empty_header_padded": file_of("{}"),
    "empty_header_unpadded": file_of("{}", padded=False),
    "metadata_only": file_of('{"__metadata__":{"format":"pt","note":"no tensors"}}'),
    "metadata_empty": file_of('{"__metadata__":{}}'),
    "metadata_null": file_of('{"__metadata__":null}'),
    "unpadded_header": file_of('{"a":' + t("U8", [3], 0, 3) + "}", b"abc", padded=False),
    "scalar_0d": file_of('{"s":' + t("F32", [], 0, 4) + "}", struct.pack("<f", 1.5)),
    "empty_tensors": file_of('{"e":' + t("F32", [0], 0, 0) + ',"f":' + t("I64", [3, 0, 2], 0, 0) + ',"g":' + t("U8", [2], 0, 2) + "}", b"\x01\x02"),
    "unsorted_offsets": file_of('{"z":' + t("U8", [2], 2, 4) + ',"a":' + t("U8", [2], 0, 2) + "}", b"\x01\x02\x03\x04"),
    "non_ascii_names": file_of('{"poids.é":' + t("U8", [1], 0, 1) + ',"重み":' + t("U8", [1], 1, 2) + ',"\\u00e9t\\u00e9":' + t("U8", [1], 2, 3) + ',"🙂":' + t("U8", [1], 3, 4) + "}", b"\x01\x02\x03\x04"),
    "whitespace_around_json": file_of(' \n\t{"a":' + t("U8", [1], 0, 1) + "}\r\n ", b"\x07"),
    "extra_tensor_fields": file_of('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":[1,2]}}', b"\x07"),
    "every_dtype": file_of("{" + ",".join(_parts) + "}", _data),
    "metadata_not_first": file_of('{"a":' + t("U8", [1], 0, 1) + ',"__metadata__":{"k":"v"}}', b"\x07"),
    "escaped_names": file_of('{"a\\"b\\\\c\\n":' + t("U8", [1], 0, 1) + "}", b"\x07"),
}


def main() -> None:
    for sub in ("invalid", "valid"):
        d = OUT / sub
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    for name, data in INVALID.items():
        (OUT / "invalid" / f"{name}.safetensors").write_bytes(data)
    for name, data in VALID.items():
        (OUT / "valid" / f"{name}.safetensors").write_bytes(data)
    print(f"{len(INVALID)} invalid and {len(VALID)} valid files in {OUT}")


if __name__ == "__main__":
    main()
