"""Benchmark scores of an in-memory transformers model with lm-evaluation-harness.

lm-evaluation-harness (PyPI ``lm-eval``, import ``lm_eval``) is an optional
dependency: install it with ``pip install 'orthoscope[lm-eval]'``. It is imported
only when :func:`lm_eval_scores` runs.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import math
import random
from pathlib import Path

from orthoscope.errors import OrthoscopeError, reason
from orthoscope.pipeline.filters import positive_int

INSTALL_HINT = "pip install 'lm-eval[hf]' (or the extra: pip install 'orthoscope[lm-eval]')"


def lm_eval_scores(model, tokenizer, tasks: list[str], *, limit: int | None = None, batch_size: int = 8,
                   include_path: str | Path | None = None) -> dict[str, dict[str, float]]:
    """Scores of an already-loaded model on lm-evaluation-harness tasks.

    The model and tokenizer are wrapped as they are (same weights, device and
    dtype) in lm-eval's Hugging Face adapter, with a fixed batch size (never
    "auto"), and each task is run zero-shot unless its own config sets few-shot
    examples. Every call scores the model afresh: lm-eval's request cache and
    its sqlite response cache are both off, so results of one set of weights
    are never reused for another.

    `tasks` are lm-eval task, group or tag names (``lm-eval ls tasks``), or
    names of local tasks found under `include_path`, a folder of lm-eval YAML
    task files. `limit` caps the number of documents per task (the first N),
    for quick checks; the default scores every document.

    Returns ``{task: {metric: value}}`` for every task and group lm-eval
    reports. Metric names are lm-eval's, without the default ``,none`` filter
    suffix (``"acc"``, ``"acc_norm"``); a metric computed after another filter
    keeps it (``"exact_match,strict-match"``). Standard errors are kept as their
    own entries (``"acc_stderr"``) when lm-eval computed them; non-numeric
    entries (aliases, ``"N/A"`` stderrs) are dropped.

    The caller's random, numpy and torch random states are restored afterwards
    (lm-eval reseeds them all for its own reproducibility).

    >>> from orthoscope.evaluation import load_model
    >>> from orthoscope.lab.shipped import shipped_family
    >>> model, tok = load_model(shipped_family()["instruct"])
    >>> # a hub task: its data are downloaded, so this line is not run by the doctests
    >>> lm_eval_scores(model, tok, ["arc_easy"], limit=50)  # doctest: +SKIP
    {'arc_easy': {'acc': 0.3, 'acc_stderr': 0.065, 'acc_norm': 0.32, 'acc_norm_stderr': 0.066}}
    """
    tasks = _check_arguments(tasks, limit, batch_size)
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
    except ImportError as err:
        raise OrthoscopeError(f"lm-evaluation-harness is not usable ({reason(err)}): {INSTALL_HINT}") from None

    manager = _manager_for(tasks, include_path)
    _check_task_names(tasks, manager, include_path)

    with _preserved_random_state():
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        try:
            results = lm_eval.simple_evaluate(
                model=lm,
                tasks=list(tasks),
                limit=limit,
                batch_size=batch_size,
                use_cache=None,
                cache_requests=False,
                rewrite_requests_cache=False,
                delete_requests_cache=False,
                log_samples=False,
                task_manager=manager,
            )
        except OSError as err:  # a task's data cannot be found or fetched (offline, wrong data_files)
            raise OrthoscopeError(f"lm-eval cannot load the data of {', '.join(tasks)}: {reason(err)}") from None
    if results is None:  # only returned on rank 0 of a distributed launch
        return {}
    return {name: _numeric_metrics(row) for name, row in results["results"].items()}


def _check_arguments(tasks, limit, batch_size) -> list[str]:
    if isinstance(tasks, str):
        tasks = [tasks]
    tasks = [t.strip() for t in tasks if t and t.strip()]
    if not tasks:
        raise OrthoscopeError("no lm-eval task given: name at least one (e.g. arc_easy)")
    if limit is not None and not positive_int(limit):
        raise OrthoscopeError(f"limit must be a positive whole number of documents, got {limit!r}")
    if not positive_int(batch_size):
        raise OrthoscopeError(f"batch_size must be a positive whole number, got {batch_size!r}")
    return tasks


def _include_key(include_path: str | Path | None) -> tuple[str | None, tuple]:
    """(resolved folder, fingerprint of its task files): the cache key of a task manager."""
    if include_path is None:
        return None, ()
    folder = Path(include_path).expanduser().resolve()
    if not folder.is_dir():
        raise OrthoscopeError(f"lm-eval include path {include_path} is not a folder of task YAML files")
    files = sorted(p for pattern in ("*.yaml", "*.yml", "*.py") for p in folder.rglob(pattern))
    return str(folder), tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)


def _manager_for(tasks: list[str], include_path: str | Path | None):
    """The task index `tasks` need: `include_path`'s alone when every one is a plain task there (a group or
    tag may name built-in tasks, which only the whole index resolves), else the whole one."""
    folder, fingerprint = _include_key(include_path)
    if folder:
        local = _task_manager(folder, fingerprint, defaults=False)
        index = getattr(local, "task_index", {})
        if all(getattr(getattr(index.get(name), "kind", None), "name", None) in ("TASK", "PY_TASK") for name in tasks):
            return local
    return _task_manager(folder, fingerprint)


@functools.lru_cache(maxsize=4)
def _task_manager(folder: str | None, fingerprint: tuple, defaults: bool = True):
    """lm-eval's index of tasks: `folder`'s, and the built-in ones unless `defaults` is False.

    Indexing the built-in task files takes seconds, so a run whose tasks are all in `folder`
    indexes that folder alone, and an index is kept per process; a change to any task file
    under `folder` builds a new one. Tasks themselves (and their data) are built afresh on
    every evaluation.
    """
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=folder, include_defaults=defaults) if folder else TaskManager()


def _check_task_names(tasks: list[str], manager, include_path) -> None:
    known = set(manager.all_tasks)
    for name in tasks:
        if name in known or (name.endswith((".yaml", ".yml")) and Path(name).is_file()):
            continue
        close = difflib.get_close_matches(name, manager.all_tasks, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        where = (f"the built-in tasks or {include_path}" if include_path
                 else "the built-in tasks (local tasks need an include path)")
        raise OrthoscopeError(f"unknown lm-eval task '{name}': not in {where}; {hint}list them with `lm-eval ls tasks`")


def _numeric_metrics(row: dict) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for key, value in row.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or key in ("sample_len", "samples"):
            continue
        metric, _, filt = key.partition(",")
        metrics[metric if filt in ("", "none") else key] = float(value)
    return {k: v for k, v in metrics.items() if not (k.endswith("_stderr") and math.isnan(v))}


@contextlib.contextmanager
def _preserved_random_state():
    import numpy as np
    import torch

    python_state, numpy_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
