"""Build every intervened model in memory, evaluate it, and write a resumable table and a plot.

Layout of OUT:
    conditions/<label>.json    one evaluated condition (written atomically: the resume marker)
    experiment.parquet/.csv    one row per condition
    experiment.png             the scores per condition and the swap-sigma grid
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from orthoscope.evaluation.lab_tasks import LAB_TASKS, lab_accuracy
from orthoscope.evaluation.models import load_model
from orthoscope.evaluation.perplexity import perplexity
from orthoscope.evaluation.representations import attention_entropy, cka_per_layer, hidden_states, linear_cka
from orthoscope.interventions.apply import pair_factors, patch_model
from orthoscope.interventions.registry import Op
from orthoscope.interventions.run import plan_for
from orthoscope.lab.build import lab_world
from orthoscope.lab.corpus import held_out_problems, held_out_text
from orthoscope.pipeline.store import safe_name, write_text

DEFAULT_GRID = (0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5)
INTERPOLATION = (0.0, 0.25, 0.5, 0.75, 1.0)
Log = Callable[[str], None]


def conditions(grid: tuple[float, ...] = DEFAULT_GRID, seed: int = 0) -> list[Op | None]:
    """The paper's table: post as is (None), sigma swaps, broken and rebuilt models, the geodesic."""
    ops: list[Op | None] = [None, Op("swap-sigma", 1.0), Op("swap-sigma", None)]
    ops += [Op("swap-sigma", c) for c in grid if c != 1.0]
    ops += [Op("base-vectors"), Op("break-left"), Op("break-right"), Op("break-random", seed=seed),
            Op("reconstruct", None)]
    ops += [Op("interpolate", t=t) for t in INTERPOLATION]
    return ops


def run_experiment(base: str | Path, post: str | Path, out: str | Path, *, grid: tuple[float, ...] = DEFAULT_GRID,
                   tasks: list[str] | None = None, limit: int = 100, text: str | None = None, seed: int = 0,
                   layers: set[int] | None = None, kinds: set[str] | None = None, log: Log = print) -> pd.DataFrame:
    """Evaluate every condition on the pair; finished conditions are not recomputed on a rerun."""
    out = Path(out)
    plan = plan_for(base, post, layers, kinds)
    is_lab = (Path(post) / "orthoscope_lab.json").is_file()
    world = lab_world(post) if is_lab else None
    tasks = list(LAB_TASKS) if tasks is None and is_lab else (tasks or [])
    text = text if text is not None else (held_out_text(world, seed) if world else None)
    reference_model, tokenizer = load_model(post)
    probe = _probe_texts(text)
    reference_states = hidden_states(reference_model, tokenizer, probe)
    key = {"base": plan.base.fingerprint(), "post": plan.posts[0].fingerprint(), "tasks": tasks, "limit": limit,
           "text": hash_text(text), "seed": seed, "matrices": len(plan.refs)}
    factors = None
    rows = []
    for op in conditions(grid, seed):
        label = "post" if op is None else op.label()
        path = out / "conditions" / f"{safe_name(label)}.json"
        done = _load(path, key)
        if done is not None:
            rows.append(done)
            continue
        factors = factors if factors is not None else pair_factors(plan)
        started = time.time()
        model, _ = load_model(post)
        if op is not None:
            patch_model(model, plan, op, factors=factors)
        row = {"condition": label, "op": "post" if op is None else op.name,
               "scale": op.scale if op is not None and op.name in ("swap-sigma", "temperature") else None,
               "t": op.t if op is not None and op.name == "interpolate" else None}
        row.update(_evaluate(model, tokenizer, world, tasks, limit, text, probe, reference_states))
        row["seconds"] = round(time.time() - started, 2)
        write_text(path, json.dumps({**row, "key": key}))
        rows.append(row)
        log(f"  {label:18s} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float) and k != "t"))
    table = pd.DataFrame(rows)
    _write(out, table)
    return table


def hash_text(text: str | None) -> str | None:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:16] if text else None


def _load(path: Path, key: dict) -> dict | None:
    """A finished condition made with the same inputs and settings, else None."""
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if record.pop("key", None) == key else None


def _probe_texts(text: str | None) -> list[str]:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[:32] or ["The quick brown fox jumps over the lazy dog."]


def _evaluate(model, tokenizer, world, tasks, limit, text, probe, reference_states) -> dict:
    scores = {}
    for task in tasks:
        scores[task] = lab_accuracy(model, tokenizer, held_out_problems(world, task, limit), LAB_TASKS[task])
    if text:
        scores["ppl"] = perplexity(model, tokenizer, text)
    entropies = attention_entropy(model, tokenizer, probe)
    scores["attn_entropy"] = sum(entropies) / len(entropies)
    states = hidden_states(model, tokenizer, probe)
    scores["cka_vs_post"] = sum(linear_cka(a, b) for a, b in zip(states[1:], reference_states[1:])) / (len(states) - 1)
    return scores


def _write(out: Path, table: pd.DataFrame) -> None:
    from orthoscope.experiment.plot import plot_experiment
    from orthoscope.pipeline.store import atomic_write

    atomic_write(out / "experiment.parquet", lambda tmp: table.to_parquet(tmp, index=False))
    atomic_write(out / "experiment.csv", lambda tmp: table.to_csv(tmp, index=False))
    plot_experiment(table, out / "experiment.png")
