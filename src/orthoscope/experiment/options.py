"""`ExperimentOptions`: every setting of `orthoscope experiment`, validated once, shared by the CLI and
`run_experiment`.

What the user leaves out (tasks, perplexity text, its block) comes from the options'
task suite for the post model: the lab's suite proposes a lab model's tasks, held-out
text and training block.

>>> ExperimentOptions(grid="0.9,1.1", layers="0-1", kinds="q").grid
(0.9, 1.1)
>>> ExperimentOptions(tasks=["gsm9k"])
Traceback (most recent call last):
...
orthoscope.errors.OrthoscopeError: unknown task 'gsm9k' (known: lab-arith, lab-cot, lab-facts; perplexity: --text)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from orthoscope.errors import OrthoscopeError
from orthoscope.evaluation.options import check_limit, read_text
from orthoscope.evaluation.tasks import Suite
from orthoscope.experiment.columns import GRID_OP
from orthoscope.interventions.registry import experiment_conditions, make_op
from orthoscope.lab.tasks import LAB_SUITE
from orthoscope.pipeline.filters import check_seed, user_kinds, user_layers

DEFAULT_GRID = (0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5)
PPL_BLOCK = 128
"""Tokens per perplexity block when the suite proposes none (a lab model: its training block)."""


@dataclass(frozen=True)
class ExperimentOptions:
    """The settings of an experiment (everything but the models and the output folder).

    `text` is the perplexity text itself, or a `Path` to a UTF-8 file holding it;
    `tasks` None asks the suite (all lab tasks for a lab model, none otherwise).
    """

    grid: tuple[float, ...] | str | Iterable[float] = DEFAULT_GRID
    tasks: tuple[str, ...] | Iterable[str] | None = None
    limit: int = 100
    text: str | Path | None = None
    seed: int = 0
    layers: frozenset[int] | str | Iterable[int] | None = None
    kinds: frozenset[str] | str | Iterable[str] | None = None
    suite: Suite = LAB_SUITE

    def __post_init__(self) -> None:
        put = object.__setattr__.__get__(self)  # frozen: normalise in place once
        grid = self.grid if isinstance(self.grid, str) else ",".join(str(c) for c in self.grid)
        put("grid", parse_grid(grid))
        put("seed", check_seed(self.seed))
        experiment_conditions(self.grid, self.seed)  # every op validates its settings
        check_limit(self.limit)
        if self.tasks is not None:
            put("tasks", tuple(self.tasks))
            for task in self.tasks:
                if task not in self.suite.names:
                    raise OrthoscopeError(f"unknown task {task!r} (known: {', '.join(self.suite.names)}; "
                                          "perplexity: --text)")
        if isinstance(self.text, Path):
            put("text", read_text(self.text, "--text"))
        put("layers", user_layers(self.layers))
        put("kinds", user_kinds(self.kinds))


def parse_grid(text: str) -> tuple[float, ...]:
    """--grid: comma-separated swap-sigma scales c, each validated by the op (finite, positive).

    >>> parse_grid("0.9, 1.1")
    (0.9, 1.1)
    >>> parse_grid("1,nan")
    Traceback (most recent call last):
    ...
    orthoscope.errors.OrthoscopeError: bad --grid '1,nan': 'nan' is not a finite positive scale c
    """
    values = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            op = make_op(GRID_OP, item)
        except OrthoscopeError:
            op = None
        if op is None or op.scale is None:
            raise OrthoscopeError(f"bad --grid {text!r}: {item!r} is not a finite positive scale c")
        values.append(op.scale)
    if not values:
        raise OrthoscopeError(f"bad --grid {text!r}: give at least one scale, e.g. 0.9,1.0,1.1")
    return tuple(values)
