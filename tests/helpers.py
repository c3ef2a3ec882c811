"""Small helpers: checkpoints derived from a good one, random factors, counting SVDs."""

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

Q0 = "model.layers.0.self_attn.q_proj.weight"


def shard_of(folder: Path, tensor: str) -> Path:
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    return folder / index["weight_map"][tensor]


def copy_with(src: Path, dst: Path, tensor: str, value: torch.Tensor) -> Path:
    """Copy checkpoint `src` to `dst` with one tensor replaced."""
    shutil.copytree(src, dst)
    shard = shard_of(dst, tensor)
    tensors = load_file(shard)
    tensors[tensor] = value.contiguous()
    save_file(tensors, shard, metadata={"format": "pt"})
    return dst


def count_svds(monkeypatch) -> list:
    """Record the shape of every SVD the pipeline runs (base, post and null)."""
    from orthoscope.pipeline import measure, operands

    calls = []
    for module in (measure, operands):  # the post and null SVDs; the base's
        real = module.svd
        monkeypatch.setattr(module, "svd", lambda W, *a, real=real: calls.append(tuple(W.shape)) or real(W, *a))
    return calls


def orthonormal(rows: int, cols: int, generator: torch.Generator) -> torch.Tensor:
    """A random float64 matrix with orthonormal columns (Q of a Gaussian's QR)."""
    return torch.linalg.qr(torch.randn(rows, cols, generator=generator, dtype=torch.float64))[0]
