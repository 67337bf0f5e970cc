#!/usr/bin/env python3
"""Generates tests/fixtures/quant/: the reference decodings of every code of the
8-, 6- and 4-bit float dtypes (codes.json, from ml_dtypes and torch) and small
quantized checkpoints with their expected dequantization (layouts/), computed
with the published formula of each format in numpy.

    .venv-h/bin/python scripts/gen_quant_fixtures.py [--check]

--check regenerates into memory and fails if a committed file differs.
"""
import argparse
import json
import os
import sys

import ml_dtypes
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "quant")

# safetensors dtype -> (number of codes, ml_dtypes type, torch dtype or None)
DTYPES = [
    ("F8_E4M3", 256, ml_dtypes.float8_e4m3fn, torch.float8_e4m3fn),
    ("F8_E5M2", 256, ml_dtypes.float8_e5m2, torch.float8_e5m2),
    ("F8_E4M3FNUZ", 256, ml_dtypes.float8_e4m3fnuz, torch.float8_e4m3fnuz),
    ("F8_E5M2FNUZ", 256, ml_dtypes.float8_e5m2fnuz, torch.float8_e5m2fnuz),
    ("F8_E8M0", 256, ml_dtypes.float8_e8m0fnu, torch.float8_e8m0fnu),
    # torch has F4 only as packed pairs (float4_e2m1fn_x2), with no
    # element-wise conversion; F6 not at all.
    ("F4", 16, ml_dtypes.float4_e2m1fn, None),
    ("F6_E2M3", 64, ml_dtypes.float6_e2m3fn, None),
    ("F6_E3M2", 64, ml_dtypes.float6_e3m2fn, None),
]


def hexes(a):
    return [f"{int(x):0{a.dtype.itemsize * 2}x}" for x in a]


def codes_fixture():
    out = {
        "generator": "scripts/gen_quant_fixtures.py",
        "ml_dtypes": ml_dtypes.__version__,
        "torch": torch.__version__.split("+")[0],
        "dtypes": {},
    }
    for name, n, mld, td in DTYPES:
        codes = np.arange(n, dtype=np.uint8)
        a = codes.view(mld)
        with np.errstate(over="ignore", under="ignore"):
            entry = {
                "ml_dtypes": {
                    "f32": hexes(a.astype(np.float32).view(np.uint32)),
                    "bf16": hexes(a.astype(ml_dtypes.bfloat16).view(np.uint16)),
                    "f16": hexes(a.astype(np.float16).view(np.uint16)),
                }
            }
        if td is not None:
            t = torch.from_numpy(codes.copy()).view(td)
            entry["torch"] = {
                "f32": hexes(t.float().view(torch.int32).numpy().view(np.uint32)),
                "bf16": hexes(t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)),
                "f16": hexes(t.to(torch.float16).view(torch.int16).numpy().view(np.uint16)),
            }
        out["dtypes"][name] = entry
    return {"codes.json": json.dumps(out, indent=1) + "\n"}


# ---------------------------------------------------------------------------
# Quantized checkpoints, quantized here with each format's published packing,
# and their dense weights computed with the published dequantization formula
# in numpy f32. One directory per layout: model.safetensors (+ configs) and
# expected.safetensors (every output tensor; dequantized ones in F32).

from safetensors.numpy import save as st_save  # noqa: E402

F4_VALUES = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], dtype=np.float32)
F4_VALUES = np.concatenate([F4_VALUES, -F4_VALUES])


def rng_for(name):
    return np.random.default_rng(sum(map(ord, name)) * 7919)


def pack_cols_u32(vals, bits):
    """Little-endian bit stream of `bits`-bit fields along the last axis, in u32 words."""
    rows, cols = vals.shape
    per = 32 // bits
    words = -(-cols // per)
    out = np.zeros((rows, words), dtype=np.uint32)
    for i in range(cols):
        out[:, i // per] |= (vals[:, i].astype(np.uint32) & ((1 << bits) - 1)) << np.uint32(bits * (i % per))
    return out


def pack_rows_gptq3(vals):
    """3-bit GPTQ packing along axis 0, as AutoGPTQ's `QuantLinear.pack`
    loop for bits == 3 writes it: every 32 rows of 3-bit values fill 3 rows
    of u32 words; values 10 and 21 of each 32 straddle two words (their low
    bits end one word, their high bits start the next)."""
    rows, cols = vals.shape
    assert rows % 32 == 0
    v = vals.astype(np.uint32) & 7
    out = np.zeros((rows // 32 * 3, cols), dtype=np.uint32)
    i = row = 0
    while row < out.shape[0]:
        for j in range(i, i + 10):
            out[row] |= v[j] << np.uint32(3 * (j - i))
        i += 10
        out[row] |= v[i] << np.uint32(30)
        row += 1
        out[row] |= (v[i] >> np.uint32(2)) & np.uint32(1)
        i += 1
        for j in range(i, i + 10):
            out[row] |= v[j] << np.uint32(3 * (j - i) + 1)
        i += 10
        out[row] |= v[i] << np.uint32(31)
        row += 1
        out[row] |= (v[i] >> np.uint32(1)) & np.uint32(3)
        i += 1
        for j in range(i, i + 10):
            out[row] |= v[j] << np.uint32(3 * (j - i) + 2)
        i += 10
        row += 1
    return out


def f4_pack(codes):
    """Two F4 codes per byte, element 2i in the low nibble."""
    flat = codes.reshape(-1)
    return (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)


def f8_codes(rng, shape, nan_codes):
    c = rng.integers(0, 256, size=shape, dtype=np.uint8)
    for n in nan_codes:
        c[c == n] = 0x38
    return c


def dense_passthrough(rng):
    return {
        "model.embed_tokens.weight": rng.standard_normal((8, 16)).astype(np.float16),
        "model.norm.weight": rng.standard_normal(16).astype(np.float32),
    }


def st(tensors, metadata=None):
    return st_save(tensors, metadata=metadata)


def gptq(version, act_order, bits=4):
    rng = rng_for(f"gptq{version}{act_order}" + ("" if bits == 4 else str(bits)))
    out_f, in_f, group = (16, 64, 32) if bits != 3 else (64, 128, 32)
    groups = in_f // group
    q = rng.integers(0, 1 << bits, size=(out_f, in_f), dtype=np.uint32)
    z = rng.integers(0, 1 << bits, size=(groups, out_f), dtype=np.uint32)
    s = (rng.random((groups, out_f)) * 0.1 + 0.01).astype(np.float16)
    if act_order:
        g_idx = rng.permutation(np.arange(in_f) // group).astype(np.int32)
    else:
        g_idx = (np.arange(in_f) // group).astype(np.int32)
    stored_z = z if version == 2 else (z - 1) & ((1 << bits) - 1)
    if bits == 3:
        # qweight [in/32*3, out]; qzeros [groups, out/32*3] (the same loop
        # along the output channels).
        qweight = pack_rows_gptq3(q.T)
        qzeros = pack_rows_gptq3(stored_z.T).T.copy()
    else:
        # qweight [in/8, out]: input row k in word k//8, field k%8.
        qweight = pack_cols_u32(q, bits).T.copy()
        qzeros = pack_cols_u32(stored_z, bits)
    p = "model.layers.0.self_attn.q_proj"
    bias = rng.standard_normal(out_f).astype(np.float16)
    model = {
        f"{p}.qweight": qweight.view(np.int32),
        f"{p}.qzeros": qzeros.view(np.int32),
        f"{p}.scales": s,
        f"{p}.g_idx": g_idx,
        f"{p}.bias": bias,
    }
    # W[n, k] = s[g(k), n] * (q[n, k] - z[g(k), n])
    dense = s.astype(np.float32)[g_idx, :].T * (q.astype(np.float32) - z[g_idx, :].T.astype(np.float32))
    qc = {"bits": bits, "group_size": group, "desc_act": act_order, "sym": False}
    if version == 2:
        qc["checkpoint_format"] = "gptq_v2"
    cfg = {"quantization_config": dict(qc, quant_method="gptq")}
    return model, {f"{p}.weight": dense, f"{p}.bias": bias}, {"config.json": cfg}


def awq():
    rng = rng_for("awq")
    out_f, in_f, group = 32, 64, 32
    groups = in_f // group
    order = [0, 2, 4, 6, 1, 3, 5, 7]
    q = rng.integers(0, 16, size=(in_f, out_f), dtype=np.uint32)
    z = rng.integers(0, 16, size=(groups, out_f), dtype=np.uint32)
    s = (rng.random((groups, out_f)) * 0.1 + 0.01).astype(np.float16)

    def pack(m):
        words = np.zeros((m.shape[0], m.shape[1] // 8), dtype=np.uint32)
        for c in range(words.shape[1]):
            for i in range(8):
                words[:, c] |= m[:, c * 8 + order[i]] << np.uint32(4 * i)
        return words

    p = "model.layers.0.mlp.down_proj"
    model = {f"{p}.qweight": pack(q).view(np.int32), f"{p}.qzeros": pack(z).view(np.int32), f"{p}.scales": s}
    g = np.arange(in_f) // group
    dense = (s.astype(np.float32)[g, :] * (q.astype(np.float32) - z[g, :].astype(np.float32))).T
    cfg = {"quantization_config": {"quant_method": "awq", "bits": 4, "group_size": group, "version": "gemm", "zero_point": True}}
    return model, {f"{p}.weight": dense}, {"config.json": cfg}


def decode(codes, mld):
    return codes.view(mld).astype(np.float32)


def fp8_block():
    rng = rng_for("fp8block")
    rows, cols = 200, 300
    codes = f8_codes(rng, (rows, cols), [0x7F, 0xFF])
    sinv = (rng.random((2, 3)) * 0.01).astype(np.float32)
    p = "model.layers.0.mlp.gate_proj"
    model = {f"{p}.weight": codes.view(ml_dtypes.float8_e4m3fn), f"{p}.weight_scale_inv": sinv}
    r = np.arange(rows) // 128
    c = np.arange(cols) // 128
    dense = decode(codes, ml_dtypes.float8_e4m3fn) * sinv[r][:, c]
    cfg = {"quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}}
    return model, {f"{p}.weight": dense}, {"config.json": cfg}


def ct_config(fmt, bits, typ, strategy, group=None, symmetric=True):
    w = {"num_bits": bits, "type": typ, "symmetric": symmetric, "strategy": strategy, "group_size": group}
    return {"quantization_config": {"quant_method": "compressed-tensors", "format": fmt,
                                    "config_groups": {"group_0": {"targets": ["Linear"], "weights": w}}}}


def ct_pack(symmetric):
    rng = rng_for(f"ctpack{symmetric}")
    rows, cols, group, bits = 16, 72, 24, 4
    groups = cols // group
    q = rng.integers(-8, 8, size=(rows, cols))
    s = (rng.random((rows, groups)) * 0.1 + 0.01).astype(ml_dtypes.bfloat16)
    p = "model.layers.0.mlp.up_proj"
    model = {
        f"{p}.weight_packed": pack_cols_u32((q + 8).astype(np.uint32), bits).view(np.int32),
        f"{p}.weight_scale": s,
        f"{p}.weight_shape": np.array([rows, cols], dtype=np.int64),
    }
    zf = np.zeros((rows, groups), dtype=np.float32)
    if not symmetric:
        z = rng.integers(-8, 8, size=(rows, groups))
        # Zero points packed along dim 0.
        model[f"{p}.weight_zero_point"] = pack_cols_u32((z + 8).astype(np.uint32).T, bits).T.copy().view(np.int32)
        zf = z.astype(np.float32)
    g = np.arange(cols) // group
    dense = (q.astype(np.float32) - zf[:, g]) * s.astype(np.float32)[:, g]
    cfg = ct_config("pack-quantized", 4, "int", "group", group, symmetric)
    return model, {f"{p}.weight": dense}, {"config.json": cfg}


def ct_int8():
    rng = rng_for("ctint8")
    rows, cols = 16, 40
    q = rng.integers(-128, 128, size=(rows, cols)).astype(np.int8)
    s = (rng.random((rows, 1)) * 0.01).astype(np.float16)
    p = "model.layers.0.self_attn.o_proj"
    model = {f"{p}.weight": q, f"{p}.weight_scale": s}
    dense = q.astype(np.float32) * s.astype(np.float32)
    return model, {f"{p}.weight": dense}, {"config.json": ct_config("int-quantized", 8, "int", "channel")}


def ct_fp8():
    rng = rng_for("ctfp8")
    rows, cols = 24, 40
    codes = f8_codes(rng, (rows, cols), [0x7F, 0xFF])
    s = (rng.random((rows, 1)) * 0.01).astype(ml_dtypes.bfloat16)
    p = "model.layers.0.self_attn.k_proj"
    model = {f"{p}.weight": codes.view(ml_dtypes.float8_e4m3fn), f"{p}.weight_scale": s}
    dense = decode(codes, ml_dtypes.float8_e4m3fn) * s.astype(np.float32)
    return model, {f"{p}.weight": dense}, {"config.json": ct_config("float-quantized", 8, "float", "channel")}


def nvfp4(modelopt):
    rng = rng_for(f"nvfp4{modelopt}")
    rows, cols = 16, 64
    codes = rng.integers(0, 16, size=(rows, cols), dtype=np.uint8)
    sc = f8_codes(rng, (rows, cols // 16), [0x7F, 0xFF]) & 0x7F  # positive scales
    scale = decode(sc, ml_dtypes.float8_e4m3fn)
    g = np.float32(rng.random() * 100 + 1)
    p = "model.layers.0.mlp.gate_proj"
    v = F4_VALUES[codes]
    cols_g = np.arange(cols) // 16
    if modelopt:
        model = {f"{p}.weight": f4_pack(codes).reshape(rows, cols // 2), f"{p}.weight_scale": sc.view(ml_dtypes.float8_e4m3fn),
                 f"{p}.weight_scale_2": np.array(g, dtype=np.float32), f"{p}.input_scale": np.array(1.0, dtype=np.float32)}
        # ModelOpt: v * (block scale * weight_scale_2)
        dense = v * (scale * g)[:, cols_g]
        cfgs = {"hf_quant_config.json": {"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "NVFP4", "group_size": 16}}}
        expected = {f"{p}.weight": dense, f"{p}.input_scale": model[f"{p}.input_scale"]}
    else:
        model = {f"{p}.weight_packed": f4_pack(codes).reshape(rows, cols // 2), f"{p}.weight_scale": sc.view(ml_dtypes.float8_e4m3fn),
                 f"{p}.weight_global_scale": np.array([g], dtype=np.float32)}
        # compressed-tensors: v * (scale / global_scale)
        dense = v * (scale / g)[:, cols_g]
        cfgs = {"config.json": ct_config("nvfp4-pack-quantized", 4, "float", "tensor_group", 16)}
        expected = {f"{p}.weight": dense}
    return model, expected, cfgs


def ct_mxfp4():
    rng = rng_for("ctmxfp4")
    rows, cols = 8, 64
    codes = rng.integers(0, 16, size=(rows, cols), dtype=np.uint8)
    e = rng.integers(100, 140, size=(rows, cols // 32), dtype=np.uint8)
    p = "model.layers.0.mlp.up_proj"
    model = {f"{p}.weight_packed": f4_pack(codes).reshape(rows, cols // 2), f"{p}.weight_scale": e}
    dense = F4_VALUES[codes] * np.ldexp(np.float32(1), e.astype(np.int32) - 127)[:, np.arange(cols) // 32]
    return model, {f"{p}.weight": dense.astype(np.float32)}, {"config.json": ct_config("mxfp4-pack-quantized", 4, "float", "group", 32)}


def gpt_oss():
    rng = rng_for("gptoss")
    experts, rows, groups = 2, 4, 3
    codes = rng.integers(0, 16, size=(experts, rows, groups, 32), dtype=np.uint8)
    e = rng.integers(110, 135, size=(experts, rows, groups), dtype=np.uint8)
    p = "model.layers.0.mlp.experts.gate_up_proj"
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    model = {f"{p}_blocks": blocks, f"{p}_scales": e, f"{p}_bias": rng.standard_normal((experts, rows)).astype(np.float32)}
    dense = F4_VALUES[codes] * np.ldexp(np.float32(1), e.astype(np.int32) - 127)[..., None]
    dense = dense.reshape(experts, rows, groups * 32).astype(np.float32)
    cfg = {"quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn"]}}
    return model, {p: dense, f"{p}_bias": model[f"{p}_bias"]}, {"config.json": cfg}


NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], dtype=np.float32)


def bnb4(nested):
    rng = rng_for(f"bnb4{nested}")
    rows, cols, block = 8, 64, 64
    n = rows * cols
    codes = rng.integers(0, 16, size=n, dtype=np.uint8)
    packed = ((codes[0::2] << 4) | codes[1::2]).astype(np.uint8).reshape(-1, 1)  # first element in the high nibble
    p = "model.layers.0.mlp.down_proj"
    model = {f"{p}.weight": packed, f"{p}.weight.quant_map": NF4}
    state = {"quant_type": "nf4", "blocksize": block, "dtype": "bfloat16", "shape": [rows, cols]}
    if nested:
        nblock = 4
        acodes = rng.integers(0, 256, size=n // block, dtype=np.uint8)
        nmap = np.sort(rng.standard_normal(256).astype(np.float32))
        nabs = (rng.random(-(-(n // block) // nblock)) + 0.5).astype(np.float32)
        offset = 0.25
        absmax = nmap[acodes] * nabs[np.arange(n // block) // nblock] + np.float32(offset)
        model.update({f"{p}.weight.absmax": acodes, f"{p}.weight.nested_absmax": nabs, f"{p}.weight.nested_quant_map": nmap})
        state.update({"nested_blocksize": nblock, "nested_offset": offset, "nested_dtype": "float32"})
    else:
        absmax = (rng.random(n // block) + 0.5).astype(np.float32)
        model[f"{p}.weight.absmax"] = absmax
    model[f"{p}.weight.quant_state.bitsandbytes__nf4"] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
    dense = (NF4[codes] * absmax[np.arange(n) // block]).reshape(rows, cols)
    return model, {f"{p}.weight": dense}, {"config.json": {"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}}}


def bnb8():
    rng = rng_for("bnb8")
    rows, cols = 8, 24
    q = rng.integers(-127, 128, size=(rows, cols)).astype(np.int8)
    scb = (rng.random(rows) * 4).astype(np.float32)
    p = "model.layers.0.mlp.up_proj"
    model = {f"{p}.weight": q, f"{p}.SCB": scb}
    dense = (q.astype(np.float32) * scb[:, None]) * np.float32(7.874015718698502e-3)
    return model, {f"{p}.weight": dense}, {"config.json": {"quantization_config": {"quant_method": "bitsandbytes", "load_in_8bit": True}}}


LAYOUTS = {
    "gptq_v1": lambda: gptq(1, False),
    "gptq_v1_act_order": lambda: gptq(1, True),
    "gptq_v2": lambda: gptq(2, False),
    "gptq_v1_3bit": lambda: gptq(1, False, bits=3),
    "gptq_v2_3bit_act_order": lambda: gptq(2, True, bits=3),
    "awq_gemm": awq,
    "fp8_block": fp8_block,
    "ct_pack_sym": lambda: ct_pack(True),
    "ct_pack_asym": lambda: ct_pack(False),
    "ct_int8": ct_int8,
    "ct_fp8": ct_fp8,
    "ct_nvfp4": lambda: nvfp4(False),
    "modelopt_nvfp4": lambda: nvfp4(True),
    "ct_mxfp4": ct_mxfp4,
    "gpt_oss_mxfp4": gpt_oss,
    "bnb_nf4": lambda: bnb4(False),
    "bnb_nf4_nested": lambda: bnb4(True),
    "bnb_int8": bnb8,
}


def layout_fixtures():
    files = {}
    for name, make in LAYOUTS.items():
        rng = rng_for(name + "dense")
        model, expected, cfgs = make()
        plain = dense_passthrough(rng)
        model.update(plain)
        expected.update(plain)
        files[f"layouts/{name}/model.safetensors"] = st(model, {"format": "pt"})
        files[f"layouts/{name}/expected.safetensors"] = st({k: np.array(v, order="C") for k, v in expected.items()})
        for fname, cfg in cfgs.items():
            files[f"layouts/{name}/{fname}"] = json.dumps(cfg, indent=1) + "\n"
    return files


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    files = {}
    files.update(codes_fixture())
    files.update(layout_fixtures())
    bad = []
    for rel, data in sorted(files.items()):
        path = os.path.join(OUT, rel)
        raw = data.encode() if isinstance(data, str) else data
        if args.check:
            if not os.path.exists(path) or open(path, "rb").read() != raw:
                bad.append(rel)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(raw)
    if bad:
        sys.exit(f"fixtures differ from the generator: {bad}")
    print(f"{'checked' if args.check else 'wrote'} {len(files)} files under {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
