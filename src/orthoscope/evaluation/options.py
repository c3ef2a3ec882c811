"""`EvalOptions`: every setting of `orthoscope eval`, validated once, shared by the CLI and `evaluate_model`;
and the checks `experiment` shares with it (limits, perplexity text files).

>>> EvalOptions(tasks=["ppl:/nonexistent.txt"])
Traceback (most recent call last):
...
orthoscope.errors.OrthoscopeError: text file for ppl:/nonexistent.txt does not exist: /nonexistent.txt
>>> EvalOptions(lm_eval="arc_easy, mmlu", limit=5).lm_eval
('arc_easy', 'mmlu')
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from orthoscope.errors import OrthoscopeError
from orthoscope.evaluation.tasks import NO_SUITE, Suite
from orthoscope.pipeline.filters import check_seed, positive_int

PPL = "ppl:"  # a task `ppl:FILE`: the perplexity of the model on that text file


@dataclass(frozen=True)
class EvalOptions:
    """The settings of an evaluation (everything but the model).

    `tasks` are names of `suite` (the CLI passes the lab's) or `ppl:FILE`; `lm_eval`
    names lm-evaluation-harness tasks (text `a,b` or a list); `seed` is the world's
    seed for a suite whose model records none.
    """

    tasks: tuple[str, ...] | Iterable[str] | None = ()
    lm_eval: tuple[str, ...] | str | Iterable[str] | None = None
    include_path: Path | None = None
    limit: int = 200
    batch_size: int = 8
    seed: int = 0
    suite: Suite = NO_SUITE
    texts: dict[str, str] = field(init=False, repr=False, compare=False)
    """The text of each `ppl:FILE` task, read once."""

    def __post_init__(self) -> None:
        put = object.__setattr__.__get__(self)  # frozen: normalise in place once
        put("tasks", tuple(self.tasks or ()))
        lm_eval = self.lm_eval.split(",") if isinstance(self.lm_eval, str) else (self.lm_eval or ())
        put("lm_eval", tuple(t.strip() for t in lm_eval if t.strip()))
        if not self.tasks and not self.lm_eval:
            raise OrthoscopeError("nothing to evaluate: give --task and/or --lm-eval")
        check_limit(self.limit)
        if not positive_int(self.batch_size):
            raise OrthoscopeError(f"bad --batch-size {self.batch_size!r}: must be a positive whole number")
        put("seed", check_seed(self.seed))
        put("texts", {task: read_text(Path(task[len(PPL):]), task) for task in self.tasks if task.startswith(PPL)})
        for task in self.tasks:
            check_task(task, self.suite)


def check_task(task: str, suite: Suite) -> None:
    """A task of `suite` or `ppl:FILE` (its file checked by `read_text`).

    >>> check_task("gsm9k", NO_SUITE)
    Traceback (most recent call last):
    ...
    orthoscope.errors.OrthoscopeError: unknown task 'gsm9k' (known: ppl:FILE)
    """
    if task.startswith(PPL):
        text_file(Path(task[len(PPL):]) if task[len(PPL):] else None, task)
    elif task not in suite.names:
        raise OrthoscopeError(f"unknown task {task!r} (known: {', '.join([*suite.names, 'ppl:FILE'])})")


def check_limit(limit: int) -> None:
    """--limit: a positive whole number of problems per task."""
    if not positive_int(limit):
        raise OrthoscopeError(f"bad --limit {limit!r}: must be a positive whole number of problems per task")


MAX_TEXT_BYTES = 64 << 20  # a perplexity text is a sample: a larger file (or /dev/zero) is refused


def text_file(path: Path | None, what: str) -> Path:
    """`path` if it is a regular file; one line otherwise (a FIFO or /dev/zero would wait or read forever).

    >>> text_file(Path("/dev/zero"), "--text")
    Traceback (most recent call last):
    ...
    orthoscope.errors.OrthoscopeError: text file for --text is not a regular file (a character device): /dev/zero
    """
    import os
    import stat

    if path is None or not str(path) or what == "ppl:":
        raise OrthoscopeError(f"{what} names no file: write ppl:FILE")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise OrthoscopeError(f"text file for {what} does not exist: {path}") from None
    except (OSError, ValueError) as error:
        raise OrthoscopeError(f"cannot read the text file for {what}, {path}: "
                              f"{getattr(error, 'strerror', None) or error}") from None
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
                "a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode) else
                "a socket" if stat.S_ISSOCK(mode) else "not a plain file")
        raise OrthoscopeError(f"text file for {what} is not a regular file ({kind}): {path}")
    return path


def read_text(path: Path, what: str = "--text") -> str:
    """A UTF-8 text file for perplexity; one-line errors for a missing, binary, non-UTF-8 or empty file.

    >>> read_text(Path("/nonexistent.txt"))
    Traceback (most recent call last):
    ...
    orthoscope.errors.OrthoscopeError: text file for --text does not exist: /nonexistent.txt
    """
    text_file(path, what)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_TEXT_BYTES + 1)
    except OSError as error:
        raise OrthoscopeError(f"cannot read the text file for {what}, {path}: {error.strerror or error}") from None
    if len(data) > MAX_TEXT_BYTES:
        raise OrthoscopeError(f"text file for {what} is larger than {MAX_TEXT_BYTES >> 20} MiB: {path} "
                              "(perplexity needs a sample, not a corpus)")
    if b"\0" in data:
        raise OrthoscopeError(f"text file for {what} looks binary (it holds NUL bytes): {path}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise OrthoscopeError(f"text file for {what} is not UTF-8 text (byte {error.start}): {path}") from None
    if not text.strip():
        raise OrthoscopeError(f"text file for {what} is empty: {path}")
    return text
