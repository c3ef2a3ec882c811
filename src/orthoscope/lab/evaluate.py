"""`orthoscope eval`: run lab tasks (on the lab world the model was trained in) and perplexity on one model."""

from __future__ import annotations

from pathlib import Path

from orthoscope.evaluation.lab_tasks import LAB_TASKS, lab_score
from orthoscope.evaluation.models import load_model
from orthoscope.evaluation.perplexity import perplexity
from orthoscope.evaluation.run import check_limit, check_task, read_text
from orthoscope.lab.build import lab_world
from orthoscope.lab.corpus import held_out_problems


def evaluate_model(path: str | Path, tasks: list[str], limit: int = 200, seed: int = 0) -> dict[str, float]:
    """{column: value}: for a lab task its accuracy, `task:n` and the Wilson 95 % `task:lo`, `task:hi`;
    for `ppl:FILE` the perplexity of the model on that text.

    >>> from orthoscope.lab.shipped import shipped_family
    >>> scores = evaluate_model(shipped_family()["instruct"], ["lab-facts"], limit=4)
    >>> scores["lab-facts:n"], scores["lab-facts:lo"] <= scores["lab-facts"] <= scores["lab-facts:hi"]
    (4, True)
    """
    check_limit(limit)
    texts = {task: read_text(Path(task[4:]), task) for task in tasks if task.startswith("ppl:")}
    for task in tasks:
        check_task(task, path)
    model, tokenizer = load_model(path)
    world = lab_world(path, seed)
    results: dict[str, float] = {}
    for task in tasks:
        if task in texts:
            results[task] = perplexity(model, tokenizer, texts[task])
        else:
            score = lab_score(model, tokenizer, held_out_problems(world, task, limit), LAB_TASKS[task])
            results.update(score.fields(task))
    return results
