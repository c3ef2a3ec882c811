"""The local executor: every job in this process, in plan order, the next jobs' bytes read ahead."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from orthoscope.kernels import resolve_device
from orthoscope.pipeline.work import PREFETCH_JOBS, Job, OnResult, Settings, analyse, make_cache, prefetch


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
        for ahead in jobs[:PREFETCH_JOBS]:
            prefetch(plan.base, plan.posts, ahead)
        for k, job in enumerate(jobs):
            if k + PREFETCH_JOBS < len(jobs):  # the next jobs' bytes come in while this one computes
                prefetch(plan.base, plan.posts, jobs[k + PREFETCH_JOBS])
            on_result(job, analyse(plan.base, plan.posts, job, settings, cache))

    def describe(self) -> dict:
        return {"executor": self.name}
