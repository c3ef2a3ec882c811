"""`LabOptions`: every setting of `orthoscope lab`, validated once, shared by the CLI and `run_lab`.

Without `base` the lab pretrains a preset's base and post-trains its variants
(`build.build_lab`); with `base` it post-trains that real model with the recipes
(`real.build_real_lab`, whose `RealLabOptions` the fields become).

>>> LabOptions(preset="small", threads=2).training.threads
2
>>> LabOptions(base="some/base", steps=10, recipes=["control"]).training.save_every
1
>>> LabOptions(preset="huge")
Traceback (most recent call last):
...
orthoscope.errors.OrthoscopeError: unknown preset 'huge' (use one of tiny, small)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from orthoscope.errors import OrthoscopeError
from orthoscope.lab.presets import Preset, get_preset
from orthoscope.lab.real import RECIPES, RealLabOptions
from orthoscope.pipeline.filters import check_seed, positive_int


@dataclass(frozen=True)
class LabOptions:
    """The settings of a lab run (everything but the output folder); `threads` None: the preset's, or 1."""

    preset: str = "tiny"
    seed: int = 0
    threads: int | None = None
    base: str | None = None
    recipes: tuple[str, ...] | Iterable[str] | None = None
    # the --base settings' defaults are RealLabOptions' own (one place)
    steps: int = RealLabOptions.steps
    save_every: int | None = RealLabOptions.save_every
    lr: float = RealLabOptions.lr
    batch: int = RealLabOptions.batch
    block: int = RealLabOptions.block
    freeze_embeddings: bool = RealLabOptions.freeze_embeddings
    lora: int | None = RealLabOptions.lora
    training: Preset | RealLabOptions = field(init=False, repr=False, compare=False)
    """What trains: the preset (threads applied), or the real base's settings."""

    def __post_init__(self) -> None:
        put = object.__setattr__.__get__(self)  # frozen: normalise in place once
        put("seed", check_seed(self.seed))
        if self.threads is not None and not positive_int(self.threads):
            raise OrthoscopeError(f"bad --threads {self.threads}: must be a positive integer")
        put("recipes", None if self.recipes is None else tuple(self.recipes))
        if self.base is None:
            preset = get_preset(self.preset)
            put("training", preset if self.threads is None else dataclasses.replace(preset, threads=self.threads))
            return
        put("training", RealLabOptions(str(self.base), self.recipes or RECIPES, steps=self.steps,
                                       save_every=self.save_every, lr=self.lr, batch=self.batch, block=self.block,
                                       freeze_embeddings=self.freeze_embeddings, lora=self.lora, seed=self.seed,
                                       threads=self.threads or 1))


def run_lab(out: str | Path, options: LabOptions | None = None, *, log: Callable[[str], None] = print,
            show_progress: bool = True, **settings) -> dict[str, dict[str, float]]:
    """Build (or finish) the lab in `out`; {model: {score: value}} to show: the evaluation of a preset's
    four models, or each recipe's rel_delta, final loss and seconds for a real base.

    `options` or, for convenience, its fields as keywords (`preset="tiny", seed=1`).
    """
    options = options if options is not None else LabOptions(**settings)
    if isinstance(options.training, RealLabOptions):
        from orthoscope.lab.real import build_real_lab

        record = build_real_lab(options.training, out, log, show_progress=show_progress)
        return {name: {"rel_delta": r["rel_delta"], "final_loss": r["final_loss"], "seconds": r["seconds"]}
                for name, r in record["recipes"].items()}
    from orthoscope.lab.build import build_lab

    return build_lab(options.training, out, options.seed, log)
