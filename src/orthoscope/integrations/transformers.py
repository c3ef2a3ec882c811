"""`OrthoscopeCallback`: the monitor in a transformers `Trainer` (and so in TRL's trainers, which are Trainers).

At every save (and/or every N steps) the model is measured against its base by
`orthoscope.monitor.Monitor`; the medians (overall and per kind: `orthoscope/rel_delta`,
`orthoscope/q/z_pair`, `orthoscope/bh_pair`, ...) go out through the trainer's own log call
at that step, so `report_to` (TensorBoard, W&B, MLflow, the console) shows them beside
`loss`; the series run folder is written to `<output_dir>/orthoscope` for `orthoscope
summary` and `orthoscope report`.

By default the monitor chooses (`Monitor(background="auto")`): where the training leaves a core
free (a CUDA device trains, or torch runs on fewer threads than the cores) it measures in the
background: at a measured step the training waits only for a CPU copy of the measured matrices;
the analysis runs in a worker process (on rank 0), and its values are logged at the first log
after they arrive, with `orthoscope/step` naming the step they measure (the trainer's step axis
runs a few steps ahead). At the last step the callback waits for the queue, so the final values
go out with the last log. Where the training takes every core it measures in line, on every core,
and logs at the measured step itself (a worker there would slow the training's threads more than
the analysis costs). `background=True` or `False` forces either.

How the values reach the reporters: a callback's `on_log` sees the same `logs` dict the
reporting callbacks see, in the order of the trainer's callback list, where `callbacks=`
come after the reporters. So the callback, at the start of training, moves itself to just
after `DefaultFlowCallback` (before every reporter); at a measured step it asks for a log
(`control.should_log`) and adds its values to that step's `logs` and `state.log_history`.

    trainer = Trainer(model, args, train_dataset=data,
                      callbacks=[OrthoscopeCallback("Qwen/Qwen2.5-0.5B")])   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import sys
from collections import deque
from concurrent.futures import Future
from typing import Any

from transformers import TrainerCallback

from orthoscope.monitor import Monitor
from orthoscope.monitor.monitor import AUTO

log = logging.getLogger("orthoscope.monitor")
FLOW = "DefaultFlowCallback"


class OrthoscopeCallback(TrainerCallback):
    """Measure the model against `base` at every save (`on_save`) and/or every `every_n_steps` steps.

    `base` is a folder, weights file, hub id, nn.Module or state dict; None takes the model's
    weights when training begins (the usual case: the model you pass to the trainer *is* the
    base; after `resume_from_checkpoint` name the base instead, or the resumed weights become it).
    `output` defaults to `<output_dir>/orthoscope`; `prefix` starts every logged name;
    other keywords are the monitor's (`metrics`, `kinds`, `layers`, `device`, `hold_gib`, `background`
    ("auto" here), ...).
    The model is checked against the base when training begins (a mismatch stops it there);
    later failures are warnings: the monitor never interrupts training. A training resumed from a
    checkpoint is measured when it begins, at the checkpoint's step: the series then drops the steps a
    run before measured after it (they belong to that run's trajectory), with a warning.
    """

    def __init__(self, base: Any = None, *, every_n_steps: int | None = None, on_save: bool = True,
                 output: str | os.PathLike | None = None, prefix: str = "orthoscope/", **monitor: Any):
        if every_n_steps is not None and (isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int)
                                          or every_n_steps <= 0):
            raise ValueError(f"every_n_steps must be a positive integer or None, not {every_n_steps!r}")
        self.base, self.every_n_steps, self.on_save_steps = base, every_n_steps, on_save
        self.output, self.prefix, self.settings = output, prefix, {"background": AUTO, **monitor}
        self.monitor: Monitor | None = None
        self.running: deque[tuple[int, Future]] = deque()  # measured in the background, in step order
        self.pending: deque[tuple[int, dict]] = deque()  # values to log
        self.measured: set[int] = set()

    # ------------------------------------------------------------------ events
    def on_init_end(self, args, state, control, **kwargs):
        _move_before_reporters(self)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        _move_before_reporters(self)
        if self.monitor is None:
            output = self.output if self.output is not None else os.path.join(args.output_dir, "orthoscope")
            self.monitor = Monitor(model if self.base is None else self.base, output, **self.settings)
        self.monitor.check(model)  # a model that is not the base's shape stops here, before any step
        if state.global_step > 0:  # resumed: measured now, so the steps of the run before after this one are dropped
            self._maybe_measure(state, control, model, True)  # (Monitor: they belong to the crashed trajectory)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        every = self.every_n_steps is not None and state.global_step % self.every_n_steps == 0
        self._maybe_measure(state, control, model, every or (self.on_save_steps and control.should_save))
        last = state.max_steps and state.global_step >= state.max_steps
        if last and self.monitor is not None:  # the final values go out with the trainer's last log
            self.monitor.wait()
        self._collect(control)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self._maybe_measure(state, control, model, self.on_save_steps and control.should_save)
        self._collect(control)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not self.pending or logs is None:
            return
        step, values = self.pending.popleft()  # one measured step per log (the names would collide)
        logs.update(values)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(values)

    def on_train_end(self, args, state, control, **kwargs):
        if self.monitor is not None:
            self.monitor.close()
        self._collect(control)
        while self.pending:  # measured steps the trainer did not log: kept in the history
            step, values = self.pending.popleft()
            state.log_history.append({**values, "step": step})

    # ------------------------------------------------------------------ measuring
    def _maybe_measure(self, state, control, model, due: bool) -> None:
        step = state.global_step
        if not due or step in self.measured or self.monitor is None or model is None:
            return
        self.measured.add(step)
        result = self.monitor.observe(model, step)  # a failure: the one warning, and None
        if isinstance(result, Future):
            self.running.append((step, result))
        elif result is not None:
            self.pending.append((step, result.logs(self.prefix)))
            control.should_log = True

    def _collect(self, control) -> None:
        """Move the background results that arrived (in step order) to the values to log, and ask for a log."""
        while self.running and self.running[0][1].done():
            step, future = self.running.popleft()
            result = future.result()  # None: the worker warned why
            if result is not None:
                self.pending.append((step, {**result.logs(self.prefix), f"{self.prefix}step": float(step)}))
        if self.pending:
            control.should_log = True


def _move_before_reporters(callback: OrthoscopeCallback) -> None:
    """Put `callback` right after DefaultFlowCallback in the trainer's callback list (found as the caller's
    `self`), so its `on_log` runs before the reporting callbacks; a warning if the list is not found."""
    frame = sys._getframe(1)
    for _ in range(4):
        frame = frame.f_back
        if frame is None:
            break
        owner = frame.f_locals.get("self")
        callbacks = getattr(owner, "callbacks", None)
        if isinstance(callbacks, list) and any(c is callback for c in callbacks):
            callbacks[:] = [c for c in callbacks if c is not callback]
            flows = [i for i, c in enumerate(callbacks) if type(c).__name__ == FLOW]
            callbacks.insert(flows[0] + 1 if flows else 0, callback)
            return
    log.warning("orthoscope: the trainer's callback list was not found: the orthoscope values reach "
                "state.log_history and the callbacks after this one, maybe not every report_to backend")
