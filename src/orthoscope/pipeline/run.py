"""`compare`: stream a base and its post models matrix by matrix into a table."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch

from orthoscope._version import __version__
from orthoscope.errors import OrthoscopeError
from orthoscope.kernels import resolve_device
from orthoscope.kernels.precision import resolve_precision
from orthoscope.pipeline.cache import DIR_ENV, default_dir, default_limit_gib
from orthoscope.pipeline.executors import EXECUTORS, Job, Result, Settings, run_local, run_ray
from orthoscope.pipeline.measure import METRIC_COLUMNS, needs_post_svd, resolve_metrics
from orthoscope.pipeline.pairing import Plan, make_plan
from orthoscope.pipeline.store import RunStore, atomic_write, write_text
from orthoscope.pipeline.summary import ID_COLUMNS, aggregate, empty_table
from orthoscope.sources import open_checkpoint

Progress = Callable[[int, int, str], None]


@dataclass
class CompareResult:
    """What `compare` returns: the table (one row per post and matrix) and the summary."""

    table: pd.DataFrame
    summary: dict
    out: Path | None = None
    skipped: list[dict] = field(default_factory=list)


def compare(
    base: str | Path,
    posts: str | Path | Sequence[str | Path],
    out: str | Path | None = None,
    *,
    layers: set[int] | None = None,
    kinds: set[str] | None = None,
    include_embeddings: bool = False,
    metrics: str | Sequence[str] | None = None,
    precision: str = "auto",
    device: str = "cpu",
    seed: int = 0,
    revision: str | None = None,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    cache_limit_gib: float | None = None,
    executor: str = "local",
    address: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> CompareResult:
    """Compare a base checkpoint with one or more post-trained versions.

    Each matrix pair is read, decomposed and measured on its own; with `out`,
    every result is written as it finishes and a rerun with the same arguments
    recomputes nothing that finished. `metrics` is `all` (default), `sign-free`
    (one SVD per matrix: scaling, asym, sym_frac and its null) or a list of
    column names; the post SVD runs only if an asked metric needs it. Base SVDs
    are cached on disk (`cache_dir`, default ~/.cache/orthoscope/svd) and reused
    for every later post model and run. `executor="ray"` runs one task per
    matrix on a Ray cluster (`address`, or a local one with `workers` CPUs).

    >>> result = compare("./base", ["./instruct", "./reasoning"], "runs/mine")  # doctest: +SKIP
    >>> result.table.groupby(["post", "kind"]).a_geo.median()                    # doctest: +SKIP
    """
    started = time.time()
    if executor not in EXECUTORS:
        raise OrthoscopeError(f"unknown executor {executor!r} (use {' or '.join(EXECUTORS)})")
    post_specs = [posts] if isinstance(posts, (str, Path)) else list(posts)
    base_ckpt = open_checkpoint(base, revision)
    plan = make_plan(base_ckpt, [open_checkpoint(p, base=base_ckpt) for p in post_specs], layers, kinds, include_embeddings)
    asked = resolve_metrics(metrics)
    dtype = resolve_precision(precision, asked)
    # a Ray driver need not have the GPU its workers use
    dev = torch.device(device) if executor == "ray" else resolve_device(device)
    settings = Settings(dtype, str(dev), seed, asked, cache=cache, cache_dir=_explicit_cache_dir(cache_dir),
                        cache_limit_gib=(cache_limit_gib if cache_limit_gib is not None else default_limit_gib())
                        if cache else None,
                        started=started, threads=1 if executor == "ray" else None)
    out_path = Path(out) if out is not None else None
    store = RunStore(out_path)
    keys = [_run_key(plan, i, settings) for i in range(len(plan.posts))]
    finished = _finished(plan, store, keys)
    jobs = _jobs(plan, finished)
    tally = _Tally(plan, store, keys, finished, len(plan.refs) - len(jobs), progress)
    if executor == "ray":
        run_ray(plan, jobs, settings, tally.on_result, address, workers)
    else:
        run_local(plan, jobs, settings, tally.on_result)
    table, skipped = _collect(plan, tally.records)
    summary = _summary(plan, table, skipped, precision, settings, executor, tally.cache, time.time() - started)
    if out_path is not None:
        _write_outputs(out_path, table, summary)
    return CompareResult(table, summary, out_path, skipped)


def _run_key(plan: Plan, index: int, settings: Settings) -> dict:
    return {
        "version": __version__,
        "base": plan.base.fingerprint(),
        "post": plan.posts[index].fingerprint(),
        "dtype": str(settings.dtype),
        "seed": settings.seed,
        "metrics": sorted(settings.metrics),
    }


def _finished(plan: Plan, store: RunStore, keys: list[dict]) -> dict[tuple[int, str], dict]:
    """Records already stored with the same key (resume), by (post index, matrix name)."""
    records = {}
    for i, label in enumerate(plan.labels):
        for ref in plan.refs:
            record = store.load(label, ref.name, keys[i])
            if record is not None:
                records[(i, ref.name)] = record
    return records


def _jobs(plan: Plan, finished: dict[tuple[int, str], dict]) -> list[Job]:
    """One job per matrix that some post still lacks."""
    jobs = []
    for ref in plan.refs:
        todo = tuple(i for i in range(len(plan.posts)) if (i, ref.name) not in finished)
        if todo:
            jobs.append(Job(ref, todo))
    return jobs


class _Tally:
    """Stores each result as it arrives, counts progress and cache use, keeps the records for the table."""

    def __init__(self, plan: Plan, store: RunStore, keys: list[dict], records: dict, already_done: int,
                 progress: Progress | None):
        self.plan, self.store, self.keys, self.progress = plan, store, keys, progress
        self.records, self.done = records, already_done
        self.cache = {"hits": 0, "misses": 0, "not_stored": 0}
        if progress and already_done:
            progress(already_done, len(plan.refs), "resumed")

    def on_result(self, job: Job, results: list[Result], cache_stats: dict) -> None:
        for i, record, arrays in results:
            self.store.save(self.plan.labels[i], job.ref.name, self.keys[i], record, arrays)
            self.records[(i, job.ref.name)] = record
        for name, count in cache_stats.items():
            self.cache[name] += count
        self.done += 1
        if self.progress:
            self.progress(self.done, len(self.plan.refs), job.ref.name)


def _collect(plan: Plan, records: dict[tuple[int, str], dict]) -> tuple[pd.DataFrame, list[dict]]:
    rows, skipped = [], []
    for i, label in enumerate(plan.labels):
        for ref in plan.refs:
            record = records.get((i, ref.name)) or {"skipped": "no result"}
            ids = {"post": label, "step": pd.NA, "name": ref.name, "layer": ref.layer, "kind": ref.kind,
                   "expert": pd.NA if ref.expert is None else ref.expert, "rows": ref.shape[0], "cols": ref.shape[1]}
            if "metrics" in record:
                rows.append({**ids, **record["metrics"]})
            else:
                skipped.append({"post": label, "name": ref.name, "reason": record["skipped"]})
    if not rows:
        return empty_table(), skipped
    table = pd.DataFrame(rows, columns=list(ID_COLUMNS + METRIC_COLUMNS))
    # NaN where a metric was not asked for; a whole integer column stays int64
    return table.astype({"intruders": "Int64" if table.intruders.isna().any() else "int64",
                         "step": "Int64", "expert": "Int64"}), skipped


def _summary(plan: Plan, table: pd.DataFrame, skipped: list[dict], precision: str, settings: Settings,
             executor: str, cache_stats: dict, seconds: float) -> dict:
    return {
        "orthoscope_version": __version__,
        "torch_version": torch.__version__,
        "base": plan.base.describe(),
        "posts": {label: ckpt.describe() for label, ckpt in zip(plan.labels, plan.posts)},
        "settings": {"precision": precision, "svd_dtype": str(settings.dtype), "device": settings.device,
                     "seed": settings.seed, "metrics": sorted(settings.metrics),
                     "route": "full" if needs_post_svd(settings.metrics) else "one-svd",
                     "executor": executor, "cache": _cache_folder(settings)},
        "cache": cache_stats if settings.cache else None,
        "matrices": len(plan.refs),
        "notes": plan.notes + _cache_notes(cache_stats, settings),
        "skipped": skipped,
        "per_kind": aggregate(table, "kind"),
        "per_layer": aggregate(table, "layer"),
        "seconds": round(seconds, 3),
    }


def _explicit_cache_dir(cache_dir: str | Path | None) -> str | None:
    """The folder the user named (argument or $ORTHOSCOPE_CACHE_DIR), absolute; None lets each
    worker use its own default (~/.cache/orthoscope/svd of the user it runs as)."""
    if cache_dir is None and not os.environ.get(DIR_ENV):
        return None
    return str(Path(cache_dir if cache_dir is not None else default_dir()).expanduser().resolve())


def _cache_folder(settings: Settings) -> str | None:
    if not settings.cache:
        return None
    return settings.cache_dir or str(default_dir())


def _cache_notes(stats: dict, settings: Settings) -> list[str]:
    if not settings.cache or not stats.get("not_stored"):
        return []
    return [f"base-SVD cache full or not writable: {stats['not_stored']} factorisations not stored in "
            f"{_cache_folder(settings)} (raise ORTHOSCOPE_CACHE_LIMIT or --cache-limit, or run `orthoscope cache clear`)"]


def _write_outputs(out: Path, table: pd.DataFrame, summary: dict) -> None:
    atomic_write(out / "metrics.parquet", lambda tmp: table.to_parquet(tmp, index=False))
    atomic_write(out / "metrics.csv", lambda tmp: table.to_csv(tmp, index=False))
    write_text(out / "summary.json", json.dumps(summary, indent=2))
