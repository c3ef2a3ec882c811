"""Build intervened models: streamed to a new checkpoint on disk, or patched into a loaded model."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from orthoscope.architectures import MatrixRef, read_matrix, write_matrix
from orthoscope.errors import OrthoscopeError
from orthoscope.interventions.base import MatrixPair, Op
from orthoscope.interventions.registry import apply_to_pair
from orthoscope.pipeline.pairing import Plan
from orthoscope.pipeline.progress import Progress
from orthoscope.pipeline.seeds import null_generator

MARKER = "orthoscope_intervention.json"
Diagnostics = dict[str, dict[str, float]]


def matrix_pairs(plan: Plan) -> dict[str, MatrixPair]:
    """Every selected (base, post) matrix pair in float64, its SVDs kept once computed (for many ops)."""
    return {ref.name: MatrixPair(read_matrix(plan.base, ref), read_matrix(plan.posts[0], ref)) for ref in plan.refs}


def new_matrix(plan: Plan, op: Op, ref: MatrixRef, pair: MatrixPair | None = None) -> tuple[torch.Tensor, dict]:
    """The intervened matrix `ref` of the plan's (first) post model (float64), and the op's diagnostics."""
    if pair is None:
        pair = MatrixPair(read_matrix(plan.base, ref), read_matrix(plan.posts[0], ref))
    W = apply_to_pair(op, pair, null_generator(op.seed, ref.name))
    return W, op.spec.diagnostics(op, pair)


def stored(W: torch.Tensor, dtype: torch.dtype, op: Op, ref: MatrixRef, outcome: str) -> torch.Tensor:
    """`W` cast to the storage dtype; a one-line error when any value is not finite there."""
    cast = W.to(dtype)
    if not torch.isfinite(cast).all():
        options = " ".join(f"--{k} {v:g}" for k, v in op.settings().items() if isinstance(v, float))
        raise OrthoscopeError(f"op {op.name}{' ' + options if options else ''} gives non-finite values in "
                              f"{ref.name} (stored as {str(dtype).removeprefix('torch.')}): {outcome}")
    return cast


def patch(model: torch.nn.Module, plan: Plan, op: Op, pairs: dict[str, MatrixPair] | None = None,
          progress: Progress | None = None) -> Diagnostics:
    """Overwrite the selected matrices of a loaded post model in place; the op's diagnostics per matrix.

    `pairs` (from `matrix_pairs`) reuses the SVDs when the same pair is patched
    with many ops. A non-finite result is refused before anything is changed.
    """
    params = dict(model.named_parameters())
    for ref in plan.refs:
        if ref.tensor not in params:
            raise OrthoscopeError(f"the loaded model has no parameter {ref.tensor!r}")
    new, diagnostics = [], {}
    for done, ref in enumerate(plan.refs, start=1):
        W, diagnostics[ref.name] = new_matrix(plan, op, ref, (pairs or {}).get(ref.name))
        target = params[ref.tensor].data
        new.append((target, ref, stored(W, target.dtype, op, ref, "model left unchanged")))
        if progress:
            progress(done, len(plan.refs), ref.name)
    with torch.no_grad():
        for target, ref, W in new:
            write_matrix(target, ref, W)
    return diagnostics


def patch_model(model: torch.nn.Module, plan: Plan, op: Op, progress: Progress | None = None,
                pairs: dict[str, MatrixPair] | None = None) -> torch.nn.Module:
    """`patch`, returning the patched model."""
    patch(model, plan, op, pairs, progress)
    return model


def write_intervened(plan: Plan, op: Op, out: str | Path, progress: Progress | None = None) -> Path:
    """Write the post model with `op` applied as a new HF checkpoint in `out`, atomically.

    Tensors are streamed shard by shard in the post's layout and dtype; tensors that
    are not analysed are copied unchanged; config and tokenizer files come along.
    The folder appears under its name only once complete; on any error (a
    non-finite result, a full disk) nothing is left at `out` or beside it.
    """
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise OrthoscopeError(f"output folder already exists: {out} (remove it or choose another)")
    tmp = out.with_name(f".{out.name}.partial")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    except OSError as error:
        raise OrthoscopeError(f"cannot create the output folder {out}: {error.strerror or error}") from None
    try:
        diagnostics = _write(plan, op, out, tmp, progress)
        manifest = {"op": op.name, "label": op.label(), "formula": op.spec.formula, "settings": op.settings(),
                    "scale": op.scale, "t": op.t, "seed": op.seed, "base": plan.base.spec,
                    "post": plan.posts[0].spec, "matrices": [r.name for r in plan.refs], "diagnostics": diagnostics}
        (tmp / MARKER).write_text(json.dumps(manifest, indent=2))
        os.replace(tmp, out)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OrthoscopeError(f"cannot write {out}: {error.strerror or error}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write(plan: Plan, op: Op, out: Path, tmp: Path, progress: Progress | None) -> Diagnostics:
    post = plan.posts[0]
    refs = _by_tensor(plan.refs)
    shards = _shard_names(post)
    weight_map, diagnostics, done = {}, {}, 0
    for source, names in post.shards().items():
        tensors = {}
        for name in names:
            tensor = post.read(name).clone()
            for ref in refs.get(name, []):
                W, diagnostics[ref.name] = new_matrix(plan, op, ref)
                write_matrix(tensor, ref, stored(W, tensor.dtype, op, ref, f"nothing written at {out}"))
                done += 1
                if progress:
                    progress(done, len(plan.refs), ref.name)
            tensors[name] = tensor.contiguous()
            weight_map[name] = shards[source]
        save_file(tensors, tmp / shards[source], metadata={"format": "pt"})
        del tensors
    _copy_side_files(post, tmp)
    if len(shards) > 1:
        (tmp / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map},
                                                                      indent=2))
    return diagnostics


def _by_tensor(refs: list[MatrixRef]) -> dict[str, list[MatrixRef]]:
    grouped: dict[str, list[MatrixRef]] = {}
    for ref in refs:
        grouped.setdefault(ref.tensor, []).append(ref)
    return grouped


def _shard_names(ckpt) -> dict[Path, str]:
    files = sorted(ckpt.shards())
    if len(files) == 1:
        return {files[0]: "model.safetensors"}
    if all(f.suffix == ".safetensors" for f in files):
        return {f: f.name for f in files}
    return {f: f"model-{i:05d}-of-{len(files):05d}.safetensors" for i, f in enumerate(files, start=1)}


def _copy_side_files(post, dst: Path) -> None:
    """Config, tokenizer and generation files of the post (an adapter's come from its base); a
    model held in memory has none, so its config is written as config.json."""
    files = post.side_files()
    for item in files:
        if item.name != MARKER:  # the post may itself be an intervention's output
            shutil.copy(item, dst / item.name)
    if not any(item.name == "config.json" for item in files) and post.config:
        (dst / "config.json").write_text(json.dumps(post.config, indent=2))
