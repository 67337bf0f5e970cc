"""Writes examples/tiny.safetensors with the reference `safetensors` package.

A tiny two-layer "model" in the dtypes real checkpoints use, so that
`tensorseal inspect examples/tiny.safetensors` has something to show.
Deterministic: re-running produces the same bytes.

    /path/to/venv/bin/python scripts/gen_example.py
"""

import pathlib

import torch
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main() -> None:
    g = torch.Generator().manual_seed(0)
    tensors = {
        "model.embed_tokens.weight": torch.randn(32, 8, generator=g).to(torch.bfloat16),
        "model.layers.0.self_attn.q_proj.weight": torch.randn(8, 8, generator=g).to(torch.bfloat16),
        "model.layers.0.mlp.up_proj.weight": torch.randn(16, 8, generator=g).to(torch.float16),
        "model.layers.0.input_layernorm.weight": torch.ones(8, dtype=torch.float32),
        "model.layers.1.mlp.up_proj.weight": torch.randn(16, 8, generator=g).to(torch.float8_e4m3fn),
        "model.layers.1.mlp.up_proj.weight_scale": torch.tensor(0.125, dtype=torch.float32),
        "model.norm.weight": torch.ones(8, dtype=torch.float32),
        "model.position_ids": torch.arange(16, dtype=torch.int64).reshape(1, 16),
        "model.attention_mask": torch.ones(4, 4, dtype=torch.bool).tril(),
    }
    out = ROOT / "examples" / "tiny.safetensors"
    save_file(tensors, str(out), metadata={"format": "pt"})
    print(out, out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
