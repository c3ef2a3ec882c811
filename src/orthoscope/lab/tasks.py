"""The lab's task suite: held-out problems of the world a lab model was trained in, for `eval` and `experiment`.

A lab checkpoint records its world in orthoscope_lab.json; its tasks, held-out text
and training block are the defaults `experiment` uses for it.

>>> from orthoscope.lab.shipped import shipped_family
>>> defaults = LAB_SUITE.defaults(shipped_family()["instruct"], seed=0)
>>> defaults.tasks, defaults.ppl_block, len(defaults.text) > 1000
(('lab-arith', 'lab-cot', 'lab-facts'), 64, True)
"""

from __future__ import annotations

from pathlib import Path

from orthoscope.errors import OrthoscopeError
from orthoscope.evaluation.tasks import Defaults, Task
from orthoscope.lab.build import lab_block, lab_world
from orthoscope.lab.corpus import held_out_problems, held_out_text
from orthoscope.lab.real import MARKER  # written by `orthoscope lab` beside every lab checkpoint

LAB_TASKS = {"lab-arith": 6, "lab-cot": 90, "lab-facts": 8}  # task -> max new tokens
WORLD_TASKS = ("lab-facts",)  # ask about the lab world's invented entities: need a lab model


def is_lab_model(path: str | Path) -> bool:
    """Whether `path` is a lab checkpoint (it records the world its facts come from)."""
    return (Path(path) / MARKER).is_file()


class LabSuite:
    """lab-arith, lab-cot and lab-facts on the held-out problems of a model's world (`evaluation.Suite`)."""

    names = tuple(LAB_TASKS)

    def check(self, task: str, model: str | Path) -> None:
        """lab-facts asks about the invented facts of a lab world: only a lab model can answer it.

        >>> LAB_SUITE.check("lab-facts", "/tmp")
        Traceback (most recent call last):
        ...
        orthoscope.errors.OrthoscopeError: --task lab-facts asks about the lab world's invented facts, but /tmp \
is not a lab model (no orthoscope_lab.json); use lab-arith, lab-cot or ppl:FILE
        """
        if task in WORLD_TASKS and not is_lab_model(model):
            raise OrthoscopeError(f"--task {task} asks about the lab world's invented facts, but {model} is not a "
                                  f"lab model (no {MARKER}); use lab-arith, lab-cot or ppl:FILE")

    def tasks(self, model: str | Path, seed: int) -> dict[str, Task]:
        world = lab_world(model, seed)
        return {name: Task(tokens, lambda limit, name=name: held_out_problems(world, name, limit))
                for name, tokens in LAB_TASKS.items()}

    def defaults(self, model: str | Path, seed: int) -> Defaults:
        """A lab model: every lab task, the held-out text of its world, its training block; else nothing."""
        if not is_lab_model(model):
            return Defaults()
        return Defaults(tuple(LAB_TASKS), held_out_text(lab_world(model, seed), seed), lab_block(model))


LAB_SUITE = LabSuite()
