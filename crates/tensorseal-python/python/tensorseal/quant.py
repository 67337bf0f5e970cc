"""Quantized checkpoints: what they hold, and their dense equivalent.

``inspect(path)`` lists the quantized layers of a checkpoint (a file, an
index or a directory, read with ``config.json`` / ``quantize_config.json`` /
``hf_quant_config.json`` when present): scheme, bits, group size and
effective bits per weight. ``dequantize(src, dst, dtype="bf16")`` writes the
dense checkpoint, streaming with bounded memory; see docs/quant.md for the
schemes and formulas.
"""

import os
from typing import Any, Dict, List, Union

from . import _tensorseal

PathLike = Union[str, "os.PathLike[str]"]


def inspect(path: PathLike) -> List[Dict[str, Any]]:
    """The quantized layers of the checkpoint at ``path``: one dict per layer
    with ``name`` (the dense tensor dequantizing writes), ``scheme``, ``bits``,
    ``group_size``, ``shape``, ``tensors`` (those the layer is stored as),
    ``stored_bytes`` and ``effective_bits`` (stored bits per dense weight)."""
    return _tensorseal.quant_inspect(os.fspath(path))


def dequantize(
    src: PathLike,
    dst: PathLike,
    dtype: str = "bf16",
    *,
    max_shard_size: int = 5_000_000_000,
    chunk_bytes: int = 2 << 20,
    sync: bool = True,
) -> Dict[str, Any]:
    """Writes the dense equivalent of the checkpoint at ``src`` to ``dst``.

    Quantized layers become one ``dtype`` tensor each (``"bf16"``, ``"f16"``
    or ``"f32"``); every other tensor is copied unchanged. ``dst`` ending in
    ``.safetensors`` is one file; otherwise it is a directory receiving
    ``model.safetensors`` or shards of at most ``max_shard_size`` bytes with
    ``model.safetensors.index.json``, and ``config.json`` without its
    ``quantization_config``. At most ``chunk_bytes`` of output are held in
    memory at a time. ``sync=False`` skips the fsync of the output before
    returning (it is still renamed into place only when complete). Returns ``{"dequantized", "copied", "files", "bytes"}``.
    """
    return _tensorseal.quant_dequantize(
        os.fspath(src), os.fspath(dst), dtype, max_shard_size, chunk_bytes, sync
    )


__all__ = ["dequantize", "inspect"]
