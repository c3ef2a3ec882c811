"""Where the per-matrix work runs: one small interface, one module per executor.

An executor takes the plan, the jobs (one per matrix, `orthoscope.pipeline.work.Job`),
the worker settings and a callback, and hands every `JobResult` to the callback as it
finishes (any order); the callback stores it, so every executor fills the same
resumable run folder. Each executor owns its options; `workers`, the jobs at once, is
every executor's (local: lanes in this process, one thread each, `executors.workers`;
Ray: worker processes of the local cluster it starts). Adding one is a module with a
dataclass implementing `Executor` and a line in `EXECUTORS`.

>>> make_executor("ray", workers=4), make_executor("local", workers=2)
(RayExecutor(address=None, workers=4), LocalExecutor(workers=2))
>>> make_executor("local", address="ray://head:10001")
Traceback (most recent call last):
...
orthoscope.errors.OrthoscopeError: --address applies to --executor ray only
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from orthoscope.errors import OrthoscopeError
from orthoscope.pipeline.executors.local import LocalExecutor
from orthoscope.pipeline.executors.ray import RayExecutor

if TYPE_CHECKING:
    from orthoscope.pipeline.pairing import Plan
    from orthoscope.pipeline.work import Job, OnResult, Settings


@runtime_checkable
class Executor(Protocol):
    """Runs jobs and hands each result to `on_result`."""

    name: str

    def device(self, requested: str) -> str:
        """The device string workers use (checked where this executor can check it)."""

    def run(self, plan: Plan, jobs: Sequence[Job], settings: Settings, on_result: OnResult) -> None:
        """Run every job; results go to `on_result(job, result)` as they finish."""

    def describe(self) -> dict:
        """What summary.json records about the executor."""


EXECUTORS: dict[str, type] = {"local": LocalExecutor, "ray": RayExecutor}


def make_executor(name: str, **options) -> Executor:
    """The executor called `name` with its own options (None values are left at their defaults)."""
    if name not in EXECUTORS:
        raise OrthoscopeError(f"unknown executor {name!r} (use {' or '.join(EXECUTORS)})")
    cls = EXECUTORS[name]
    own = {f.name for f in dataclasses.fields(cls) if f.init}
    given = {k: v for k, v in options.items() if v is not None}
    for option in given:
        if option not in own:
            owners = [n for n, c in EXECUTORS.items() if option in {f.name for f in dataclasses.fields(c) if f.init}]
            where = " or ".join(f"--executor {n}" for n in owners) or "no executor"
            raise OrthoscopeError(f"--{option.replace('_', '-')} applies to {where} only")
    return cls(**given)


__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor", "make_executor"]
