"""Enumerate a checkpoint's analysed matrices using the maps in `maps.py`."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import torch

from orthoscope.architectures.maps import ARCHITECTURES
from orthoscope.sources import Checkpoint

NO_LAYER = -1


@dataclass(frozen=True)
class MatrixRef:
    """One analysed matrix: which stored tensor, and how to cut it to (out, in).

    `rows` selects output rows of the logical matrix (a fused part, or the
    common vocabulary of two embeddings); `neox_part` picks q, k or v from
    GPT-NeoX's per-head interleaving.
    """

    name: str
    tensor: str
    layer: int
    kind: str
    shape: tuple[int, int]
    transpose: bool = False
    rows: tuple[int, int] | None = None
    neox_part: int | None = None
    neox_heads: int = 0
    expert: int | None = None  # index of a mixture-of-experts expert (None: a dense matrix)
    shared_expert: bool = False  # a shared (always-on) expert of an MoE layer

    def with_rows(self, count: int) -> "MatrixRef":
        """Keep the first `count` rows (common vocabulary of two embeddings)."""
        start = self.rows[0] if self.rows else 0
        return replace(self, rows=(start, start + count), shape=(count, self.shape[1]))


def read_matrix(ckpt: Checkpoint, ref: MatrixRef) -> torch.Tensor:
    """The (out, in) matrix `ref` describes, read from `ckpt`, in its stored dtype."""
    tensor = ckpt.read(ref.tensor)
    if ref.transpose:
        tensor = tensor.T
    if ref.neox_part is not None:
        rows, cols = tensor.shape
        per_head = tensor.reshape(ref.neox_heads, 3, rows // (3 * ref.neox_heads), cols)
        tensor = per_head[:, ref.neox_part].reshape(-1, cols)
    if ref.rows is not None:
        tensor = tensor[ref.rows[0] : ref.rows[1]]
    return tensor.contiguous()


def write_matrix(tensor: torch.Tensor, ref: MatrixRef, W: torch.Tensor) -> None:
    """Write the (out, in) matrix `W` into the stored `tensor` in place: the inverse of read_matrix."""
    view = tensor.T if ref.transpose else tensor
    W = W.to(tensor.dtype)
    if ref.neox_part is not None:
        rows, cols = view.shape
        per_head = view.view(ref.neox_heads, 3, rows // (3 * ref.neox_heads), cols)
        per_head[:, ref.neox_part] = W.reshape(ref.neox_heads, -1, cols)
    elif ref.rows is not None:
        view[ref.rows[0] : ref.rows[1]] = W
    else:
        view.copy_(W)


def find_matrices(ckpt: Checkpoint, include_embeddings: bool = False) -> tuple[list[MatrixRef], list[str]]:
    """All analysed matrices of `ckpt`, in layer order, and notes for the user.

    Unknown `model_type` falls back to every 2-D `*.weight` (kind = the name after
    the layer index), with a note saying so.
    """
    spec = ARCHITECTURES.get(ckpt.model_type or "")
    notes: list[str] = []
    if spec is None:
        refs = _fallback(ckpt, include_embeddings)
        notes.append(
            f"unknown model_type {ckpt.model_type!r} in {ckpt.path}: analysing every 2-D "
            f"*.weight by name ({len(refs)} matrices); kinds are module names"
        )
    else:
        refs = _from_spec(ckpt, spec, include_embeddings)
    biases = [n for n in ckpt.names() if n.endswith(".bias") and len(ckpt.shape(n)) == 1]
    if biases:
        notes.append(f"{len(biases)} bias vectors present (ignored)")
    return sorted(refs, key=lambda r: (r.layer, _kind_order(r.kind), r.name)), notes


def _kind_order(kind: str) -> int:
    order = ("embed", "q", "k", "v", "o", "gate", "up", "down", "lm_head")
    return order.index(kind) if kind in order else len(order)


def _from_spec(ckpt: Checkpoint, spec: dict, include_embeddings: bool) -> list[MatrixRef]:
    prefix = spec["layer_prefix"]
    transposed = spec.get("transposed", False)
    refs: list[MatrixRef] = []
    for name in ckpt.names():
        shape = ckpt.shape(name)
        for suffix, kind in spec["matrices"].items():
            match = re.fullmatch(prefix + re.escape(suffix), name)
            if match and len(shape) == 2:
                logical = (shape[1], shape[0]) if transposed else shape
                refs.append(MatrixRef(name, name, int(match.group(1)), kind, logical, transposed))
        for suffix, fused in spec["fused"].items():
            match = re.fullmatch(prefix + re.escape(suffix), name)
            if match and len(shape) == 2:
                refs.extend(_split(name, int(match.group(1)), shape, fused, ckpt.config))
        if include_embeddings:
            for pattern, kind in spec["embeddings"].items():
                if re.fullmatch(pattern, name) and len(shape) == 2:
                    refs.append(MatrixRef(name, name, NO_LAYER, kind, shape))
    return refs


def _split(name: str, layer: int, shape: tuple[int, ...], fused: dict, config: dict) -> list[MatrixRef]:
    layout, kinds = fused["layout"], fused["kinds"]
    if layout in ("conv1d_thirds", "neox_qkv", "halves"):
        transpose = layout == "conv1d_thirds"
        rows, cols = (shape[1], shape[0]) if transpose else shape
        part = rows // len(kinds)
        if layout == "neox_qkv":
            heads = int(config.get("num_attention_heads", 1))
            return [MatrixRef(f"{name}:{k}", name, layer, k, (part, cols), neox_part=i, neox_heads=heads)
                    for i, k in enumerate(kinds)]
        return [MatrixRef(f"{name}:{k}", name, layer, k, (part, cols), transpose, (i * part, (i + 1) * part))
                for i, k in enumerate(kinds)]
    if layout == "qkv":
        rows, cols = shape
        heads = int(config.get("num_attention_heads", 1))
        kv_heads = int(config.get("num_key_value_heads", heads))
        head_dim = int(config.get("head_dim") or rows // (heads + 2 * kv_heads))
        sizes = [heads * head_dim, kv_heads * head_dim, kv_heads * head_dim]
        starts = [0, sizes[0], sizes[0] + sizes[1]]
        return [MatrixRef(f"{name}:{k}", name, layer, k, (n, cols), rows=(s, s + n))
                for k, s, n in zip(kinds, starts, sizes)]
    raise ValueError(f"unknown fused layout {layout!r}")


def _fallback(ckpt: Checkpoint, include_embeddings: bool) -> list[MatrixRef]:
    refs = []
    for name in ckpt.names():
        shape = ckpt.shape(name)
        if not name.endswith(".weight") or len(shape) != 2:
            continue
        match = re.search(r"\.(\d+)\.(.+)\.weight$", name)
        if match:
            refs.append(MatrixRef(name, name, int(match.group(1)), match.group(2), shape))
        elif include_embeddings:
            refs.append(MatrixRef(name, name, NO_LAYER, name.removesuffix(".weight"), shape))
    return refs
