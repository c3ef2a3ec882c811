"""`compare`: stream a base and its post models matrix by matrix into a table."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from orthoscope._version import __version__
from orthoscope.errors import OrthoscopeError
from orthoscope.metrics.registry import needs_post_svd
from orthoscope.pipeline.cache import default_dir
from orthoscope.pipeline.options import CompareOptions, metrics_label, selection
from orthoscope.pipeline.pairing import Plan, make_plan
from orthoscope.pipeline.precision import resolve_precision
from orthoscope.pipeline.progress import Progress, make_progress
from orthoscope.pipeline.runfolder import MemoryRun, RunFolder
from orthoscope.pipeline.summary import (
    NOTE,
    TABLE_COLUMNS,
    aggregate,
    cast_columns,
    change_notes,
    empty_table,
    matrix_notes,
    p_pair_notes,
    unchanged_counts,
)
from orthoscope.pipeline.work import Job, JobResult, Settings
from orthoscope.sources import open_checkpoint
from orthoscope.tuning import process_tuned

UPDATE_COS_COLUMNS = ("post_a", "post_b", "name", "layer", "kind", "expert", "update_cos")
CONTROL = "control"  # a post of this name is the control unless --control names another


@dataclass
class CompareResult:
    """What `compare` returns: the table (one row per post and matrix), the summary, and
    `update_cos` (one row per pair of posts and matrix; empty with a single post)."""

    table: pd.DataFrame
    summary: dict
    out: Path | None = None
    skipped: list[dict] = field(default_factory=list)
    update_cos: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(UPDATE_COS_COLUMNS)))


def compare(base: Any, posts: Any, out: str | Path | None = None, options: CompareOptions | None = None, *,
            progress: bool | Progress | None = True, **settings) -> CompareResult:
    """Compare a base model with one or more post-trained versions.

    Each model is a folder, a weights file, a hub id (`owner/name@rev`), an `nn.Module`
    or a state dict; `posts` is one model, a list of models (items may be `(name, model)`),
    or a dict `{name: model}`. Unnamed posts are labelled by folder name (`post`, `post-2`
    for models held in memory); posts named like `step-150` form a series, sorted by step.

    Settings are the fields of `CompareOptions` (pass `options=` or keywords): `layers`
    (`"0-3,10"` or a set), `kinds` (`"q,k"` or a set), `include_embeddings`, `metrics`
    (`all`, `sign-free` or column names), `precision`, `device`, `seed`, `revision` (of the
    base), `cache`, `cache_dir`, `cache_limit_gib`, `executor` (`"local"`, `"ray"` or an
    executor object such as `RayExecutor(address=..., workers=4)`), `control` (the control
    post; default: the post named `control`) and `overwrite`.

    With `out`, every result is written as it finishes together with hashes of the exact
    bytes it was computed from; a rerun recomputes only the matrices whose bytes changed.
    A folder holding a run of other inputs or settings is refused unless `overwrite`.

    `progress`: True shows a bar over matrices on a terminal or in a notebook once the run has
    lasted a few seconds (`pipeline.progress`), False shows nothing, a callable
    `progress(done, total, name)` is called after each matrix instead.

    >>> result = compare("./base", {"instruct": "./instruct", "cot": "./cot"}, "runs/mine")  # doctest: +SKIP
    >>> result.table.groupby(["post", "kind"]).a_geo.median()                                # doctest: +SKIP
    """
    started = time.time()
    opts = _options(options, settings)
    names, models = zip(*_post_inputs(posts))
    base_ckpt = open_checkpoint(base, opts.revision)
    post_ckpts = [open_checkpoint(model, base=base_ckpt) for model in models]
    plan = make_plan(base_ckpt, post_ckpts, _as_set(opts.layers), _as_set(opts.kinds), opts.include_embeddings,
                     list(names), [not isinstance(m, (str, Path)) for m in models])
    given = {id(ckpt): model for ckpt, model in zip(post_ckpts, models)}
    control = _control(opts.control, plan.labels)
    dtype = resolve_precision(opts.precision, opts.metrics)
    executor = opts.executor
    worker = Settings(dtype, executor.device(opts.device), opts.seed, opts.metrics, cache=opts.cache,
                      cache_dir=opts.explicit_cache_dir(), cache_limit_gib=opts.cache_limit(), started=started,
                      floor_fallback=opts.precision == "auto", tuned=process_tuned(), pair_draws=opts.pair_draws)
    key = settings_key(worker)
    # what a folder's run is: its inputs and the settings that change numbers; the selection
    # (layers, kinds, metrics) may change between runs into one folder (results are keyed on it)
    identity = {"base": input_id(base) + (f"@{opts.revision}" if opts.revision else ""),
                "posts": {label: input_id(given[id(ckpt)]) for label, ckpt in zip(plan.labels, plan.posts)},
                "settings": identity_settings(opts)}
    folder = RunFolder(out) if out is not None else MemoryRun()
    with folder.open(identity, opts.overwrite):
        advance, close = make_progress(progress)
        tally = Tally(plan, folder, key, advance)
        try:
            executor.run(plan, tally.jobs(), worker, tally.on_result)
        finally:
            close()
        table, skipped = collect(plan, tally.records)
        pairs = _pair_table(plan, tally.pair_records)
        notes = (plan.notes + _same_weights_notes(plan, tally.records) + cache_notes(tally.cache, worker)
                 + _executor_notes(executor))
        summary = summarize(table, pairs, skipped, base=plan.base.describe(),
                            posts={label: ckpt.describe() for label, ckpt in zip(plan.labels, plan.posts)},
                            matrices=len(plan.refs), opts=opts, settings=worker, cache=tally.cache,
                            resumed=tally.reused, notes=notes, control=control, seconds=time.time() - started)
        folder.write_table(table, pairs if len(plan.posts) > 1 else None)
        folder.write_summary(summary)
    return CompareResult(table, summary, Path(out) if out is not None else None, skipped, pairs)


def _options(options: CompareOptions | None, settings: dict) -> CompareOptions:
    known = {f.name for f in dataclasses.fields(CompareOptions)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise OrthoscopeError(f"unknown compare option {unknown[0]!r} (known: {', '.join(sorted(known))})")
    if options is None:
        return CompareOptions(**settings)
    return dataclasses.replace(options, **settings) if settings else options


def _as_set(value):
    return None if value is None else set(value)


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _post_inputs(posts: Any) -> list[tuple[str | None, Any]]:
    """[(name or None, model)] from one model, a list (items may be (name, model)) or {name: model}."""
    if isinstance(posts, Mapping) and not _is_state_dict(posts):
        items = list(posts.items())
    elif isinstance(posts, (list, tuple)):
        items = [item if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) else (None, item)
                 for item in posts]
    else:
        items = [(None, posts)]
    if not items:
        raise OrthoscopeError("no post model given")
    seen: set[str] = set()
    for name, _ in items:
        if name is None:
            continue
        if not isinstance(name, str) or not name.strip():
            raise OrthoscopeError(f"bad post name {name!r}: names are non-empty strings")
        if name in seen:
            raise OrthoscopeError(f"two posts are named {name!r}")
        seen.add(name)
    return items


def input_id(model: Any) -> str:
    """What run.json records about an input: an absolute path, a hub id, or the kind of object in memory."""
    if isinstance(model, (str, Path)):
        path = Path(model).expanduser()
        return str(path.resolve()) if path.exists() else str(model)
    return f"<in memory: {type(model).__name__}>"


def _control(asked: str | None, labels: list[str]) -> str | None:
    if asked is None:
        return CONTROL if CONTROL in labels else None
    if asked not in labels:
        raise OrthoscopeError(f"--control {asked!r} is not one of the posts ({', '.join(labels)})")
    return asked


def settings_key(settings: Settings) -> dict:
    """What a stored result must share with this run to be reused (its inputs are checked by content hash)."""
    return {"version": __version__, "dtype": str(settings.dtype), "seed": settings.seed,
            "metrics": sorted(settings.metrics), **_capped(settings.pair_draws)}


def identity_settings(opts: CompareOptions) -> dict:
    """run.json's settings: those that change numbers besides the selection (a folder of other ones is refused)."""
    return {"version": __version__, "precision": opts.precision, "seed": opts.seed, **_capped(opts.pair_draws)}


def _capped(pair_draws: int | None) -> dict:
    """{"pair_draws": cap} where p_pair's draws are capped; nothing otherwise (folders of uncapped runs stay valid)."""
    return {} if pair_draws is None else {"pair_draws": pair_draws}


class Tally:
    """Loads what is stored, makes the jobs, stores each result as it arrives, counts progress."""

    def __init__(self, plan: Plan, folder: RunFolder | MemoryRun, key: dict, progress: Progress | None):
        self.plan, self.folder, self.key, self.progress = plan, folder, key, progress
        self.records: dict[tuple[int, str], dict] = {}
        self.pair_records: dict[str, dict] = {}
        self.cache = {"hits": 0, "misses": 0, "not_stored": 0}
        self.done = self.reused = 0

    def jobs(self) -> list[Job]:
        """One job per matrix, carrying the hashes its stored results were made from."""
        jobs, pairs = [], self.plan.pairs()
        for ref in self.plan.refs:
            known = {}
            for i, label in enumerate(self.plan.labels):
                record = self.folder.load_part(label, ref.name, self.key)
                hashes = record.get("hashes") if record else None
                if isinstance(hashes, dict):
                    self.records[(i, ref.name)] = record
                    known[i] = (hashes.get("base"), hashes.get("post"))
            known_pairs = {}
            if pairs:
                stored = self.folder.load_pairs(ref.name, self.key) or {}
                self.pair_records[ref.name] = stored
                for i, j in pairs:
                    entry = stored.get("pairs", {}).get(_pair_key(self.plan, i, j))
                    if isinstance(entry, dict) and isinstance(entry.get("hashes"), dict):
                        h = entry["hashes"]
                        known_pairs[(i, j)] = (h.get("base"), h.get("post_a"), h.get("post_b"))
            jobs.append(Job(ref, tuple(range(len(self.plan.posts))), known, pairs, known_pairs))
        return jobs

    def on_result(self, job: Job, result: JobResult) -> None:
        name = job.ref.name
        for i, record, arrays in result.posts:
            if record is None:
                self.reused += 1
                continue
            self.folder.save_part(self.plan.labels[i], name, self.key, record, arrays)
            self.records[(i, name)] = record
        if result.pairs:
            stored = dict(self.pair_records.get(name, {}).get("pairs", {}))
            for i, j, record in result.pairs:
                stored[_pair_key(self.plan, i, j)] = record
            self.pair_records[name] = {"pairs": stored}
            self.folder.save_pairs(name, self.key, self.pair_records[name])
        for counter, count in result.cache.items():
            self.cache[counter] += count
        self.done += 1
        if self.progress:
            self.progress(self.done, len(self.plan.refs), name)


def _pair_key(plan: Plan, i: int, j: int) -> str:
    return f"{plan.labels[i]}\x00{plan.labels[j]}"


def _ids(ref, label: str, step: int | None) -> dict:
    return {"post": label, "step": pd.NA if step is None else step, "name": ref.name, "layer": ref.layer,
            "kind": ref.kind, "expert": pd.NA if ref.expert is None else ref.expert,
            "rows": ref.shape[0], "cols": ref.shape[1]}


def collect(plan: Plan, records: dict[tuple[int, str], dict]) -> tuple[pd.DataFrame, list[dict]]:
    rows, skipped = [], []
    steps = plan.steps or [None] * len(plan.labels)
    for i, label in enumerate(plan.labels):
        for ref in plan.refs:
            record = records.get((i, ref.name)) or {"skipped": "no result"}
            if "metrics" in record:
                rows.append({**_ids(ref, label, steps[i]), **record["metrics"]})
            else:
                skipped.append({"post": label, "name": ref.name, "reason": record["skipped"]})
    if not rows:
        return empty_table(), skipped
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).fillna({NOTE: ""})  # no note in an older part
    # dtypes from the metric registry (Int64 / nullable where a metric was not asked for or not defined)
    return cast_columns(table).astype({"step": "Int64", "expert": "Int64"}), skipped


def _pair_table(plan: Plan, pair_records: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for i, j in plan.pairs():
        key = _pair_key(plan, i, j)
        for ref in plan.refs:
            entry = pair_records.get(ref.name, {}).get("pairs", {}).get(key)
            if entry is None:
                continue
            value = entry.get("update_cos")
            rows.append({"post_a": plan.labels[i], "post_b": plan.labels[j], "name": ref.name, "layer": ref.layer,
                         "kind": ref.kind, "expert": pd.NA if ref.expert is None else ref.expert,
                         "update_cos": math.nan if value is None else float(value)})
    table = pd.DataFrame(rows, columns=list(UPDATE_COS_COLUMNS))
    return table.astype({"layer": "int64", "expert": "Int64", "update_cos": "float64"})


def update_cos_summary(pairs: pd.DataFrame) -> list[dict]:
    """Per pair of posts and kind: the median update_cos over matrices where it is defined, and n."""
    out = []
    for (a, b, kind), frame in pairs.groupby(["post_a", "post_b", "kind"], sort=False):
        values = frame.update_cos.dropna()
        out.append({"post_a": a, "post_b": b, "kind": kind,
                    "median": float(values.median()) if len(values) else None, "n": int(len(values))})
    return out


def summarize(table: pd.DataFrame, pairs: pd.DataFrame, skipped: list[dict], *, base: dict, posts: dict[str, dict],
              matrices: int, opts: CompareOptions, settings: Settings, cache: dict, resumed: int, notes: list[str],
              control: str | None, seconds: float) -> dict:
    """summary.json of a run: `base` and `posts` are the inputs' `describe()`, `cache` the hit counters."""
    from orthoscope.verdicts import compute_verdicts

    return {
        "orthoscope_version": __version__,
        "torch_version": torch.__version__,
        "base": base,
        "posts": posts,
        "settings": {"precision": opts.precision, "svd_dtype": str(settings.dtype), "device": settings.device,
                     "seed": settings.seed, "pair_draws": settings.pair_draws, "metrics": sorted(settings.metrics),
                     "route": "full" if needs_post_svd(settings.metrics) else "one-svd",
                     "executor": opts.executor.name, "executor_options": opts.executor.describe(),
                     "cache": _cache_folder(settings), "control": control, **selection(opts)},
        "cache": cache if settings.cache else None,
        "matrices": matrices,
        "resumed": resumed,
        "notes": (notes + p_pair_notes(settings.metrics, settings.pair_draws, table) + change_notes(table)
                  + matrix_notes(table)),
        "skipped": skipped,
        "unchanged": unchanged_counts(table),
        "per_kind": aggregate(table, "kind"),
        "per_layer": aggregate(table, "layer"),
        "update_cos": update_cos_summary(pairs),
        "verdicts": compute_verdicts(table, control, metrics_label(settings.metrics)),
        "seconds": round(seconds, 3),
    }


def _cache_folder(settings: Settings) -> str | None:
    if not settings.cache:
        return None
    return settings.cache_dir or str(default_dir())


def _same_weights_notes(plan: Plan, records: dict[tuple[int, str], dict]) -> list[str]:
    """A note for each post whose every analysed matrix holds the same bytes as the base's (by the content
    hashes of its records, not the sampled fingerprint: a changed matrix never gets this note)."""
    notes = []
    for i, label in enumerate(plan.labels):
        hashes = [(records.get((i, ref.name)) or {}).get("hashes") for ref in plan.refs]
        if hashes and all(isinstance(h, dict) and h.get("base") is not None and h.get("base") == h.get("post")
                          for h in hashes):
            notes.append(f"post {label} holds the same bytes as the base in every analysed matrix: expect no change")
    return notes


def _executor_notes(executor) -> list[str]:
    """What the executor says about its run (the local executor: a given --workers lowered); an executor
    without `notes()` says nothing."""
    notes = getattr(executor, "notes", None)
    return list(notes()) if callable(notes) else []


def cache_notes(stats: dict, settings: Settings) -> list[str]:
    if not settings.cache or not stats.get("not_stored"):
        return []
    return [f"base-SVD cache full or not writable: {stats['not_stored']} factorisations not stored in "
            f"{_cache_folder(settings)} "
            "(raise ORTHOSCOPE_CACHE_LIMIT or --cache-limit, or run `orthoscope cache clear`)"]
