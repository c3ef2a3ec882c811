"""`orthoscope eval`: score one model on a suite's exact-match tasks, perplexity texts and lm-eval tasks."""

from __future__ import annotations

from pathlib import Path

from orthoscope.evaluation.exact_match import score_answers
from orthoscope.evaluation.models import load_model
from orthoscope.evaluation.options import EvalOptions
from orthoscope.evaluation.perplexity import perplexity


def evaluate_model(model: str | Path, options: EvalOptions | None = None, **settings) -> dict[str, float]:
    """{column: value}: for a suite task its accuracy, `task:n` and the Wilson 95 % `task:lo`, `task:hi`;
    for `ppl:FILE` the perplexity of the model on that text; for an lm-eval task `task:metric`.

    `options` or, for convenience, its fields as keywords (`tasks=["ppl:held_out.txt"]`).

    >>> from orthoscope.lab.shipped import shipped_family
    >>> from orthoscope.lab.tasks import LAB_SUITE
    >>> scores = evaluate_model(shipped_family()["instruct"], tasks=["lab-facts"], limit=4, suite=LAB_SUITE)
    >>> scores["lab-facts:n"], scores["lab-facts:lo"] <= scores["lab-facts"] <= scores["lab-facts:hi"]
    (4, True)
    """
    options = options if options is not None else EvalOptions(**settings)
    suite_tasks = [task for task in options.tasks if task not in options.texts]
    for task in suite_tasks:
        options.suite.check(task, model)
    loaded, tokenizer = load_model(model)
    tasks = options.suite.tasks(model, options.seed) if suite_tasks else {}
    results: dict[str, float] = {}
    for task in options.tasks:
        if task in options.texts:
            results[task] = perplexity(loaded, tokenizer, options.texts[task])
        else:
            score = score_answers(loaded, tokenizer, tasks[task].problems(options.limit), tasks[task].max_new_tokens)
            results.update(score.fields(task))
    if options.lm_eval:
        from orthoscope.evaluation.harness import lm_eval_scores

        scores = lm_eval_scores(loaded, tokenizer, list(options.lm_eval), limit=options.limit,
                                batch_size=options.batch_size, include_path=options.include_path)
        results.update({f"{name}:{metric}": value for name, row in scores.items() for metric, value in row.items()})
    return results
