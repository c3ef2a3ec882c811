"""Enumerate a checkpoint's analysed matrices using the maps in `maps.py`."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import torch

from orthoscope.architectures.maps import FAMILIES, Family, Fused, kind_order
from orthoscope.errors import OrthoscopeError, SourceError
from orthoscope.sources import Checkpoint
from orthoscope.sources.config import block_size, check_scale_grid, positive_int

NO_LAYER = -1
SCALE_SUFFIX = "_scale_inv"  # `<name>.weight_scale_inv`: block-FP8 factors of `<name>.weight`


@dataclass(frozen=True)
class MatrixRef:
    """One analysed matrix: which stored tensor, and how to cut it to (out, in).

    Reading applies, in order: `expert_slice` (index along dim 0 of a 3-D
    stacked-experts tensor), `transpose` (stored (in, out)), `neox_part` (q, k or
    v from GPT-NeoX's per-head interleaving), then `rows` with `row_step` (output
    rows of the logical matrix: a fused part, every other row of gpt-oss's
    interleaved gate|up, or the common vocabulary of two embeddings). A
    block-quantized FP8 weight (DeepSeek-V3, Qwen3-FP8) is read dequantized
    (float32: stored value x its block's `weight_scale_inv`).
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
    shared_expert: bool = False  # a shared (always-on) expert of an MoE layer (its expert is None)
    expert_slice: int | None = None  # index along dim 0 of a stored (E, ., .) stacked-experts tensor
    row_step: int = 1  # with `rows`: take every row_step-th row from rows[0]
    scale: str | None = None  # block-FP8: the `*.weight_scale_inv` tensor (one factor per block)
    scale_block: tuple[int, int] = (128, 128)  # its block size (quantization_config.weight_block_size)
    tied: str | None = None  # an lm_head: what a checkpoint without `tensor` reads instead (its tied embedding)

    @property
    def key(self) -> tuple[int, str, int | None, bool]:
        """(layer, kind, expert, shared_expert): the same logical matrix whatever the storage.

        A Mixtral expert saved per expert (`block_sparse_moe.experts.3.w1.weight`) and
        the same expert in a loaded transformers-5 model (`mlp.experts.gate_up_proj`,
        part 3 gate) differ in `name` and `tensor` but share this key.

        >>> MatrixRef("m:3:gate", "m", 1, "gate", (8, 4), expert=3, expert_slice=3).key
        (1, 'gate', 3, False)
        """
        return (self.layer, self.kind, self.expert, self.shared_expert)

    def with_rows(self, count: int) -> MatrixRef:
        """Keep the first `count` rows (common vocabulary of two embeddings)."""
        start = self.rows[0] if self.rows else 0
        return replace(self, rows=(start, start + count * self.row_step), shape=(count, self.shape[1]))


def read_matrix(ckpt: Checkpoint, ref: MatrixRef) -> torch.Tensor:
    """The (out, in) matrix `ref` describes, read from `ckpt`, in its stored dtype.

    >>> stacked = torch.arange(24.).reshape(2, 3, 4)     # 2 experts stored (E, in, out)
    >>> ref = MatrixRef("x:1:up", "x", 0, "up", (2, 3), transpose=True, rows=(1, 4), row_step=2,
    ...                 expert=1, expert_slice=1)
    >>> cut_matrix(stacked, ref)                          # expert 1, transposed, odd rows
    tensor([[13., 17., 21.],
            [15., 19., 23.]])
    """
    tensor = ckpt.read(stored_tensor(ckpt, ref))
    if ref.scale is not None:
        tensor = dequantize_blocks(tensor, ckpt.read(ref.scale), ref.scale_block)
    return cut_matrix(tensor, ref)


def stored_tensor(ckpt: Checkpoint, ref: MatrixRef) -> str:
    """The tensor `ref` is read from in `ckpt`: its own, or for an lm_head that `ckpt` ties to its
    embedding (no lm_head tensor stored), that embedding (`ref.tied`).

    >>> from orthoscope.sources import open_checkpoint
    >>> ckpt = open_checkpoint({"model.embed_tokens.weight": torch.ones(4, 2)})
    >>> stored_tensor(ckpt, MatrixRef("lm_head.weight", "lm_head.weight", -1, "lm_head", (4, 2),
    ...                               tied="model.embed_tokens.weight"))
    'model.embed_tokens.weight'
    """
    if ref.tied is not None and ref.tensor not in ckpt.names():
        return ref.tied
    return ref.tensor


def prefetch_matrix(ckpt: Checkpoint, ref: MatrixRef) -> None:
    """Start reading what `read_matrix(ckpt, ref)` will read (a hint to the OS; returns at once)."""
    ckpt.prefetch(stored_tensor(ckpt, ref))
    if ref.scale is not None:
        ckpt.prefetch(ref.scale)


def dequantize_blocks(tensor: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """Block-FP8 to float32: each (block[0], block[1]) tile times its factor in `scale_inv`.

    >>> dequantize_blocks(torch.ones(3, 5), torch.tensor([[1., 2., 3.], [4., 5., 6.]]), (2, 2))
    tensor([[1., 1., 2., 2., 3.],
            [1., 1., 2., 2., 3.],
            [4., 4., 5., 5., 6.]])
    """
    rows, cols = tensor.shape
    factors = scale_inv.float().repeat_interleave(block[0], 0)[:rows].repeat_interleave(block[1], 1)[:, :cols]
    return tensor.float() * factors


def cut_matrix(tensor: torch.Tensor, ref: MatrixRef) -> torch.Tensor:
    """`ref`'s (out, in) matrix cut from its stored `tensor` (what read_matrix returns)."""
    view = _logical(tensor, ref)
    if ref.neox_part is not None:
        rows, cols = view.shape
        per_head = view.reshape(ref.neox_heads, 3, rows // (3 * ref.neox_heads), cols)
        view = per_head[:, ref.neox_part].reshape(-1, cols)
    if ref.rows is not None:
        view = view[ref.rows[0] : ref.rows[1] : ref.row_step]
    return view.contiguous()


def write_matrix(tensor: torch.Tensor, ref: MatrixRef, W: torch.Tensor) -> None:
    """Write the (out, in) matrix `W` into the stored `tensor` in place: the inverse of read_matrix.

    >>> stacked = torch.zeros(2, 3, 4)
    >>> ref = MatrixRef("x:1:gate", "x", 0, "gate", (2, 3), transpose=True, rows=(0, 4), row_step=2,
    ...                 expert=1, expert_slice=1)
    >>> write_matrix(stacked, ref, torch.ones(2, 3))
    >>> stacked[1]
    tensor([[1., 0., 1., 0.],
            [1., 0., 1., 0.],
            [1., 0., 1., 0.]])
    >>> bool(stacked[0].eq(0).all())
    True
    """
    if ref.scale is not None:
        raise OrthoscopeError(f"cannot write {ref.name}: block-quantized FP8 weights are read-only here "
                              "(dequantize the checkpoint first)")
    view = _logical(tensor, ref)
    W = W.to(tensor.dtype)
    if ref.neox_part is not None:
        rows, cols = view.shape
        per_head = view.view(ref.neox_heads, 3, rows // (3 * ref.neox_heads), cols)
        per_head[:, ref.neox_part] = W.reshape(ref.neox_heads, -1, cols)
    elif ref.rows is not None:
        view[ref.rows[0] : ref.rows[1] : ref.row_step] = W
    else:
        view.copy_(W)


def _logical(tensor: torch.Tensor, ref: MatrixRef) -> torch.Tensor:
    """A view of the stored tensor as (out, in) rows, before the part's rows are cut."""
    if ref.expert_slice is not None:
        tensor = tensor[ref.expert_slice]
    return tensor.T if ref.transpose else tensor


def find_matrices(ckpt: Checkpoint, include_embeddings: bool = False) -> tuple[list[MatrixRef], list[str]]:
    """All analysed matrices of `ckpt`, in layer order, and notes for the user.

    Within a layer, matrices follow KINDS, then expert number (dense and shared
    first). Unknown `model_type` falls back to every 2-D floating-point `*.weight`
    (kind = the name after the layer index), with a note saying so.
    """
    family = FAMILIES.get(ckpt.model_type or "")
    notes: list[str] = []
    biases = [n for n in ckpt.names() if n.endswith("bias")]
    if family is None:
        refs, skipped = _fallback(ckpt, include_embeddings)
        notes.append(
            f"unknown model_type {ckpt.model_type!r} in {ckpt.path}: analysing every 2-D "
            f"*.weight by name ({len(refs)} matrices); kinds are module names"
        )
        if skipped:
            notes.append(f"{len(skipped)} non-floating-point 2-D tensors skipped (e.g. {skipped[0]})")
    else:
        refs, unmapped = _from_family(ckpt, family, include_embeddings)
        unmapped = [n for n in unmapped if not n.endswith("bias")]
        if unmapped:
            many = len(unmapped) > 1
            notes.append(f"{len(unmapped)} {'tensors' if many else 'tensor'} of 2 or more dimensions "
                         f"{'are' if many else 'is'} not in the {ckpt.model_type} map and not analysed "
                         f"(e.g. {unmapped[0]})")
    if biases:
        notes.append(f"{len(biases)} bias vectors present (ignored)")
    return sorted(refs, key=_order), notes


def _order(ref: MatrixRef) -> tuple:
    return (ref.layer, kind_order(ref.kind), ref.expert is not None, ref.expert or 0, ref.name)


def _from_family(ckpt: Checkpoint, family: Family, include_embeddings: bool) -> tuple[list[MatrixRef], list[str]]:
    prefix = re.compile(family.layer_prefix)
    experts = family.expert_patterns()
    refs: list[MatrixRef] = []
    unmapped: list[str] = []
    names = set(ckpt.names())
    where = f"config of {ckpt.path if ckpt.path is not None else ckpt.spec}"
    config = {**ckpt.config, "_where": where}
    block = block_size(ckpt.config, where)
    for name in ckpt.names():
        shape = ckpt.shape(name)
        found = _layer_matrices(name, shape, prefix, family, experts, config)
        if found and len(shape) == 2 and name + SCALE_SUFFIX in names:
            check_scale_grid(shape, ckpt.shape(name + SCALE_SUFFIX), block, name, where)
            found = [replace(ref, scale=name + SCALE_SUFFIX, scale_block=block) for ref in found]
        if name.endswith(SCALE_SUFFIX) and name.removesuffix(SCALE_SUFFIX) in names:
            continue  # read with its weight
        if found is None and include_embeddings:
            kind = next((k for p, k in family.embeddings.items() if re.fullmatch(p, name)), None)
            found = [MatrixRef(name, name, NO_LAYER, kind, shape)] if kind and len(shape) == 2 else None
        if found is None and len(shape) >= 2 and not any(re.fullmatch(p, name) for p in family.embeddings):
            unmapped.append(name)
        refs.extend(found or [])
    return refs, unmapped


def _layer_matrices(name: str, shape: tuple[int, ...], prefix: re.Pattern, family: Family,
                    experts: dict[str, tuple[re.Pattern, str]], config: dict) -> list[MatrixRef] | None:
    """The matrices held by tensor `name` (None: it is not a per-layer tensor of the map)."""
    match = prefix.match(name)
    if match is None:
        return None
    layer, suffix = int(match.group(1)), name[match.end():]
    if suffix in family.fused:
        fused = family.fused[suffix]
        return _split(name, layer, shape, fused, config) if len(shape) == fused.ndim else None
    if len(shape) != 2:
        return None
    logical = (shape[1], shape[0]) if family.transposed else shape
    if suffix in family.matrices:  # a stored name never holds the "{expert}" placeholder
        return [MatrixRef(name, name, layer, family.matrices[suffix], logical, family.transposed)]
    if suffix in family.shared:
        return [MatrixRef(name, name, layer, family.shared[suffix], logical, family.transposed,
                          shared_expert=True)]
    for pattern, kind in experts.values():
        hit = pattern.fullmatch(suffix)
        if hit:
            return [MatrixRef(name, name, layer, kind, logical, family.transposed, expert=int(hit.group(1)))]
    return None


def _split(name: str, layer: int, shape: tuple[int, ...], fused: Fused, config: dict) -> list[MatrixRef]:
    """One ref per part (and per expert) of a fused tensor."""
    if not fused.experts:
        return _parts(name, layer, shape, fused, config, None)
    return [ref for e in range(shape[0]) for ref in _parts(f"{name}:{e}", layer, shape[1:], fused, config, e)]


def _parts(name: str, layer: int, shape: tuple[int, ...], fused: Fused, config: dict,
           expert: int | None) -> list[MatrixRef]:
    kinds, transpose = fused.kinds, fused.transposed
    rows, cols = (shape[1], shape[0]) if transpose else shape
    common = dict(transpose=transpose, expert=expert, expert_slice=expert)
    if len(kinds) == 1:
        return [MatrixRef(name, name.split(":")[0], layer, kinds[0], (rows, cols), **common)]
    tensor = name.split(":")[0]
    where = config.get("_where", "config")
    if fused.split == "neox_qkv":
        heads = positive_int(config, "num_attention_heads", where, 1)
        if rows % (3 * heads):
            raise SourceError(f"{where}: num_attention_heads {heads} does not divide {tensor} ({rows} rows) "
                              "into heads of q, k and v")
        part = rows // 3
        return [MatrixRef(f"{name}:{k}", tensor, layer, k, (part, cols), neox_part=i, neox_heads=heads, **common)
                for i, k in enumerate(kinds)]
    if fused.split == "qkv":
        heads = positive_int(config, "num_attention_heads", where, 1)
        kv_heads = positive_int(config, "num_key_value_heads", where, heads)
        head_dim = positive_int(config, "head_dim", where, None) or rows // (heads + 2 * kv_heads)
        sizes = [heads * head_dim, kv_heads * head_dim, kv_heads * head_dim]
        if sum(sizes) != rows:
            raise SourceError(f"{where}: {heads} heads and {kv_heads} key/value heads of head_dim {head_dim} make "
                              f"{sum(sizes)} rows of q, k and v, but {tensor} has {rows}")
        starts = [0, sizes[0], sizes[0] + sizes[1]]
        return [MatrixRef(f"{name}:{k}", tensor, layer, k, (n, cols), rows=(s, s + n), **common)
                for k, s, n in zip(kinds, starts, sizes)]
    part = rows // len(kinds)
    if fused.split == "interleaved":
        return [MatrixRef(f"{name}:{k}", tensor, layer, k, (part, cols), rows=(i, rows), row_step=len(kinds),
                          **common) for i, k in enumerate(kinds)]
    return [MatrixRef(f"{name}:{k}", tensor, layer, k, (part, cols), rows=(i * part, (i + 1) * part), **common)
            for i, k in enumerate(kinds)]


def _fallback(ckpt: Checkpoint, include_embeddings: bool) -> tuple[list[MatrixRef], list[str]]:
    """Every 2-D floating-point *.weight; also the names of 2-D non-float tensors skipped."""
    refs, skipped = [], []
    dtype_of = getattr(ckpt, "dtype", None)  # a source that knows stored dtypes from headers
    for name in ckpt.names():
        shape = ckpt.shape(name)
        if not name.endswith(".weight") or len(shape) != 2:
            continue
        dtype = dtype_of(name) if callable(dtype_of) else None
        if dtype is not None and not _is_float(dtype):
            skipped.append(f"{name} ({dtype})")
            continue
        match = re.search(r"\.(\d+)\.(.+)\.weight$", name)
        if match:
            refs.append(MatrixRef(name, name, int(match.group(1)), match.group(2), shape))
        elif include_embeddings:
            refs.append(MatrixRef(name, name, NO_LAYER, name.removesuffix(".weight"), shape))
    return refs, skipped


def _is_float(dtype: torch.dtype | str) -> bool:
    """Real floating point: a torch dtype, or its name, or a safetensors header name (F16, BF16, F8_E4M3).

    >>> [_is_float(d) for d in (torch.bfloat16, "torch.float16", "F8_E4M3", "I64", "BOOL", "C64", torch.int8)]
    [True, True, True, False, False, False, False]
    """
    if isinstance(dtype, torch.dtype):
        return dtype.is_floating_point
    return str(dtype).lower().removeprefix("torch.").startswith(("f", "bf"))
