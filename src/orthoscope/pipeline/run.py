"""`compare`: stream a base and its post models matrix by matrix into a table."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch

from orthoscope._version import __version__
from orthoscope.architectures import MatrixRef, read_matrix
from orthoscope.kernels import resolve_device
from orthoscope.kernels.precision import resolve_precision
from orthoscope.pipeline.measure import METRIC_COLUMNS, Base, SkipMatrix, measure, prepare_base
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
    precision: str = "auto",
    device: str = "cpu",
    seed: int = 0,
    revision: str | None = None,
    progress: Progress | None = None,
) -> CompareResult:
    """Compare a base checkpoint with one or more post-trained versions.

    Each matrix pair is read, decomposed and measured on its own; with `out`,
    every result is written as it finishes and a rerun with the same arguments
    recomputes nothing that finished.

    >>> result = compare("./base", ["./instruct", "./reasoning"], "runs/mine")  # doctest: +SKIP
    >>> result.table.groupby(["post", "kind"]).a_geo.median()                    # doctest: +SKIP
    """
    started = time.time()
    post_specs = [posts] if isinstance(posts, (str, Path)) else list(posts)
    base_ckpt = open_checkpoint(base, revision)
    plan = make_plan(base_ckpt, [open_checkpoint(p) for p in post_specs], layers, kinds, include_embeddings)
    dtype = resolve_precision(precision, set(METRIC_COLUMNS))
    dev = resolve_device(device)
    out_path = Path(out) if out is not None else None
    store = RunStore(out_path)
    keys = [_run_key(plan, i, dtype, seed) for i in range(len(plan.posts))]
    for done, ref in enumerate(plan.refs, start=1):
        _analyse_matrix(plan, ref, store, keys, dtype, dev, seed)
        if progress:
            progress(done, len(plan.refs), ref.name)
    table, skipped = _collect(plan, store, keys)
    summary = _summary(plan, table, skipped, precision, dtype, dev, seed, time.time() - started)
    if out_path is not None:
        _write_outputs(out_path, table, summary)
    return CompareResult(table, summary, out_path, skipped)


def _run_key(plan: Plan, index: int, dtype: torch.dtype, seed: int) -> dict:
    return {
        "version": __version__,
        "base": plan.base.fingerprint(),
        "post": plan.posts[index].fingerprint(),
        "dtype": str(dtype),
        "seed": seed,
    }


def _analyse_matrix(plan: Plan, ref: MatrixRef, store: RunStore, keys: list[dict],
                    dtype: torch.dtype, device: torch.device, seed: int) -> None:
    todo = [i for i, label in enumerate(plan.labels) if store.load(label, ref.name, keys[i]) is None]
    if not todo:
        return
    try:
        base = prepare_base(read_matrix(plan.base, ref), dtype, device)
    except SkipMatrix as skip:
        for i in todo:
            store.save(plan.labels[i], ref.name, keys[i], {"skipped": str(skip)}, None)
        return
    for i in todo:
        _analyse_post(plan, ref, store, i, keys[i], base, seed)


def _analyse_post(plan: Plan, ref: MatrixRef, store: RunStore, i: int, key: dict, base: Base, seed: int) -> None:
    try:
        row, arrays = measure(base, read_matrix(plan.posts[i], ref), ref.name, seed)
    except SkipMatrix as skip:
        store.save(plan.labels[i], ref.name, key, {"skipped": str(skip)}, None)
        return
    store.save(plan.labels[i], ref.name, key, {"metrics": row}, arrays)


def _collect(plan: Plan, store: RunStore, keys: list[dict]) -> tuple[pd.DataFrame, list[dict]]:
    rows, skipped = [], []
    for i, label in enumerate(plan.labels):
        for ref in plan.refs:
            record = store.load(label, ref.name, keys[i]) or {"skipped": "no result"}
            ids = {"post": label, "name": ref.name, "layer": ref.layer, "kind": ref.kind,
                   "rows": ref.shape[0], "cols": ref.shape[1]}
            if "metrics" in record:
                rows.append({**ids, **record["metrics"]})
            else:
                skipped.append({"post": label, "name": ref.name, "reason": record["skipped"]})
    table = pd.DataFrame(rows, columns=list(ID_COLUMNS + METRIC_COLUMNS)) if rows else empty_table()
    return table.astype({"intruders": "int64"}) if rows else table, skipped


def _summary(plan: Plan, table: pd.DataFrame, skipped: list[dict], precision: str, dtype: torch.dtype,
             device: torch.device, seed: int, seconds: float) -> dict:
    return {
        "orthoscope_version": __version__,
        "torch_version": torch.__version__,
        "base": plan.base.describe(),
        "posts": {label: ckpt.describe() for label, ckpt in zip(plan.labels, plan.posts)},
        "settings": {"precision": precision, "svd_dtype": str(dtype), "device": str(device), "seed": seed},
        "matrices": len(plan.refs),
        "notes": plan.notes,
        "skipped": skipped,
        "per_kind": aggregate(table, "kind"),
        "per_layer": aggregate(table, "layer"),
        "seconds": round(seconds, 3),
    }


def _write_outputs(out: Path, table: pd.DataFrame, summary: dict) -> None:
    atomic_write(out / "metrics.parquet", lambda tmp: table.to_parquet(tmp, index=False))
    atomic_write(out / "metrics.csv", lambda tmp: table.to_csv(tmp, index=False))
    write_text(out / "summary.json", json.dumps(summary, indent=2))
