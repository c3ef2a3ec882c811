"""`Monitor`: measure a model against its base while it trains, into a run folder read as a series.

Each `measure(model, step)` is one post named `step-N` of a compare run: the same
per-matrix job (`pipeline/work.analyse`), the same records (on disk with `records=True`), the same
metrics.parquet and summary.json (verdicts per step), so `orthoscope summary` and
`orthoscope report` read the folder as a checkpoint series. No checkpoint is written: the
weights are read from the live model one matrix at a time (`live.py`), and the base's
SVDs are computed once and held (`held.py`).

What the monitor refuses (a model whose matrices are not the base's, a parameter it cannot
read) raises; what happens during training is logged as a warning and training goes on:
NaN/Inf weights (those rows are skipped, with the reason), a run folder that cannot be
written (a full disk: the rows stay in memory and the next step writes them all).

With `background=True` a step's weights are copied at `measure` (the training waits only for
that copy) and the rest (analysis, the step's summary, the writes) runs on one worker thread
(`worker.py`), steps in order; `measure` gives a Future of the StepResult, `wait()`/`close()`
(or `with Monitor(...)`) drain the queue.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from orthoscope.errors import OrthoscopeError
from orthoscope.metrics.nulls import MONITOR_PAIR_DRAWS  # noqa: F401 - re-exported: the cap on p_pair's draws
from orthoscope.metrics.registry import sign_free
from orthoscope.monitor.held import HeldSVDCache
from orthoscope.monitor.live import MonitorError, live_checkpoint, snapshot
from orthoscope.monitor.worker import Worker
from orthoscope.pipeline.options import CompareOptions
from orthoscope.pipeline.pairing import make_plan, step_of
from orthoscope.pipeline.precision import resolve_precision
from orthoscope.pipeline.run import (
    UPDATE_COS_COLUMNS,
    Tally,
    cache_notes,
    collect,
    identity_settings,
    input_id,
    settings_key,
    summarize,
)
from orthoscope.pipeline.runfolder import MemoryRun, RunFolder
from orthoscope.pipeline.summary import empty_table
from orthoscope.pipeline.work import Settings, analyse
from orthoscope.sources import Checkpoint, open_checkpoint
from orthoscope.sources.memory import MemoryTensors

log = logging.getLogger("orthoscope.monitor")

MONITOR_METRICS = sign_free() | {"intruders"}
"""The default set: the one-SVD route (rel_delta, a_geo, disp, z_pair and its p_pair, whose BH count the
rotation verdict rests on; p_gauss) and `intruders` (from the post's Gram: no post SVD). p_pair's sign
draws are the costliest column on small matrices (see docs/benchmarks.md); a monitor that must be cheaper
can pass `metrics=MONITOR_METRICS - {"p_pair"}` (BH counts then from p_gauss, no rotation verdict)."""
LOGGED = ("rel_delta", "a_geo", "z_pair", "sym_frac", "intruders")
"""Columns whose medians `StepResult.logs` gives (those measured), overall and per kind."""
BRIEF = ("rel_delta", "a_geo", "z_pair")  # what `brief` shows besides one BH count
BH_COUNTS = ("bh_pair", "bh_gauss")
"""Counts of matrices significant after Benjamini-Hochberg (p_pair, p_gauss) that `logs` gives where measured."""


@dataclass
class StepResult:
    """One measured step: its rows, skipped matrices, and the series' summary after it."""

    step: int
    label: str
    table: pd.DataFrame
    skipped: list[dict]
    summary: dict
    seconds: float
    notes: list[str] = field(default_factory=list)

    def logs(self, prefix: str = "orthoscope/") -> dict[str, float]:
        """Medians of LOGGED overall and per kind (`orthoscope/rel_delta`, `orthoscope/q/z_pair`), the
        BH count of matrices with a significant pairing test (`orthoscope/bh_pair`) and `orthoscope/skipped`."""
        out: dict[str, float] = {}
        groups = [("", self.table)] + [(f"{kind}/", rows) for kind, rows in self.table.groupby("kind", sort=False)]
        for scope, rows in groups:
            for column in LOGGED:
                if column in rows:
                    values = pd.to_numeric(rows[column], errors="coerce").dropna()
                    if len(values):
                        out[f"{prefix}{scope}{column}"] = float(values.median())
        verdicts = (self.summary.get("verdicts") or {}).get("posts", {}).get(self.label, {})
        scopes = [("", verdicts.get("overall"))] + [(f"{k}/", g) for k, g in verdicts.get("kinds", {}).items()]
        for scope, group in scopes:
            for count in BH_COUNTS:
                bh = ((group or {}).get("rotation") or {}).get(count)
                if bh is not None:
                    out[f"{prefix}{scope}{count}"] = float(bh)
        out[f"{prefix}skipped"] = float(len(self.skipped))
        return out

    def brief(self) -> str:
        """One short line of the overall medians and BH counts, for a training log (under 60 characters).

        >>> table = pd.DataFrame({"kind": ["q", "k"], "rel_delta": [0.01, 0.03], "z_pair": [1.0, 3.0]})
        >>> StepResult(5, "step-5", table, [], {}, 0.25).brief()
        'rel_delta 0.02 z_pair 2 (0.25 s)'
        """
        logs = self.logs("")
        shown = [f"{c} {logs[c]:.3g}" for c in BRIEF if c in logs]
        bh = next((c for c in BH_COUNTS if c in logs), None)
        shown += [f"{bh} {int(logs[bh])}/{len(self.table)}"] if bh else []
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        return " ".join(shown) + f" ({self.seconds:.2f} s{skipped})"


class Monitor:
    """Measure a model in training against `base`, step after step, into the run folder `output`.

    `base` is anything `compare` takes (folder, weights file, hub id, nn.Module, state dict); a
    module or state dict is copied once to the CPU, so passing the model before training starts
    is fine. Settings are `compare`'s (`metrics`, `layers`, `kinds`, `precision`, `device`,
    `seed`, `cache`, ...); `metrics` defaults to MONITOR_METRICS, `pair_draws` (p_pair's sign draws at most)
    to MONITOR_PAIR_DRAWS, 4096 (p_pair >= 1/4097; `pair_draws=None`: compare's rule). `hold_gib` bounds the base
    factors kept in memory. `output=None` keeps everything in memory (`monitor.table`). The folder
    gets metrics.parquet/.csv and summary.json at every step; `records=True` adds compare's
    per-matrix records (parts/, and spectra/ for your own analysis: a series' report draws none of
    them), 2 files per matrix and step.

    `background=True` measures without holding the training up: `measure` copies the measured
    matrices to CPU memory (synchronously, so later optimizer steps cannot change them; in a
    distributed run every rank takes part in the gathers then) and hands the analysis, summary and
    writes to one worker thread, which runs the steps in order. At most `pending` steps are held
    (queued or being analysed; each a CPU copy of the measured matrices): when the worker is that
    far behind, `measure` waits for it. `measure` then returns a `concurrent.futures.Future` of the
    StepResult (None if the step failed: a warning says why, and later steps go on); `wait()`
    returns when every step is done, `close()` also ends the thread, and `with Monitor(...) as m:`
    closes at the end. Read `table`, `summary` and `seconds` after `wait()`.

    `measure(model, step)` takes an nn.Module (CPU or CUDA; DDP and torch.compile wrappers,
    PEFT LoRA models: the merged weights), or a state dict. In a distributed run call it on
    every rank: sharded parameters (FSDP2 DTensors, DeepSpeed ZeRO-3) are gathered one matrix at
    a time, rank 0 measures and writes, the others return None.

    >>> import tempfile
    >>> weights = {"model.layers.0.mlp.up_proj.weight": torch.randn(16, 8)}
    >>> monitor = Monitor(weights, tempfile.mkdtemp())
    >>> weights["model.layers.0.mlp.up_proj.weight"] *= 1.01
    >>> result = monitor.measure(weights, step=10)
    >>> round(result.logs()["orthoscope/rel_delta"], 4), result.logs()["orthoscope/a_geo"] > 1, result.label
    (0.01, True, 'step-10')
    """

    def __init__(self, base: Any, output: str | Path | None = None, *, metrics: Any = None, hold_gib: float = 2.0,
                 records: bool = False, overwrite: bool = False, background: bool = False, pending: int = 2,
                 **settings: Any):
        self.options = CompareOptions(metrics=MONITOR_METRICS if metrics is None else metrics,
                                      **{"pair_draws": MONITOR_PAIR_DRAWS, **settings})
        opts = self.options
        self.started = time.time()
        self.settings = Settings(resolve_precision(opts.precision, opts.metrics), opts.executor.device(opts.device),
                                 opts.seed, opts.metrics, cache=opts.cache, cache_dir=opts.explicit_cache_dir(),
                                 cache_limit_gib=opts.cache_limit(), started=self.started,
                                 floor_fallback=opts.precision == "auto", pair_draws=opts.pair_draws)
        self.cache = HeldSVDCache(self.settings.cache_dir, self.settings.cache_limit_gib, self.started,
                                  hold_gib=hold_gib, disk=opts.cache)
        self.base = _base_checkpoint(base, opts.revision)
        self.key = settings_key(self.settings)
        self.identity = {"base": input_id(base) + (f"@{opts.revision}" if opts.revision else ""),
                         "posts": {"step-*": "<monitored in training>"},
                         "settings": identity_settings(opts)}
        self.folder = RunFolder(output) if output is not None else None
        self.records = records
        self.table, self.skipped = empty_table(), []
        self.notes: list[str] = []
        self.counts = {"hits": 0, "misses": 0, "not_stored": 0}
        self.seconds = 0.0  # the analysis of every step (in the worker, in background)
        self.waited = 0.0  # what measure() held the caller up in background: copies, and waits for the worker
        self.worker = Worker(pending) if background else None
        self.summary: dict = {}
        self._warned: set[str] = set()
        if self.folder is not None and _rank() == 0:
            # a folder of another run is refused here, not mid-training
            with self.folder.open(self.identity, overwrite):
                self._resume()

    # ------------------------------------------------------------------ the step
    def check(self, model: Any) -> None:
        """Raise MonitorError/PairingError now if `model`'s matrices are not the base's (names, shapes)."""
        self._plan(live_checkpoint(model, self.base.config), "step-0")

    def measure(self, model: Any, step: int) -> StepResult | Future | None:
        """Measure `model` as it is now, as post `step-<step>`; None on ranks other than 0.

        In background, a Future of the StepResult (see the class); this call waits while `pending`
        steps are held."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise MonitorError(f"step must be a non-negative integer, not {step!r}")
        started = time.time()
        label = f"step-{step}"
        post = live_checkpoint(model, self.base.config, f"<live model at step {step}>")
        plan = self._plan(post, label)
        if _rank() != 0:  # gathers are collective: read what rank 0 reads, in its order, and drop it
            snapshot(post, plan.refs, keep=False)
            return None
        if self.worker is None:
            return self._analyse(plan, step, started)
        self.worker.reserve()
        try:
            frozen = snapshot(post, plan.refs)
            job = functools.partial(self._in_background, dataclasses.replace(plan, posts=[frozen]), step)
        except BaseException:
            self.worker.release()
            raise
        self.waited += time.time() - started
        return self.worker.submit(job)

    def wait(self) -> None:
        """Return when every step handed to the worker is measured and written (no-op without background)."""
        if self.worker is not None:
            self.worker.wait()

    def close(self) -> None:
        """`wait()`, then end the worker thread (a later `measure` starts another)."""
        if self.worker is not None:
            self.worker.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _in_background(self, plan, step: int) -> StepResult | None:
        try:
            return self._analyse(plan, step, time.time())
        except Exception as error:  # noqa: BLE001 - whatever goes wrong, training goes on
            warn_unmeasured(log, step, error)
            return None

    def _analyse(self, plan, step: int, started: float) -> StepResult:
        """Compare's per-matrix job on every matrix of `plan`, the step's rows and summary, and the writes."""
        label, post = plan.labels[0], plan.posts[0]
        self._check_dtype(plan)
        with self._writing() as folder:
            tally = Tally(plan, folder if self.records else MemoryRun(), self.key, None)
            for job in tally.jobs():
                tally.on_result(job, analyse(plan.base, plan.posts, job, self.settings, self.cache))
            table, skipped = collect(plan, tally.records)
            post.files.digest = _digest(tally.records)
            for counter, count in tally.cache.items():
                self.counts[counter] += count
            self.seconds += time.time() - started
            self._append(label, table, skipped)
            self._summarize(plan, table, skipped, {**post.describe(), "step": step,
                                                   "seconds": round(time.time() - started, 3)}, tally.reused)
            self._guard(folder.write_table, self.table)
            self._guard(folder.write_summary, self.summary)
        if skipped:
            reasons = sorted({s["reason"] for s in skipped})
            log.warning("orthoscope: step %d: %d of %d matrices skipped (%s); training goes on", step, len(skipped),
                        len(plan.refs), "; ".join(reasons[:2]) + (" ..." if len(reasons) > 2 else ""))
        return StepResult(step, label, table, skipped, self.summary, time.time() - started, list(self.notes))

    def _summarize(self, plan, table: pd.DataFrame, skipped: list[dict], described: dict, reused: int) -> None:
        """The summary of this step alone (compare's `summarize`), merged into the series' (each post's entries
        are its own: the series' summary equals one made from the whole table, at the cost of one step)."""
        label = plan.labels[0]
        new = summarize(table, _no_pairs(), skipped, base=self.base.describe(), posts={label: described},
                        matrices=len(plan.refs), opts=self.options, settings=self.settings, cache=dict(self.counts),
                        resumed=reused, notes=[], control=None, seconds=self.seconds)
        notes = plan.notes + self.notes + cache_notes(self.counts, self.settings)
        self.summary = _merge(self.summary, new, label, notes, self.skipped)

    def _plan(self, post: Checkpoint, label: str):
        opts = self.options  # a model whose matrices are not the base's: PairingError naming the differences
        return make_plan(self.base, [post], opts.layers, opts.kinds, opts.include_embeddings, [label], [True])

    def _check_dtype(self, plan) -> None:
        ref = plan.refs[0]
        have, want = plan.posts[0].dtype(ref.tensor), self.base.dtype(ref.tensor)
        if have != want and "dtype" not in self._warned:
            self._warned.add("dtype")
            note = (f"the model is {str(have).removeprefix('torch.')}, the base {str(want).removeprefix('torch.')}: "
                    f"dW includes the base's rounding to the model's dtype (an untrained copy already shows a "
                    f"rel_delta near that dtype's precision)")
            self.notes.append(note)
            log.warning("orthoscope: %s", note)

    # ------------------------------------------------------------------ the folder
    @contextlib.contextmanager
    def _writing(self):
        """The run folder, locked, whose failed writes warn instead of raising (MemoryRun without output)."""
        if self.folder is None:
            yield MemoryRun()
            return
        with contextlib.ExitStack() as stack:
            try:
                folder = _Tolerant(stack.enter_context(self.folder.open(self.identity)), self._write_failed)
            except OrthoscopeError as error:  # not writable, full, locked by another process
                self._write_failed(error)
                folder = MemoryRun()
            yield folder

    def _guard(self, write, value) -> None:
        try:
            write(value)
        except OrthoscopeError as error:
            self._write_failed(error)

    def _write_failed(self, error: OrthoscopeError) -> None:
        log.warning("orthoscope: %s; the measurements stay in memory and are written at the next step "
                    "(training goes on)", error)

    def _resume(self) -> None:
        """Rows, posts and skips of a monitor that wrote this folder before (a restarted training)."""
        if not self.folder.metrics_parquet.is_file():
            return
        self.table = self.folder.read_table()
        self.summary = self.folder.read_summary(required=False)
        self.skipped = list(self.summary.get("skipped") or [])

    def _append(self, label: str, table: pd.DataFrame, skipped: list[dict]) -> None:
        kept = self.table[self.table["post"] != label] if len(self.table) else self.table
        frames = [f for f in (kept, table) if len(f)]
        self.table = pd.concat(frames, ignore_index=True) if frames else table
        self.skipped = [s for s in self.skipped if s.get("post") != label] + skipped



def warn_unmeasured(logger: logging.Logger, step: int, error: BaseException) -> None:
    """The one warning for a step the monitor could not measure (training goes on): the error's first line."""
    logger.warning("orthoscope: step %d not measured (%s: %s); training goes on", step, type(error).__name__,
                   str(error).splitlines()[0] if str(error) else "")

class _Tolerant:
    """A RunFolder whose record writes warn instead of raising (loads pass through)."""

    def __init__(self, folder: RunFolder, failed):
        self.folder, self.failed = folder, failed
        self.load_part, self.load_pairs = folder.load_part, folder.load_pairs
        self.write_table, self.write_summary = folder.write_table, folder.write_summary
        self.quiet = False

    def save_part(self, *args, **kwargs) -> None:
        self._save(self.folder.save_part, *args, **kwargs)

    def save_pairs(self, *args, **kwargs) -> None:
        self._save(self.folder.save_pairs, *args, **kwargs)

    def _save(self, save, *args, **kwargs) -> None:
        try:
            save(*args, **kwargs)
        except OrthoscopeError as error:
            if not self.quiet:  # one warning per step, not one per matrix
                self.failed(error)
            self.quiet = True


def _base_checkpoint(base: Any, revision: str | None) -> Checkpoint:
    """The base opened as compare opens it; a module or state dict copied to the CPU (training changes it)."""
    if isinstance(base, (str, Path)):
        return open_checkpoint(base, revision)
    live = live_checkpoint(base)
    copies = {name: live.read(name) for name in live.names()}
    return Checkpoint(live.spec.replace("<live", "<in-memory"), None, live.config, MemoryTensors(copies))


def _rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _digest(records: dict) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for (_, name), record in sorted(records.items()):
        digest.update(f"{name}|{(record.get('hashes') or {}).get('post')}".encode())
    return digest.hexdigest()


PER_POST = ("posts", "unchanged", "per_kind", "per_layer")  # summary.json entries keyed by post


def _merge(old: dict, new: dict, label: str, notes: list[str], skipped: list[dict]) -> dict:
    """The series summary: `new` (of post `label` alone) with every other post's entries kept from `old`."""
    def merged(before: dict | None, after: dict | None) -> dict:
        items = {k: v for k, v in (before or {}).items() if k != label} | (after or {})
        return dict(sorted(items.items(), key=lambda item: (step_of(item[0]) is None, step_of(item[0]) or 0)))

    out = {**new, **{key: merged(old.get(key), new.get(key)) for key in PER_POST}, "skipped": skipped}
    out["verdicts"] = {**new["verdicts"], "posts": merged((old.get("verdicts") or {}).get("posts"),
                                                          new["verdicts"].get("posts"))}
    others = set(old.get("posts") or {}) - {label}  # change notes ("<post>: ...") of the other posts are kept
    changes = [n for n in old.get("notes") or [] if n.split(":", 1)[0] in others]
    out["notes"] = notes + changes + new["notes"]
    return out


def _no_pairs() -> pd.DataFrame:
    return pd.DataFrame(columns=list(UPDATE_COS_COLUMNS))


