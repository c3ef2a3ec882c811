"""Checks for `orthoscope eval` and `experiment`: task names, limits, text files, lab models.

(`orthoscope.lab.evaluate.evaluate_model` runs the tasks: the lab's tasks need its world.)"""

from __future__ import annotations

from pathlib import Path

from orthoscope.errors import OrthoscopeError
from orthoscope.evaluation.lab_tasks import LAB_TASKS, WORLD_TASKS

LAB_MARKER = "orthoscope_lab.json"  # written by `orthoscope lab` beside every lab checkpoint


def is_lab_model(path: str | Path) -> bool:
    """Whether `path` is a lab checkpoint (it records the world its facts come from)."""
    return (Path(path) / LAB_MARKER).is_file()


def check_task(task: str, model: str | Path | None = None) -> None:
    """A known task name, a `ppl:FILE` whose file exists, and a lab model for tasks about the lab world.

    >>> check_task("lab-arith")
    >>> check_task("gsm9k")
    Traceback (most recent call last):
    ...
    orthoscope.errors.OrthoscopeError: unknown task 'gsm9k' (known: lab-arith, lab-cot, lab-facts, ppl:FILE)
    """
    if task.startswith("ppl:"):
        if not Path(task[4:]).is_file():
            raise OrthoscopeError(f"text file for {task!r} does not exist: {task[4:]}")
    elif task not in LAB_TASKS:
        raise OrthoscopeError(f"unknown task {task!r} (known: {', '.join(LAB_TASKS)}, ppl:FILE)")
    elif task in WORLD_TASKS and model is not None and not is_lab_model(model):
        raise OrthoscopeError(f"--task {task} asks about the lab world's invented facts, but {model} is not a lab "
                              f"model (no {LAB_MARKER}); use lab-arith, lab-cot or ppl:FILE")


def check_limit(limit: int) -> None:
    """--limit: a positive whole number of problems per task."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise OrthoscopeError(f"bad --limit {limit!r}: must be a positive whole number of problems per task")


def read_text(path: Path, what: str = "--text") -> str:
    """A UTF-8 text file for perplexity; one-line errors for a missing, binary, non-UTF-8 or empty file.

    >>> read_text(Path("/nonexistent.txt"))
    Traceback (most recent call last):
    ...
    orthoscope.errors.OrthoscopeError: text file for --text does not exist: /nonexistent.txt
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise OrthoscopeError(f"text file for {what} does not exist: {path}") from None
    except OSError as error:
        raise OrthoscopeError(f"cannot read the text file for {what}, {path}: {error.strerror or error}") from None
    if b"\0" in data:
        raise OrthoscopeError(f"text file for {what} looks binary (it holds NUL bytes): {path}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise OrthoscopeError(f"text file for {what} is not UTF-8 text (byte {error.start}): {path}") from None
    if not text.strip():
        raise OrthoscopeError(f"text file for {what} is empty: {path}")
    return text
