#!/usr/bin/env python3
"""Writes the seed inputs of two fuzz targets (standard library only):

- fuzz/seeds/quant_layers/: every committed layout fixture
  (tests/fixtures/quant/layouts/*) and one sparse file per layout of
  docs/sparse.md, framed as
  `[which config file: u8][n: u16 LE][config: n bytes][model.safetensors]`
  (which: 0 config.json, 1 quantize_config.json, 2 hf_quant_config.json);
- fuzz/seeds/parallel_plan/: the test plan (tests/python/parallel/plan.json)
  alone and with each kind of pipeline filter, after 8 shape bytes.

scripts/test.sh replays every seed through the built targets, so their
assertions are checked on real inputs in CI.

    python3 scripts/gen_fuzz_seeds.py
"""
import json
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYOUTS = os.path.join(ROOT, "tests", "fixtures", "quant", "layouts")
OUT = os.path.join(ROOT, "fuzz", "seeds", "quant_layers")
CONFIGS = ["config.json", "quantize_config.json", "hf_quant_config.json"]


def frame(which, config, model):
    return bytes([which]) + struct.pack("<H", len(config)) + config + model


def safetensors(tensors, metadata):
    """tensors: [(name, dtype, shape, bytes)]"""
    header, data = {"__metadata__": metadata}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def sparse_seeds():
    f32 = lambda *v: struct.pack(f"<{len(v)}f", *v)
    i64 = lambda *v: struct.pack(f"<{len(v)}q", *v)
    i32 = lambda *v: struct.pack(f"<{len(v)}i", *v)
    # Dense [[0, 1, 0, 2], [3, 0, 0, 4]] in each layout.
    yield "sparse_coo", [
        ("w.indices", "I64", [2, 4], i64(0, 0, 1, 1, 1, 3, 0, 3)),
        ("w.values", "F32", [4], f32(1, 2, 3, 4)),
    ], {"w": {"layout": "coo", "shape": [2, 4]}}
    yield "sparse_csr", [
        ("w.crow_indices", "I32", [3], i32(0, 2, 4)),
        ("w.col_indices", "I32", [4], i32(1, 3, 0, 3)),
        ("w.values", "F32", [4], f32(1, 2, 3, 4)),
    ], {"w": {"layout": "csr", "shape": [2, 4]}}
    yield "sparse_csc", [
        ("w.ccol_indices", "I32", [5], i32(0, 1, 2, 2, 4)),
        ("w.row_indices", "I32", [4], i32(1, 0, 0, 1)),
        ("w.values", "F32", [4], f32(3, 1, 2, 4)),
    ], {"w": {"layout": "csc", "shape": [2, 4]}}
    # 2:4: kept positions 1 and 3 in each row of 4 (nibble 0b1101 = 0xD).
    yield "sparse_2_4", [
        ("w.values", "F32", [2, 2], f32(1, 2, 3, 4)),
        ("w.meta", "U8", [2, 1], bytes([0x0D, 0x0D])),
    ], {"w": {"layout": "2:4", "shape": [2, 4]}}


def fresh(d):
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        os.remove(os.path.join(d, old))


def plan_seeds():
    with open(os.path.join(ROOT, "tests", "python", "parallel", "plan.json")) as f:
        plan = json.load(f)
    yield "plan", plan
    yield "plan_stages", dict(plan, pipeline={"stages": 2, "non_layer": "first"})
    yield "plan_layers", dict(plan, pipeline={"layers": [0, 1], "non_layer": "last", "layer_regex": "layers\\.(\\d+)\\."})
    yield "plan_num_layers", dict(plan, default="skip", pipeline={"stages": 2, "num_layers": 4, "non_layer": "skip"})


def main():
    out = os.path.join(ROOT, "fuzz", "seeds", "parallel_plan")
    fresh(out)
    # Shape bytes: sizes (b // 8) * (b % 8), one of them 2**40 (b % 8 == 7).
    shapes = bytes([8 * 16 + 4, 8 * 11 + 4, 8 * 31 + 1, 8 * 3 + 2, 7, 8 * 5 + 3, 8 * 9 + 1, 8 * 2 + 2])
    for name, plan in plan_seeds():
        with open(os.path.join(out, name), "wb") as f:
            f.write(shapes + json.dumps(plan).encode())
    print(f"wrote {len(os.listdir(out))} seeds to {os.path.relpath(out, ROOT)}")
    fresh(OUT)
    for name in sorted(os.listdir(LAYOUTS)):
        d = os.path.join(LAYOUTS, name)
        with open(os.path.join(d, "model.safetensors"), "rb") as f:
            model = f.read()
        which, config = 0, b""
        for i, c in enumerate(CONFIGS):
            if os.path.exists(os.path.join(d, c)):
                with open(os.path.join(d, c), "rb") as f:
                    which, config = i, f.read()
                break
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(frame(which, config, model))
    for name, tensors, sparse in sparse_seeds():
        model = safetensors(tensors, {"__sparse__": json.dumps(sparse)})
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(frame(0, b"", model))
    print(f"wrote {len(os.listdir(OUT))} seeds to {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main()
