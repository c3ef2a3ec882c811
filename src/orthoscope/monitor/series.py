"""`Series`: the monitor's analysis of one step and the series it adds to (rows, summary, run folder).

A step is compare's per-matrix job (`pipeline/work.analyse`) on every matrix of a plan whose one
post is the model at that step, the same records, the step's summary merged into the series'
(`summary.json`, verdicts per step) and metrics.parquet/.csv rewritten. `Monitor` runs it in the
caller's process (in line) or has its worker process run it (`child.py`); in background the
monitor keeps a mirror: a `Series` that analyses nothing and `adopt`s what the worker reports after
each step (`update`: the step's rows and own summary, merged there as here, and the small state; a
message whose size does not grow with the series). The table is kept as the steps' frames,
concatenated when it is read (and kept so).

A run folder that cannot be written (a full disk) gives a warning and the rows stay in memory (the
next step writes them all); NaN/Inf matrices are skipped rows with their reason and a warning. A step
measured again replaces its rows; one measured while the series holds later steps drops those (another
trajectory: an earlier run into the folder, or a crashed run's steps past the checkpoint a resume starts
from), in the folder too, with a warning (`_drop_later`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from orthoscope.errors import OrthoscopeError
from orthoscope.monitor.held import HeldSVDCache
from orthoscope.monitor.lanes import Lanes
from orthoscope.monitor.step import StepResult, warn_unmeasured
from orthoscope.pipeline.options import CompareOptions
from orthoscope.pipeline.pairing import Plan, step_of
from orthoscope.pipeline.precision import resolve_precision
from orthoscope.pipeline.run import UPDATE_COS_COLUMNS, Tally, cache_notes, collect, settings_key, summarize
from orthoscope.pipeline.runfolder import MemoryRun, RunFolder
from orthoscope.pipeline.summary import empty_table
from orthoscope.pipeline.work import Settings, analyse
from orthoscope.sources import Checkpoint, open_checkpoint

log = logging.getLogger("orthoscope.monitor")

STATE = ("skipped", "summary", "notes", "counts", "seconds", "warned")
"""What a series holds besides its table (which travels a step at a time): see `state`."""
SMALL = ("notes", "counts", "seconds", "warned")
"""The part of STATE a worker sends whole after every step (`Update`): a few values, whatever the series' length."""


@dataclass
class Recipe:
    """What a worker process builds its `Series` from: plain values (it is pickled and sent once)."""

    source: Any  # a spec `open_checkpoint` opens (folder, file, hub id), or the in-memory base Checkpoint
    revision: str | None
    options: CompareOptions
    output: str | None
    identity: dict
    hold_gib: float
    records: bool
    started: float
    state: dict
    table: pd.DataFrame
    level: int = logging.WARNING  # the log level whose records the worker sends back


@dataclass
class Job:
    """One step for a worker: the plan's matrices, its one post (a snapshot) and its labels."""

    step: int
    post: Checkpoint
    labels: list[str]
    refs: list
    notes: list[str]
    steps: list[int | None]


@dataclass
class Update:
    """What a worker's step changed in its series, sent to the mirror with the step's StepResult (`adopt`): the
    SMALL state and `step`, the step's own summary and the notes it was merged with (the mirror merges them as
    the worker did). After a step that failed, `step` is None and `state` and `table` are the whole series'."""

    state: dict
    step: tuple[dict, list[str]] | None = None
    table: pd.DataFrame | None = None


class Series:
    """The base, the settings and the run folder of a monitor, and the series measured so far.

    >>> import torch
    >>> from orthoscope.monitor.live import live_checkpoint
    >>> from orthoscope.pipeline.pairing import make_plan
    >>> weights = {"model.layers.0.mlp.up_proj.weight": torch.eye(8)}
    >>> base = live_checkpoint({k: v.clone() for k, v in weights.items()})
    >>> series = Series(base, CompareOptions(metrics={"rel_delta"}), None, {}, hold_gib=0.1)
    >>> weights["model.layers.0.mlp.up_proj.weight"] *= 1.5
    >>> post = live_checkpoint(weights)
    >>> plan = make_plan(base, [post], None, None, False, ["step-3"], [True])
    >>> series.analyse(plan, 3, time.time()).table.rel_delta.round(3).tolist(), list(series.table.post)
    ([0.5], ['step-3'])
    """

    def __init__(self, base: Checkpoint, options: CompareOptions, output: str | Path | None, identity: dict, *,
                 hold_gib: float = 2.0, records: bool = False, started: float | None = None, source: Any = None):
        opts = self.options = options
        self.base, self.identity, self.records, self.hold_gib = base, identity, records, hold_gib
        self.source = base if source is None else source  # what a worker process opens the base from
        self.output = None if output is None else str(output)
        self.started = time.time() if started is None else started
        self.settings = Settings(resolve_precision(opts.precision, opts.metrics), opts.executor.device(opts.device),
                                 opts.seed, opts.metrics, cache=opts.cache, cache_dir=opts.explicit_cache_dir(),
                                 cache_limit_gib=opts.cache_limit(), started=self.started,
                                 floor_fallback=opts.precision == "auto", pair_draws=opts.pair_draws)
        self.key = settings_key(self.settings)
        self.folder = RunFolder(output) if output is not None else None
        self._cache: HeldSVDCache | None = None
        self._step: tuple[str, dict, list[str]] | None = None  # the last step's label, own summary, merged notes
        self._rows = threading.RLock()  # the table's frames: appended by the receiving thread, read by the caller's
        self.table, self.skipped = empty_table(), []
        self.notes: list[str] = []
        self.counts = {"hits": 0, "misses": 0, "not_stored": 0}
        self.seconds = 0.0  # the analysis of every step
        self.summary: dict = {}
        self.warned: set[str] = set()
        self.lanes = Lanes(lambda jobs: 1)  # the matrices one after another (a worker's drain sets more: child.py)

    @property
    def table(self) -> pd.DataFrame:
        """The rows of every step measured (the steps' frames concatenated here, when read, and kept so; safe to
        read while a background monitor's receiving thread appends)."""
        with self._rows:
            if self._frames:
                frames = [frame for frame in (self._table, *self._frames) if len(frame)]
                self._table = pd.concat(frames, ignore_index=True) if frames else self._frames[-1]
                self._frames = []
            return self._table

    @table.setter
    def table(self, table: pd.DataFrame) -> None:
        with self._rows:
            self._table, self._frames = table, []
            self._posts = set(table["post"]) if len(table) else set()  # the labels with rows (or measured) so far

    @property
    def cache(self) -> HeldSVDCache:
        """The base's factors, held in memory between steps (made at the first step that needs them)."""
        if self._cache is None:
            self._cache = HeldSVDCache(self.settings.cache_dir, self.settings.cache_limit_gib, self.started,
                                       hold_gib=self.hold_gib, disk=self.options.cache)
        return self._cache

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> Series:
        """The series a worker process analyses into (the base opened, or taken as sent)."""
        source = recipe.source
        base = source if isinstance(source, Checkpoint) else open_checkpoint(source, recipe.revision)
        series = cls(base, recipe.options, recipe.output, recipe.identity, hold_gib=recipe.hold_gib,
                     records=recipe.records, started=recipe.started, source=source)
        series.restore(recipe.state, recipe.table)
        return series

    def recipe(self, level: int = logging.WARNING) -> Recipe:
        """What a worker process needs to carry this series on (its state as of now)."""
        return Recipe(self.source, self.options.revision, self.options, self.output, self.identity, self.hold_gib,
                      self.records, self.started, self.state(), self.table, level)

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        """Everything measured so far but the table (`STATE`), as plain values."""
        return {name: getattr(self, name) for name in STATE}

    def restore(self, state: dict, table: pd.DataFrame | None = None) -> None:
        """Take `state` (and `table`) as this series' own: another process's series, or a folder's (`state` holds
        STATE, or SMALL: `Update`)."""
        for name in STATE:
            if name in state:
                setattr(self, name, state[name])
        if table is not None:
            self.table = table

    def update(self, result: StepResult | None) -> tuple[StepResult | None, Update]:
        """What a worker process sends after a step: `result` without the series' summary, and the `Update` that
        makes the mirror's series this one's (`adopt`)."""
        step, self._step = self._step, None
        if result is None or step is None or step[0] != result.label:  # failed: the whole series, once
            return result, Update(self.state(), table=self.table)
        return dataclasses.replace(result, summary={}), Update({name: getattr(self, name) for name in SMALL},
                                                               step[1:])

    def adopt(self, result: StepResult | None, update: Update) -> None:
        """What a worker measured (None: a step that failed) and what its series changed (`update`): the mirror's
        update. The step's rows are added, its summary merged as in the worker, and `result.summary` set to the
        series' summary after it."""
        if update.step is None:
            self.restore(update.state, update.table)
        else:
            self._append(result.label, result.table, result.skipped)
            self.restore(update.state)
            new, notes = update.step
            self.summary = _merge(self.summary, new, result.label, notes, self.skipped)
        if result is not None:
            result.summary = self.summary

    def claim(self, overwrite: bool) -> None:
        """Open the run folder now (a folder of another run is refused here, not mid-training) and take the rows,
        posts and skips of a monitor that wrote it before (a restarted training)."""
        with self.folder.open(self.identity, overwrite):
            if self.folder.metrics_parquet.is_file():
                self.table = self.folder.read_table()
                self.summary = self.folder.read_summary(required=False)
                self.skipped = list(self.summary.get("skipped") or [])

    # ------------------------------------------------------------------ the step
    def run(self, job: Job | int) -> StepResult | None:
        """`analyse` a worker's job; None (and the warning why) if it failed: training goes on. A bare step
        number is a step its monitor could not send (it warned): None, so that the answers stay in order."""
        if isinstance(job, int):
            return None
        plan = Plan(self.base, [job.post], job.labels, job.refs, job.notes, job.steps)
        try:
            return self.analyse(plan, job.step, time.time())
        except Exception as error:  # noqa: BLE001 - whatever goes wrong, training goes on
            warn_unmeasured(log, job.step, error)
            return None

    def analyse(self, plan, step: int, started: float) -> StepResult:
        """Compare's per-matrix job on every matrix of `plan`, the step's rows and summary, and the writes."""
        label, post = plan.labels[0], plan.posts[0]
        self._check_dtype(plan)
        with self._writing() as folder:
            tally = Tally(plan, folder if self.records else MemoryRun(), self.key, None)
            work = functools.partial(_analyse_job, plan, self.settings)
            for job, result in self.lanes.results(tally.jobs(), work, self.cache):
                tally.on_result(job, result)
            table, skipped = collect(plan, tally.records)
            post.files.digest = _digest(tally.records)
            for counter, count in tally.cache.items():
                self.counts[counter] += count
            self.seconds += time.time() - started
            dropped = self._append(label, table, skipped, warn=True)
            if isinstance(folder, _Tolerant):  # the folder opened: the dropped posts' records go too
                folder.remove(dropped)
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
        self._step = (label, new, notes)
        self.summary = _merge(self.summary, new, label, notes, self.skipped)

    def _check_dtype(self, plan) -> None:
        ref = plan.refs[0]
        have, want = plan.posts[0].dtype(ref.tensor), self.base.dtype(ref.tensor)
        if have != want and "dtype" not in self.warned:
            self.warned.add("dtype")
            note = (f"the model is {str(have).removeprefix('torch.')}, the base {str(want).removeprefix('torch.')}: "
                    f"dW includes the base's rounding to the model's dtype (an untrained copy already shows a "
                    f"rel_delta near that dtype's precision)")
            self.notes.append(note)
            log.warning("orthoscope: %s", note)

    def _append(self, label: str, table: pd.DataFrame, skipped: list[dict], warn: bool = False) -> list[str]:
        """The step's rows in place of any of the same post (a restarted training measuring a step again), after
        dropping the steps after it (`_drop_later`: warned about if `warn`); the posts dropped."""
        with self._rows:  # the rows change as one: a reader of `table` sees the series before or after the step
            dropped = self._drop_later(label, warn)
            if label in self._posts:
                held = self.table
                self.table = held[held["post"] != label]
            self._frames.append(table.copy(deep=False))  # the caller's StepResult.table stays its own
            self._posts.add(label)
        self.skipped = [s for s in self.skipped if s.get("post") != label] + skipped
        return dropped

    def _drop_later(self, label: str, warn: bool) -> list[str]:
        """Drop the posts of steps after `label`'s, with their rows, skips and summary entries (the posts dropped).

        Measuring step s while the series holds later steps means those belong to another trajectory: an earlier
        run into the same folder, or the part of a crashed run after the checkpoint a resume starts from. Kept,
        they would make one series of two trainings. The worker and the mirror both drop (the same posts: the
        mirror's series is the worker's), the one that analysed the step warns."""
        step = step_of(label)
        if step is None:
            return []
        held = self._posts | {s.get("post") for s in self.skipped} | set(self.summary.get("posts") or {})
        later = sorted((order[1], post) for post in held if post is not None and not (order := _order(post))[0]
                       and order[1] > step)  # `_order`: step_of, cached per label
        if not later:
            return []
        gone = {post for _, post in later}
        posts, table = self._posts - gone, self.table
        self.table = table[~table["post"].isin(gone)].reset_index(drop=True)
        self._posts = posts  # posts whose every matrix was skipped have no rows
        self.skipped = [s for s in self.skipped if s.get("post") not in gone]
        self.summary = _without(self.summary, gone)
        if warn:
            steps = f"step {later[0][0]}" if len(later) == 1 else f"steps {later[0][0]}-{later[-1][0]}"
            again = " again" if label in posts else ""
            log.warning("orthoscope: step %d measured%s: %s of an earlier run dropped from %s", step, again, steps,
                        self.output or "the series")
        return [post for _, post in later]

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


class _Tolerant:
    """A RunFolder whose record writes warn instead of raising (loads pass through)."""

    def __init__(self, folder: RunFolder, failed):
        self.folder, self.failed = folder, failed
        self.load_part, self.load_pairs = folder.load_part, folder.load_pairs
        self.write_table, self.write_summary = folder.write_table, folder.write_summary
        self.quiet = False

    def remove(self, posts: list[str]) -> None:
        """The per-matrix records (parts/, spectra/) of `posts`, dropped from the series (what cannot be removed
        stays: the table and summary no longer name those posts)."""
        for post in posts:
            for path in (self.folder.part_path, self.folder.spectra_path):
                shutil.rmtree(path(post, "-").parent, ignore_errors=True)

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


def _analyse_job(plan: Plan, settings: Settings, job, cache: HeldSVDCache):
    """Compare's per-matrix job on one matrix of `plan` (on whichever lane: `lanes.py`; the cache is thread-safe)."""
    return analyse(plan.base, plan.posts, job, settings, cache)


def _digest(records: dict) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for (_, name), record in sorted(records.items()):
        digest.update(f"{name}|{(record.get('hashes') or {}).get('post')}".encode())
    return digest.hexdigest()


PER_POST = ("posts", "unchanged", "per_kind", "per_layer")  # summary.json entries keyed by post


def _without(summary: dict, gone: set[str]) -> dict:
    """`summary` without the entries of the posts `gone` (theirs in PER_POST, the verdicts', their change notes)."""
    if not summary:
        return summary
    out = {**summary, **{key: {k: v for k, v in (summary.get(key) or {}).items() if k not in gone}
                         for key in PER_POST if key in summary}}
    if "verdicts" in summary:
        verdicts = summary["verdicts"]
        out["verdicts"] = {**verdicts, "posts": {k: v for k, v in (verdicts.get("posts") or {}).items()
                                                 if k not in gone}}
    out["notes"] = [n for n in summary.get("notes") or [] if n.split(":", 1)[0] not in gone]
    out["skipped"] = [s for s in summary.get("skipped") or [] if s.get("post") not in gone]
    return out


def _merge(old: dict, new: dict, label: str, notes: list[str], skipped: list[dict]) -> dict:
    """The series summary: `new` (of post `label` alone) with every other post's entries kept from `old`, posts in
    `_order` (`old`'s are, made here: a post after them is added at the end, without sorting them again)."""
    def merged(before: dict | None, after: dict | None) -> dict:
        before, after = before or {}, after or {}
        if label not in before and len(after) <= 1 and (
                not before or not after or _order(next(reversed(before))) <= _order(next(iter(after)))):
            return before | after
        items = {k: v for k, v in before.items() if k != label} | after
        return dict(sorted(items.items(), key=lambda item: _order(item[0])))

    out = {**new, **{key: merged(old.get(key), new.get(key)) for key in PER_POST}, "skipped": skipped}
    out["verdicts"] = {**new["verdicts"], "posts": merged((old.get("verdicts") or {}).get("posts"),
                                                          new["verdicts"].get("posts"))}
    others = set(old.get("posts") or {}) - {label}  # change notes ("<post>: ...") of the other posts are kept
    changes = [n for n in old.get("notes") or [] if n.split(":", 1)[0] in others]
    out["notes"] = notes + changes + new["notes"]
    return out


@functools.lru_cache(maxsize=1 << 16)
def _order(label: str) -> tuple[bool, int]:
    """Where post `label` goes in a series' summary: by step, posts without one last."""
    step = step_of(label)
    return step is None, step or 0


def _no_pairs() -> pd.DataFrame:
    return pd.DataFrame(columns=list(UPDATE_COS_COLUMNS))
