"""Build every intervened model in memory, evaluate it, and write a resumable table, its pairs and a plot.

The conditions are those of the op registry (`OpSpec.conditions`), in registry
order, after the post model as is. Each row names the claim its condition
speaks to and the size-matched controls it must be read against; every accuracy
comes with its n and Wilson 95 % interval (the same columns as `orthoscope eval`).

Layout of OUT (owned by `orthoscope.pipeline.runfolder.ExperimentFolder`, which also locks it):
    conditions/<label>.json    one evaluated condition (written atomically: the resume marker)
    experiment.parquet/.csv    one row per condition
    claims.csv                 each claim's condition next to its control, score by score
    experiment.png             the scores per condition and the swap-sigma grid
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from orthoscope.evaluation.exact_match import score_answers
from orthoscope.evaluation.models import load_for_scoring
from orthoscope.evaluation.perplexity import perplexity
from orthoscope.evaluation.representations import attention_entropy, hidden_states, linear_cka
from orthoscope.evaluation.tasks import Task
from orthoscope.experiment.columns import POST, claims_table
from orthoscope.experiment.options import DEFAULT_GRID, PPL_BLOCK, ExperimentOptions
from orthoscope.interventions.apply import matrix_pairs, patch
from orthoscope.interventions.base import Op
from orthoscope.interventions.registry import experiment_conditions
from orthoscope.interventions.run import plan_for
from orthoscope.pipeline.cache import checksum
from orthoscope.pipeline.runfolder import ExperimentFolder

KEY_VERSION = 4  # bump when a condition's numbers would change for the same inputs
Log = Callable[[str], None]


@dataclass(frozen=True)
class Evaluation:
    """What every condition is scored on: the suite's tasks for the post model and the perplexity text."""

    tasks: Mapping[str, Task]
    limit: int
    text: str | None
    ppl_block: int


def conditions(grid: tuple[float, ...] = DEFAULT_GRID, seed: int = 0) -> list[Op | None]:
    """The table's conditions: the post model as is (None), then every registered op's settings.

    >>> [op.label() if op else "post" for op in conditions((0.9,))][:5]
    ['post', 'swap-sigma@1', 'swap-sigma@auto', 'swap-sigma@0.9', 'base-vectors']
    """
    return [None, *experiment_conditions(tuple(grid), seed)]


def run_experiment(base: str | Path, post: str | Path, out: str | Path, options: ExperimentOptions | None = None,
                   *, log: Log = print, **settings) -> pd.DataFrame:
    """Evaluate every condition on the pair; a rerun with the same inputs and options reuses finished ones.

    `options` or, for convenience, its fields as keywords (`grid=(1.0,), limit=20`).
    Tasks, text and perplexity block the options leave out come from their suite
    (the lab's: every lab task and the held-out text of a lab model; none otherwise).

    >>> import tempfile
    >>> from orthoscope.lab.shipped import shipped_family
    >>> family, folder = shipped_family(), Path(tempfile.mkdtemp())
    >>> table = run_experiment(family["base"], family["instruct"], folder, grid=(1.0,), tasks=[],
    ...                        text="The cat sees a dog.", layers={0}, kinds={"q"})  # doctest: +SKIP
    >>> round(float(table.set_index("condition").loc["interpolate@1", "cka_vs_post"]), 6)  # doctest: +SKIP
    1.0
    """
    options = options if options is not None else ExperimentOptions(**settings)
    folder = ExperimentFolder(out)
    folder.check()
    defaults = options.suite.defaults(post, options.seed)
    tasks = defaults.tasks if options.tasks is None else options.tasks
    for task in tasks:
        options.suite.check(task, post)
    ops = conditions(options.grid, options.seed)
    plan = plan_for(base, post, options.layers, options.kinds)
    suite_tasks = options.suite.tasks(post, options.seed) if tasks else {}
    evaluation = Evaluation({name: suite_tasks[name] for name in tasks}, options.limit,
                            options.text if options.text is not None else defaults.text,
                            defaults.ppl_block or PPL_BLOCK)
    key = {**run_key(plan, options.grid, list(tasks), options.limit, evaluation.text, options.seed, options.layers,
                     options.kinds),
           "ppl_block": evaluation.ppl_block,
           "post_fingerprint": plan.posts[0].fingerprint()}  # how a run folder's summary.json names the post
    from orthoscope.experiment.plot import plot_experiment  # matplotlib: only when a table is drawn

    with folder.open():
        table = _run_conditions(folder, plan, post, ops, key, evaluation, log)
        folder.write_tables(table, claims_table(table))
        plot_experiment(table, folder.plot)
    return table


def _run_conditions(folder: ExperimentFolder, plan, post, ops: list[Op | None], key: dict, evaluation: Evaluation,
                    log: Log) -> pd.DataFrame:
    """Every condition's row: taken from its finished record, or evaluated and recorded."""
    model = tokenizer = probe = reference = pairs = None
    rows, scored = [], {}  # scores by the digest of the patched weights: a condition equal to another is scored once
    for op in ops:
        label = POST if op is None else op.label()
        condition_key = {**key, "condition": label, **({} if op is None else
                                                       {"formula": op.spec.formula, "settings": op.settings()})}
        done = folder.load_condition(label, condition_key)
        if done is not None:
            rows.append(done)
            continue
        if model is None:
            model, tokenizer = load_for_scoring(post)
            probe = _probe_texts(evaluation.text)
            reference = hidden_states(model, tokenizer, probe)
            pairs = matrix_pairs(plan)
        started = time.time()
        with _patched(model, plan, op, pairs) as diagnostics:
            row = {"condition": label, "op": POST if op is None else op.name,
                   "claim": "" if op is None else op.spec.claim,
                   "control": "" if op is None else ",".join(_controls(op, ops)),
                   "scale": _setting(op, "scale"), "t": _setting(op, "t")}
            digest = _weights_digest(model, plan)
            if digest not in scored:  # interpolate@1 is the post model bit for bit
                scored[digest] = label, _evaluate(model, tokenizer, evaluation, probe, reference)
            first, scores = scored[digest]
            row.update(scores)
        row.update(_medians(diagnostics))
        row["seconds"] = round(time.time() - started, 2)
        folder.save_condition(label, condition_key, row)
        rows.append(row)
        reused = "" if first == label else f"  (same weights as {first}: scores reused)"
        log(f"  {label:18s} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()
                                          if isinstance(v, float) and ":" not in k and k not in ("t", "scale"))
            + reused)
    return pd.DataFrame(rows)


def run_key(plan, grid, tasks, limit, text, seed, layers, kinds) -> dict:
    """What a finished condition depends on: both models, the selected matrices (by name) and every option.

    The models enter as hashes of every byte of their weights (a change the sampled
    fingerprint does not see still recomputes, as compare's per-matrix hashes do); the
    matrices as a digest of their names, so another --layers or --kinds selection,
    even of the same count, recomputes.
    """
    names = "\n".join(ref.name for ref in plan.refs)
    return {"version": KEY_VERSION, "base": plan.base.content_hash(), "post": plan.posts[0].content_hash(),
            "matrices": f"{len(plan.refs)}:{hashlib.sha256(names.encode()).hexdigest()[:24]}",
            "grid": [float(c) for c in grid], "tasks": list(tasks), "limit": limit, "text": hash_text(text),
            "seed": seed, "layers": sorted(layers) if layers else None, "kinds": sorted(kinds) if kinds else None}


def hash_text(text: str | None) -> str | None:
    """A short digest of the perplexity text (None when there is none).

    >>> hash_text("abc")
    'ba7816bf8f01cfea'
    """
    return hashlib.sha256(text.encode()).hexdigest()[:16] if text else None


def _controls(op: Op, ops: list[Op | None]) -> list[str]:
    return [other.label() for other in ops if other is not None and other.name in op.spec.controls]


def _setting(op: Op | None, name: str) -> float | None:
    return None if op is None else op.settings().get(name)


def _medians(diagnostics: dict[str, dict[str, float]]) -> dict[str, float]:
    """Median over matrices of each per-matrix diagnostic (e.g. reconstruct's dropped share)."""
    frame = pd.DataFrame(list(diagnostics.values()))
    return {} if frame.empty else {c: float(frame[c].median()) for c in frame.columns}


@contextlib.contextmanager
def _patched(model, plan, op: Op | None, pairs):
    """The model with `op` applied to the plan's matrices; the original values are put back afterwards."""
    if op is None:
        yield {}
        return
    params = dict(model.named_parameters())
    saved = {ref.tensor: params[ref.tensor].data.clone() for ref in plan.refs if ref.tensor in params}
    try:
        yield patch(model, plan, op, pairs)
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                params[name].data.copy_(value)


def _weights_digest(model, plan) -> str:
    """A digest of every parameter the plan's matrices live in, as the model holds them now (`cache.checksum`:
    their names, dtypes, shapes and bytes)."""
    params = dict(model.named_parameters())
    return checksum({name: params[name] for name in {ref.tensor for ref in plan.refs}})


def _probe_texts(text: str | None) -> list[str]:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[:32] or ["The quick brown fox jumps over the lazy dog."]


def _evaluate(model, tokenizer, evaluation: Evaluation, probe, reference_states) -> dict:
    scores = {}
    for name, task in evaluation.tasks.items():
        scores.update(score_answers(model, tokenizer, task.problems(evaluation.limit), task.max_new_tokens)
                      .fields(name))
    if evaluation.text:
        scores["ppl"] = perplexity(model, tokenizer, evaluation.text, block=evaluation.ppl_block)
    entropies = attention_entropy(model, tokenizer, probe)
    scores["attn_entropy"] = sum(entropies) / len(entropies)
    states = hidden_states(model, tokenizer, probe)
    scores["cka_vs_post"] = sum(linear_cka(a, b) for a, b in zip(states[1:], reference_states[1:])) / (len(states) - 1)
    return scores
