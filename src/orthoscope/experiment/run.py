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
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from orthoscope.errors import OrthoscopeError
from orthoscope.evaluation.lab_tasks import LAB_TASKS, lab_score
from orthoscope.evaluation.models import load_model
from orthoscope.evaluation.perplexity import perplexity
from orthoscope.evaluation.representations import attention_entropy, hidden_states, linear_cka
from orthoscope.evaluation.run import check_limit, check_task, is_lab_model
from orthoscope.experiment.columns import GRID_OP, POST, claims_table
from orthoscope.interventions.apply import matrix_pairs, patch
from orthoscope.interventions.base import Op
from orthoscope.interventions.registry import experiment_conditions, make_op
from orthoscope.interventions.run import plan_for
from orthoscope.lab.build import lab_block, lab_world
from orthoscope.lab.corpus import held_out_problems, held_out_text
from orthoscope.pipeline.runfolder import ExperimentFolder

DEFAULT_GRID = (0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5)
PPL_BLOCK = 128
"""Tokens per perplexity block for a model that is not from the lab (a lab model: its training block)."""
KEY_VERSION = 3  # bump when a condition's numbers would change for the same inputs
Log = Callable[[str], None]


def conditions(grid: tuple[float, ...] = DEFAULT_GRID, seed: int = 0) -> list[Op | None]:
    """The table's conditions: the post model as is (None), then every registered op's settings.

    >>> [op.label() if op else "post" for op in conditions((0.9,))][:5]
    ['post', 'swap-sigma@1', 'swap-sigma@auto', 'swap-sigma@0.9', 'base-vectors']
    """
    return [None, *experiment_conditions(tuple(grid), seed)]


def run_experiment(base: str | Path, post: str | Path, out: str | Path, *, grid: tuple[float, ...] = DEFAULT_GRID,
                   tasks: list[str] | None = None, limit: int = 100, text: str | None = None, seed: int = 0,
                   layers: set[int] | None = None, kinds: set[str] | None = None, log: Log = print) -> pd.DataFrame:
    """Evaluate every condition on the pair; a rerun with the same inputs and options reuses finished ones.

    `tasks` default to every lab task for a lab model and none otherwise;
    `text` (perplexity) defaults to the lab's held-out text for a lab model.

    >>> import tempfile
    >>> from orthoscope.lab.shipped import shipped_family
    >>> family, folder = shipped_family(), Path(tempfile.mkdtemp())
    >>> table = run_experiment(family["base"], family["instruct"], folder, grid=(1.0,), tasks=[],
    ...                        text="The cat sees a dog.", layers={0}, kinds={"q"})  # doctest: +SKIP
    >>> round(float(table.set_index("condition").loc["interpolate@1", "cka_vs_post"]), 6)  # doctest: +SKIP
    1.0
    """
    folder = ExperimentFolder(out)
    folder.check()
    check_limit(limit)
    ops = conditions(grid, seed)
    for task in tasks or []:
        check_task(task, post)
    tasks = list(LAB_TASKS) if tasks is None and is_lab_model(post) else list(tasks or [])
    plan = plan_for(base, post, layers, kinds)
    world = lab_world(post, seed)
    text = text if text is not None else (held_out_text(world, seed) if is_lab_model(post) else None)
    block = (lab_block(post) if is_lab_model(post) else None) or PPL_BLOCK
    key = {**run_key(plan, grid, tasks, limit, text, seed, layers, kinds), "ppl_block": block,
           "post_fingerprint": plan.posts[0].fingerprint()}  # how a run folder's summary.json names the post
    labels = [POST if op is None else op.label() for op in ops]
    from orthoscope.experiment.plot import plot_experiment  # matplotlib: only when a table is drawn

    with folder.open():
        table = _run_conditions(folder, ops, labels, key, base, post, plan, world, tasks, limit, text, log)
        folder.write_tables(table, claims_table(table))
        plot_experiment(table, folder.plot)
    return table


def _run_conditions(folder: ExperimentFolder, ops, labels, key, base, post, plan, world, tasks, limit, text,
                    log: Log) -> pd.DataFrame:
    """Every condition's row: taken from its finished record, or evaluated and recorded."""
    model = tokenizer = probe = reference = pairs = None
    rows = []
    for op, label in zip(ops, labels):
        condition_key = {**key, "condition": label, **({} if op is None else
                                                       {"formula": op.spec.formula, "settings": op.settings()})}
        done = folder.load_condition(label, condition_key)
        if done is not None:
            rows.append(done)
            continue
        if model is None:
            model, tokenizer = load_model(post)
            probe = _probe_texts(text)
            reference = hidden_states(model, tokenizer, probe)
            pairs = matrix_pairs(plan)
        started = time.time()
        with _patched(model, plan, op, pairs) as diagnostics:
            row = {"condition": label, "op": POST if op is None else op.name,
                   "claim": "" if op is None else op.spec.claim,
                   "control": "" if op is None else ",".join(_controls(op, ops)),
                   "scale": _setting(op, "scale"), "t": _setting(op, "t")}
            row.update(_evaluate(model, tokenizer, world, tasks, limit, (text, key["ppl_block"]), probe,
                                  reference))
        row.update(_medians(diagnostics))
        row["seconds"] = round(time.time() - started, 2)
        folder.save_condition(label, condition_key, row)
        rows.append(row)
        log(f"  {label:18s} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()
                                          if isinstance(v, float) and ":" not in k and k not in ("t", "scale")))
    return pd.DataFrame(rows)


def parse_grid(text: str) -> tuple[float, ...]:
    """--grid: comma-separated swap-sigma scales c, each validated by the op (finite, positive).

    >>> parse_grid("0.9, 1.1")
    (0.9, 1.1)
    >>> parse_grid("1,nan")
    Traceback (most recent call last):
    ...
    orthoscope.errors.OrthoscopeError: bad --grid '1,nan': 'nan' is not a finite positive scale c
    """
    values = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            op = make_op(GRID_OP, item)
        except OrthoscopeError:
            op = None
        if op is None or op.scale is None:
            raise OrthoscopeError(f"bad --grid {text!r}: {item!r} is not a finite positive scale c")
        values.append(op.scale)
    if not values:
        raise OrthoscopeError(f"bad --grid {text!r}: give at least one scale, e.g. 0.9,1.0,1.1")
    return tuple(values)


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


def _probe_texts(text: str | None) -> list[str]:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[:32] or ["The quick brown fox jumps over the lazy dog."]


def _evaluate(model, tokenizer, world, tasks, limit, ppl: tuple[str | None, int], probe, reference_states) -> dict:
    scores = {}
    for task in tasks:
        scores.update(lab_score(model, tokenizer, held_out_problems(world, task, limit), LAB_TASKS[task]).fields(task))
    text, block = ppl
    if text:
        scores["ppl"] = perplexity(model, tokenizer, text, block=block)
    entropies = attention_entropy(model, tokenizer, probe)
    scores["attn_entropy"] = sum(entropies) / len(entropies)
    states = hidden_states(model, tokenizer, probe)
    scores["cka_vs_post"] = sum(linear_cka(a, b) for a, b in zip(states[1:], reference_states[1:])) / (len(states) - 1)
    return scores


