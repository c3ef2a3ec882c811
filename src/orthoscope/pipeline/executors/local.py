"""The local executor: every job in this process, in plan order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

from orthoscope.kernels import resolve_device
from orthoscope.pipeline.work import Job, OnResult, Settings, analyse, make_cache


@dataclass(frozen=True)
class LocalExecutor:
    """Runs the jobs one after the other here (no options).

    >>> LocalExecutor().describe()
    {'executor': 'local'}
    """

    name: ClassVar[str] = "local"

    def device(self, requested: str) -> str:
        return str(resolve_device(requested))  # this process computes: the device must exist here

    def run(self, plan, jobs: Sequence[Job], settings: Settings, on_result: OnResult) -> None:
        cache = make_cache(settings)
        for job in jobs:
            on_result(job, analyse(plan.base, plan.posts, job, settings, cache))

    def describe(self) -> dict:
        return {"executor": self.name}
