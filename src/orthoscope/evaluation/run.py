"""`orthoscope eval`: parse task names and run each on one model."""

from __future__ import annotations

from pathlib import Path

from orthoscope.errors import OrthoscopeError
from orthoscope.evaluation.lab_tasks import LAB_TASKS, lab_accuracy
from orthoscope.evaluation.models import load_model
from orthoscope.evaluation.perplexity import perplexity
from orthoscope.lab.build import lab_world
from orthoscope.lab.corpus import held_out_problems


def evaluate_model(path: str | Path, tasks: list[str], limit: int = 200, seed: int = 0) -> dict[str, float]:
    """{task: score}: accuracy for lab tasks, perplexity for `ppl:FILE`.

    >>> evaluate_model("lab/tiny/instruct", ["lab-arith", "ppl:held_out.txt"])  # doctest: +SKIP
    {'lab-arith': 0.41, 'ppl:held_out.txt': 3.2}
    """
    for task in tasks:
        _check_task(task)
    model, tokenizer = load_model(path)
    world = lab_world(path, seed)
    results = {}
    for task in tasks:
        if task.startswith("ppl:"):
            results[task] = perplexity(model, tokenizer, Path(task[4:]).read_text())
        else:
            results[task] = lab_accuracy(model, tokenizer, held_out_problems(world, task, limit), LAB_TASKS[task])
    return results


def _check_task(task: str) -> None:
    if task.startswith("ppl:"):
        if not Path(task[4:]).is_file():
            raise OrthoscopeError(f"text file for {task!r} does not exist: {task[4:]}")
    elif task not in LAB_TASKS:
        raise OrthoscopeError(f"unknown task {task!r} (known: {', '.join(LAB_TASKS)}, ppl:FILE)")
