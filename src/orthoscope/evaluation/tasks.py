"""What evaluation needs to know of a task suite: its task names, their problems and answer lengths.

A suite (the lab's is `orthoscope.lab.tasks.LAB_SUITE`) is handed to the options of
`eval` and `experiment`; evaluation itself knows no suite, only this shape.

>>> from types import SimpleNamespace as Problem
>>> suite = FixedSuite({"add": Task(4, lambda limit: [Problem(prompt="1 + 1 =", answer="2")][:limit])})
>>> suite.names, suite.tasks("any/model", seed=0)["add"].problems(5)[0].answer
(('add',), '2')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from orthoscope.errors import OrthoscopeError


class Example(Protocol):
    """A problem: its prompt and the exact answer expected."""

    prompt: str
    answer: str


@dataclass(frozen=True)
class Task:
    """A task scored by exact match: how many tokens an answer may take, and its first `limit` problems."""

    max_new_tokens: int
    problems: Callable[[int], Sequence[Example]]


@dataclass(frozen=True)
class Defaults:
    """What a suite proposes for a model when the user names nothing: tasks, perplexity text and block."""

    tasks: tuple[str, ...] = ()
    text: str | None = None
    ppl_block: int | None = None


class Suite(Protocol):
    """Named exact-match tasks whose problems may depend on the model (the lab's come from its world)."""

    names: tuple[str, ...]

    def check(self, task: str, model: str | Path) -> None:
        """Raise OrthoscopeError when `model` cannot be asked `task`."""

    def tasks(self, model: str | Path, seed: int) -> Mapping[str, Task]:
        """Every task of the suite for `model` (`seed` where the model records none)."""

    def defaults(self, model: str | Path, seed: int) -> Defaults:
        """What to evaluate `model` on when the user names nothing."""


@dataclass(frozen=True)
class FixedSuite:
    """A suite of tasks that are the same for every model."""

    fixed: Mapping[str, Task] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.fixed)

    def check(self, task: str, model: str | Path) -> None:
        if task not in self.fixed:
            raise OrthoscopeError(f"unknown task {task!r}")

    def tasks(self, model: str | Path, seed: int) -> Mapping[str, Task]:
        return self.fixed

    def defaults(self, model: str | Path, seed: int) -> Defaults:
        return Defaults()


NO_SUITE = FixedSuite()
"""No exact-match tasks (perplexity and lm-eval remain)."""
