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
        text_file(Path(task[4:]) if task[4:] else None, task)
    elif task not in LAB_TASKS:
        raise OrthoscopeError(f"unknown task {task!r} (known: {', '.join(LAB_TASKS)}, ppl:FILE)")
    elif task in WORLD_TASKS and model is not None and not is_lab_model(model):
        raise OrthoscopeError(f"--task {task} asks about the lab world's invented facts, but {model} is not a lab "
                              f"model (no {LAB_MARKER}); use lab-arith, lab-cot or ppl:FILE")


def check_limit(limit: int) -> None:
    """--limit: a positive whole number of problems per task."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
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
