"""Progress of a run from Python: a rich bar over matrices, shown only on long runs and where a person sees it.

`compare(..., progress=True)` (the default) shows the bar once the run has lasted
`DELAY_S` seconds, on a terminal or in a notebook (never into a log file or a captured
stream); `progress=False` shows nothing; a callable `progress(done, total, name)` gets
every step instead (the CLI passes its own bar).

>>> bar = AutoProgress(interactive=False)
>>> bar(1, 3, "q_proj"); bar.close(); bar.shown
False
"""

from __future__ import annotations

import time
from collections.abc import Callable

Progress = Callable[[int, int, str], None]
DELAY_S = 2.0


class AutoProgress:
    """A callback that starts a rich bar on stderr after `delay` seconds (if `interactive`), then updates it."""

    def __init__(self, delay: float = DELAY_S, interactive: bool | None = None):
        self.delay, self.started = delay, time.monotonic()
        self.interactive, self.bar, self.task = interactive, None, None

    @property
    def shown(self) -> bool:
        return self.bar is not None

    def __call__(self, done: int, total: int, name: str) -> None:
        if self.bar is None:
            if done >= total or time.monotonic() - self.started < self.delay or not self._start():
                return
        self.bar.update(self.task, completed=done, total=total, description=name[-40:])

    def _start(self) -> bool:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        if self.interactive is False or (self.interactive is None and not (console.is_terminal or console.is_jupyter)):
            self.interactive = False
            return False
        self.bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                            TextColumn("eta"), TimeRemainingColumn(), console=console, transient=True)
        self.bar.start()
        self.task = self.bar.add_task("matrices", total=None)
        return True

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def make_progress(progress: bool | Progress | None) -> tuple[Progress | None, Callable[[], None]]:
    """(callback or None, close) for `compare`'s `progress` argument: True, False/None or a callable."""
    if callable(progress):
        return progress, lambda: None
    if not progress:
        return None, lambda: None
    bar = AutoProgress()
    return bar, bar.close
