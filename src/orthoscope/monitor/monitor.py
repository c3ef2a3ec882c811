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

The analysis and the folder are `series.Series`'. With `background=True` a step's weights are
copied at `measure` (the training waits only for that copy) and the rest (analysis, the step's
summary, the writes) runs in a worker process (`worker.py`, `child.py`), steps in order; `measure`
gives a Future of the StepResult, `wait()`/`close()` (or `with Monitor(...)`) drain the queue, and
the monitor's `table`, `summary`, ... mirror the worker's series. In line, a step's matrices run on one
thread per core (`lanes.py`); `background="auto"` chooses between the two (`choose_mode`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch

from orthoscope.metrics.nulls import MONITOR_PAIR_DRAWS
from orthoscope.metrics.registry import sign_free
from orthoscope.monitor.lanes import Lanes, drain_lanes
from orthoscope.monitor.live import MonitorError, live_checkpoint, snapshot
from orthoscope.monitor.series import Job, Series
from orthoscope.monitor.step import LOGGED, StepResult, warn_unmeasured  # noqa: F401 - LOGGED re-exported
from orthoscope.monitor.worker import Worker
from orthoscope.pipeline.executors.workers import physical_cores
from orthoscope.pipeline.filters import positive_int
from orthoscope.pipeline.options import CompareOptions
from orthoscope.pipeline.pairing import make_plan
from orthoscope.pipeline.run import identity_settings, input_id
from orthoscope.sources import Checkpoint, open_checkpoint
from orthoscope.sources.memory import MemoryTensors

log = logging.getLogger("orthoscope.monitor")

AUTO = "auto"
"""`Monitor(background=AUTO)`: a worker process where the training leaves it a core, else in line (`choose_mode`)."""

MONITOR_METRICS = sign_free()
"""The default set: the sign-free columns, all from the one-SVD route (rel_delta, a_geo, disp, z_pair and
its p_pair, whose BH count the rotation verdict rests on; p_gauss; `intruders` from the post's Gram: no
post SVD). p_pair's sign draws are the costliest column on small matrices (see docs/benchmarks.md); a
monitor that must be cheaper can pass `metrics=MONITOR_METRICS - {"p_pair"}` (BH counts then from
p_gauss, no rotation verdict)."""


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

    A folder written before by a monitor of the same base and settings is carried on (a training restarted or
    resumed; another's is refused, `overwrite=True` clears it): its steps stay, and a step measured again
    replaces its rows. Measuring step s while the folder holds steps after s drops those (rows, skips, summary
    entries, records; one warning names them): they belong to another trajectory, an earlier run into the same
    folder, or the part of a crashed run after the checkpoint a resume starts from. A resume that measures its
    checkpoint's step again (the same weights) keeps the steps up to it and drops the crashed run's later ones
    at once; one that measures only later steps replaces them one by one, and those it never reaches stay.

    `background=True` measures without holding the training up: `measure` copies the measured
    matrices to CPU memory (synchronously, so later optimizer steps cannot change them; in a
    distributed run every rank takes part in the gathers then) and hands the analysis, summary and
    writes to a worker process (started with the monitor, on rank 0; torch at one thread there;
    it never shares the training's GIL), which runs the steps in order and alone writes the run
    folder. A base given as a module or state dict is sent to it once. At most `pending` steps are
    held (queued or being analysed; each a CPU copy of the measured matrices): when the worker is
    that far behind, `measure` waits for it. `measure` then returns a `concurrent.futures.Future`
    of the StepResult (None if the step failed: a warning says why, and later steps go on; a worker
    that dies is replaced at the next step); `wait()` returns when every step is done, `close()`
    also lets the process go (kept idle a while for the next monitor: `worker.IDLE_SECONDS`), and
    `with Monitor(...) as m:` closes at the end. Read `table`, `summary`, `seconds`, `notes` and
    `counts` after `wait()`. In line (`background=False`), `measure` analyses the step before it returns,
    its matrices on one thread per core (one on a GPU, and one after another in a distributed run, whose
    gathers are collective; `ORTHOSCOPE_MONITOR_LANES` caps them), and gives the StepResult.
    `background="auto"` (`AUTO`; the lab's and the callback's choice) takes the worker process where the
    training leaves it a core (a CUDA device, or torch on fewer threads than the cores) and measures in line
    otherwise: a worker beside a training that takes every core slows its threads more than the analysis
    costs in line (`choose_mode`; `mode` says which was taken and why).

    `measure(model, step)` takes an nn.Module (CPU or CUDA; DDP and torch.compile wrappers,
    PEFT LoRA models: the merged weights), or a state dict. In a distributed run call it on
    every rank: sharded parameters (FSDP2 DTensors, DeepSpeed ZeRO-3) are gathered one matrix at
    a time, FSDP (v1) ones one FSDP unit at a time, rank 0 measures and writes, the others return None.

    >>> import tempfile
    >>> weights = {"model.layers.0.mlp.up_proj.weight": torch.randn(16, 8)}
    >>> monitor = Monitor(weights, tempfile.mkdtemp())
    >>> weights["model.layers.0.mlp.up_proj.weight"] *= 1.01
    >>> result = monitor.measure(weights, step=10)
    >>> round(result.logs()["orthoscope/rel_delta"], 4), result.logs()["orthoscope/a_geo"] > 1, result.label
    (0.01, True, 'step-10')
    >>> with Monitor(weights, background=True) as background:   # the analysis in a worker process
    ...     weights["model.layers.0.mlp.up_proj.weight"] *= 1.01
    ...     future = background.measure(weights, step=20)
    >>> round(future.result().logs()["orthoscope/rel_delta"], 4), list(background.table.post)
    (0.01, ['step-20'])
    """

    def __init__(self, base: Any, output: str | Path | None = None, *, metrics: Any = None, hold_gib: float = 2.0,
                 records: bool = False, overwrite: bool = False, background: bool | str = False, pending: int = 2,
                 **settings: Any):
        self.options = CompareOptions(metrics=MONITOR_METRICS if metrics is None else metrics,
                                      **{"pair_draws": MONITOR_PAIR_DRAWS, **settings})
        opts = self.options
        self.base = _base_checkpoint(base, opts.revision)
        identity = {"base": input_id(base) + (f"@{opts.revision}" if opts.revision else ""),
                    "posts": {"step-*": "<monitored in training>"},
                    "settings": identity_settings(opts)}
        self.series = Series(self.base, opts, output, identity, hold_gib=hold_gib, records=records,
                             source=base if isinstance(base, (str, Path)) else None)
        self.background, self.mode = choose_mode(background, self.series.settings.device)
        self.waited = 0.0  # what measure() held the caller up in background: copies, and waits for the worker
        if output is not None and _rank() == 0:
            self.series.claim(overwrite)  # a folder of another run is refused here, not mid-training
        self.worker = None
        if self.background:
            if not positive_int(pending):
                raise ValueError(f"pending must be a positive integer, not {pending!r}")
            if _rank() == 0:  # the others only take part in the gathers
                self.worker = Worker(self._recipe, self.series.adopt, pending)
        else:  # in line the training waits: the step's matrices on every core (one on a GPU), as a drain does;
            # one after another in a distributed run, whose gathers are collective: every rank reads in plan order
            device = self.series.settings.device
            self.series.lanes = Lanes(lambda jobs: 1 if _world_size() > 1 else drain_lanes(device, jobs))
        log.debug("orthoscope: monitor %s", self.mode)

    # ------------------------------------------------------------------ what was measured
    @property
    def table(self):
        """Every measured row so far (in background: those the worker has reported)."""
        return self.series.table

    @property
    def summary(self) -> dict:
        """The series' summary.json as of the last measured step."""
        return self.series.summary

    @property
    def skipped(self) -> list[dict]:
        return self.series.skipped

    @property
    def notes(self) -> list[str]:
        return self.series.notes

    @property
    def counts(self) -> dict:
        """Base-SVD cache hits, misses and entries not stored, over every step."""
        return self.series.counts

    @property
    def seconds(self) -> float:
        """The analysis of every step (in background: in the worker process)."""
        return self.series.seconds

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
            return self.series.analyse(plan, step, started)
        self.worker.reserve()
        try:
            job = Job(step, snapshot(post, plan.refs), plan.labels, plan.refs, plan.notes, plan.steps)
        except BaseException:
            self.worker.release()
            raise
        self.waited += time.time() - started
        return self.worker.submit(job, step)

    def observe(self, model: Any, step: int,
                callback: Callable[[StepResult | None], Any] | None = None) -> StepResult | Future | None:
        """`measure(model, step)` for a training loop the monitor must never stop: whatever it raises is the one
        warning (`warn_unmeasured`) and the result None; `callback` gets the result, now in line, when done in
        the background (`on_result`). Returns what `measure` gave (None after a failure)."""
        try:
            measured = self.measure(model, step)
        except Exception as error:  # noqa: BLE001 - whatever goes wrong, training goes on
            warn_unmeasured(log, step, error)
            measured = None
        if callback is not None:
            on_result(measured, callback)
        return measured

    def wait(self) -> None:
        """Return when every step handed to the worker is measured and written (no-op without background)."""
        if self.worker is not None:
            self.worker.wait()

    def close(self) -> None:
        """`wait()`, then let the worker process go (idle, it may serve the next monitor; a later `measure` here
        starts or takes another)."""
        if self.worker is not None:
            self.worker.close()
        self.series.lanes.close()  # in line: the lanes' threads (a later measure starts them again)

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _recipe(self):
        return self.series.recipe(logging.getLogger("orthoscope").getEffectiveLevel())

    def _plan(self, post: Checkpoint, label: str):
        opts = self.options  # a model whose matrices are not the base's: PairingError naming the differences
        return make_plan(self.base, [post], opts.layers, opts.kinds, opts.include_embeddings, [label], [True])


def on_result(measured: StepResult | Future | None, callback: Callable[[StepResult | None], Any]) -> None:
    """Call `callback` with what `Monitor.measure` gave: now for an in-line StepResult (or None), when done for a
    background Future (then on the monitor's receiving thread, steps in order).

    >>> on_result(None, print)
    None
    """
    if isinstance(measured, Future):
        measured.add_done_callback(lambda done: callback(done.result()))
    else:
        callback(measured)


def choose_mode(background: bool | str, device: Any) -> tuple[bool, str]:
    """Whether a monitor measures in a worker process, and the mode in words (`Monitor.mode`).

    True or False is taken as said. `AUTO` ("auto", the lab's and the callback's choice) takes the worker process
    where the training leaves it a core: a CUDA device in this machine (taken as where the training's arithmetic
    runs), or torch in this process on fewer threads than the physical cores it may use (`physical_cores`:
    hyperthread siblings count once, as torch's default thread count counts them). Where the training takes every
    core a worker can only run in its gaps, and still slows its threads (their OpenMP barriers, their caches), so
    the step is measured in line instead, its matrices on every core (on a GPU analysis device, one after
    another).

    >>> choose_mode(False, "cpu")
    (False, 'in line')
    >>> choose_mode("sideways", "cpu")
    Traceback (most recent call last):
    ...
    ValueError: background must be True, False or 'auto', not 'sideways'
    """
    if isinstance(background, str):
        if background != AUTO:
            raise ValueError(f"background must be True, False or {AUTO!r}, not {background!r}")
        if torch.cuda.is_available():
            return True, "in the background (auto: a CUDA device trains, the CPU is free)"
        cores, threads = physical_cores(), torch.get_num_threads()
        if threads < cores:
            return True, f"in the background (auto: training takes {threads} of {cores} cores)"
        lanes = "every core" if str(device).startswith("cpu") else "one lane"
        return False, f"in line on {lanes} (auto: training takes all {cores} cores)"
    if not isinstance(background, bool):
        raise ValueError(f"background must be True, False or {AUTO!r}, not {background!r}")
    return background, "in the background" if background else "in line"


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


def _world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
