"""Build intervened models: streamed to a new checkpoint on disk, or patched into a loaded model."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file

from orthoscope.architectures import MatrixRef, read_matrix, write_matrix
from orthoscope.errors import OrthoscopeError
from orthoscope.interventions.registry import Op, apply_op, apply_op_to_factors
from orthoscope.kernels import SVD, svd
from orthoscope.pipeline.measure import null_generator
from orthoscope.pipeline.pairing import Plan

MARKER = "orthoscope_intervention.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
Progress = Callable[[int, int, str], None]


def pair_factors(plan: Plan) -> dict[str, tuple[SVD, SVD]]:
    """Float64 thin SVDs of every selected (base, post) matrix pair, for repeated patching."""
    return {ref.name: (svd(read_matrix(plan.base, ref).double()), svd(read_matrix(plan.posts[0], ref).double()))
            for ref in plan.refs}


def new_matrix(plan: Plan, op: Op, ref: MatrixRef) -> torch.Tensor:
    """The intervened matrix `ref` of the plan's (first) post model."""
    W_b, W_p = read_matrix(plan.base, ref), read_matrix(plan.posts[0], ref)
    return apply_op(op, W_b, W_p, null_generator(op.seed, ref.name))


def patch_model(model: torch.nn.Module, plan: Plan, op: Op, progress: Progress | None = None,
                factors: dict[str, tuple[SVD, SVD]] | None = None) -> torch.nn.Module:
    """Overwrite the selected matrices of a loaded post model in place (no disk).

    `factors` (matrix name -> float64 base and post SVDs) skips the SVDs when the
    same pair is patched with many ops.
    """
    params = dict(model.named_parameters())
    with torch.no_grad():
        for done, ref in enumerate(plan.refs, start=1):
            if ref.tensor not in params:
                raise OrthoscopeError(f"the loaded model has no parameter {ref.tensor!r}")
            if factors is not None and ref.name in factors:
                W = apply_op_to_factors(op, *factors[ref.name], null_generator(op.seed, ref.name))
            else:
                W = new_matrix(plan, op, ref)
            write_matrix(params[ref.tensor].data, ref, W)
            if progress:
                progress(done, len(plan.refs), ref.name)
    return model


def write_intervened(plan: Plan, op: Op, out: str | Path, progress: Progress | None = None) -> Path:
    """Write the post model with `op` applied as a new HF checkpoint in `out`, atomically.

    Tensors are streamed shard by shard in the post's layout and dtype; tensors that
    are not analysed are copied unchanged; config and tokenizer files come along.
    The folder appears under its name only once complete.
    """
    out = Path(out)
    if out.exists():
        raise OrthoscopeError(f"output folder already exists: {out} (remove it or choose another)")
    post = plan.posts[0]
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    refs = _by_tensor(plan.refs)
    shards = _shard_names(post)
    weight_map, done = {}, 0
    for source, names in _group_by_file(post).items():
        tensors = {}
        for name in names:
            tensor = post.read(name).clone()
            for ref in refs.get(name, []):
                write_matrix(tensor, ref, new_matrix(plan, op, ref))
                done += 1
                if progress:
                    progress(done, len(plan.refs), ref.name)
            tensors[name] = tensor.contiguous()
            weight_map[name] = shards[source]
        save_file(tensors, tmp / shards[source], metadata={"format": "pt"})
        del tensors
    _copy_side_files(post.path, tmp)
    if len(shards) > 1:
        (tmp / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2))
    (tmp / MARKER).write_text(json.dumps({"op": op.name, "label": op.label(), "scale": op.scale, "t": op.t,
                                          "seed": op.seed, "base": plan.base.spec, "post": post.spec,
                                          "matrices": [r.name for r in plan.refs]}, indent=2))
    os.replace(tmp, out)
    return out


def _by_tensor(refs: list[MatrixRef]) -> dict[str, list[MatrixRef]]:
    grouped: dict[str, list[MatrixRef]] = {}
    for ref in refs:
        grouped.setdefault(ref.tensor, []).append(ref)
    return grouped


def _group_by_file(ckpt) -> dict[Path, list[str]]:
    return ckpt.shards()


def _shard_names(ckpt) -> dict[Path, str]:
    files = sorted(ckpt.shards())
    if len(files) == 1:
        return {files[0]: "model.safetensors"}
    if all(f.suffix == ".safetensors" for f in files):
        return {f: f.name for f in files}
    return {f: f"model-{i:05d}-of-{len(files):05d}.safetensors" for i, f in enumerate(files, start=1)}


def _copy_side_files(src: Path, dst: Path) -> None:
    for item in src.iterdir():
        if item.is_file() and not item.name.endswith(WEIGHT_SUFFIXES) and not item.name.endswith(".index.json") \
                and item.name != MARKER:
            shutil.copy(item, dst / item.name)
