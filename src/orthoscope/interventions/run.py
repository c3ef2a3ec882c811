"""Entry points: intervene on checkpoints given by path, to disk or in memory."""

from __future__ import annotations

from pathlib import Path

from orthoscope.interventions.apply import Progress, patch_model, write_intervened
from orthoscope.interventions.base import Op
from orthoscope.interventions.options import InterveneOptions
from orthoscope.pipeline.pairing import Plan, make_plan
from orthoscope.sources import open_checkpoint


def plan_for(base: str | Path, post: str | Path, layers: set[int] | None = None,
             kinds: set[str] | None = None) -> Plan:
    """The matrices of `post` to intervene on, paired with `base` (a post stored relative to it opens too)."""
    base_ckpt = open_checkpoint(base)
    return make_plan(base_ckpt, [open_checkpoint(post, base=base_ckpt)], layers, kinds)


def intervene(base: str | Path, post: str | Path, op: str | Op | InterveneOptions, out: str | Path, *,
              progress: Progress | None = None, **settings) -> Path:
    """Write `post` with an op applied to the selected matrices as a new checkpoint in `out`.

    `op` is an `InterveneOptions`, or for convenience an op name or `Op` with the other
    fields as keywords (`scale`, `t`, `seed`, `layers`, `kinds`).

    >>> import tempfile
    >>> from orthoscope.lab.shipped import shipped_family
    >>> family, folder = shipped_family(), Path(tempfile.mkdtemp())
    >>> out = intervene(family["base"], family["instruct"], "interpolate", folder / "half", t=0.5, kinds={"q"})
    >>> sorted(p.name for p in out.iterdir())[:3]
    ['config.json', 'generation_config.json', 'model.safetensors']
    """
    options = op if isinstance(op, InterveneOptions) else InterveneOptions(op, **settings)
    return write_intervened(plan_for(base, post, options.layers, options.kinds), options.op, out, progress)


def load_patched(base: str | Path, post: str | Path, op: Op, layers: set[int] | None = None,
                 kinds: set[str] | None = None, progress: Progress | None = None):
    """(model, tokenizer): the post model loaded and patched in memory.

    >>> from orthoscope.lab.shipped import shipped_family
    >>> family = shipped_family()
    >>> from orthoscope.interventions.registry import make_op
    >>> model, tok = load_patched(family["base"], family["cot"], make_op("break-left"), layers={0}, kinds={"o"})
    >>> model.model.layers[0].self_attn.o_proj.weight.shape
    torch.Size([96, 96])
    """
    from orthoscope.evaluation.models import load_model

    model, tokenizer = load_model(post)
    return patch_model(model, plan_for(base, post, layers, kinds), op, progress), tokenizer
