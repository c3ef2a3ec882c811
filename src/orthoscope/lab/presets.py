"""Sizes and schedules of the lab: `tiny` (tests, shipped default) and `small` (results)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from orthoscope.errors import OrthoscopeError


@dataclass(frozen=True)
class Preset:
    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    block: int
    batch: int
    pretrain_steps: int
    pretrain_lr: float
    post_steps: int
    post_lr: float
    post_examples: int
    save_every: int
    eval_problems: int
    max_operand: int = 99
    threads: int = 2

    def as_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "tiny": Preset("tiny", hidden=96, layers=3, heads=4, kv_heads=2, intermediate=288, block=64, batch=16,
                   pretrain_steps=1200, pretrain_lr=3e-3, post_steps=200, post_lr=5e-4, post_examples=4000,
                   save_every=50, eval_problems=100, max_operand=49, threads=1),
    "small": Preset("small", hidden=256, layers=4, heads=8, kv_heads=4, intermediate=704, block=128, batch=8,
                    pretrain_steps=2000, pretrain_lr=1.5e-3, post_steps=400, post_lr=3e-4, post_examples=8000,
                    save_every=50, eval_problems=200),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise OrthoscopeError(f"unknown preset {name!r} (use one of {', '.join(PRESETS)})")
    return PRESETS[name]
