"""The monitor's background analysis in a worker process: `Worker` starts it, feeds it steps, gets results.

The worker is `orthoscope.monitor.child` (`child.py`, at idle priority: `PRELUDE`), started with `subprocess` (not
`multiprocessing`, whose spawn would import the user's `__main__` again: an unguarded training
script would run twice), with torch and the BLAS libraries at one thread. It never shares the
training's GIL: the analysis, the step's summary and the writes cost the training only a core.
Its imports run while the caller sets up (the process starts with the `Worker`).

The two ends talk over a `multiprocessing.connection` (a local socket with a fresh authkey; the
child listens and tells its address on its stdout). A sender thread here sends the recipe of the
series first (`series.Recipe`: a base given as a module or state dict goes once), then each
step's job (`series.Job`, the snapshot's tensors as raw bytes: `channel.py`); a receiver thread
takes the results in order, updates the monitor's mirror (`adopt`), resolves the step's Future and
gives its slot back, and logs the worker's warnings here, in the caller's logging. The child's stdin
stays open while this process lives: when it closes (this process ended, however), the child exits.

`reserve()` takes a slot (it waits while `pending` steps are held: the bound on the snapshots in
memory), `submit(job, step)` gives the step's `concurrent.futures.Future`; `wait()` returns when
every step is done, `close()` also lets the process go (a later `submit` starts another, carrying
the series on); the steps still queued when it is asked to close are analysed on one thread per core
(`lanes.py`: the caller only waits then). A process let go after a clean close is kept idle for the
next monitor of this process (the lab's next variant, a notebook's next training), which then skips
the start-up (`import torch` and the package): one spare at most, taken within half of
`IDLE_SECONDS` and only by a monitor with the same working folder, environment and import path; the
spare itself ends after `IDLE_SECONDS` without a new series, at `end_spares()`, or with this
process. A worker that dies (killed, out of memory) resolves its steps to None with a warning each;
the next step starts a new one. A step that cannot be pickled is warned about and skipped.
`cpu_seconds`, `start_cpu_seconds` (the workers' own counts) and `thread_cpu_seconds` (the two
threads here) say what the monitoring cost in CPU.

>>> import torch
>>> from orthoscope.monitor import Monitor
>>> monitor = Monitor({"model.layers.0.mlp.up_proj.weight": torch.eye(4)}, background=True, metrics={"rel_delta"})
>>> worker = monitor.worker
>>> worker.process.poll() is None   # started with the monitor, waiting for steps
True
>>> worker.close(); worker.process is None, worker.cpu_seconds >= worker.start_cpu_seconds > 0
(True, True)
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_for
from multiprocessing.connection import Client
from typing import Any

from orthoscope.monitor.channel import pack, receive, send_packed
from orthoscope.monitor.live import MonitorError
from orthoscope.monitor.step import warn_unmeasured

log = logging.getLogger("orthoscope.monitor")

CHILD = "orthoscope.monitor.child"
ADDRESS = b"orthoscope-monitor-address "  # how the worker's line with its address starts (child.py writes it)
DROPPED = "orthoscope-monitor-dropped"
"""The end of a series whose monitor was dropped unclosed (None ends a closed one): its caller may still be
training, so the steps left are not drained on every core."""
IDLE_SECONDS = 60.0
"""How long a worker process let go by its monitor waits for another series before it ends (a spare is
taken only within half the time its process said it would wait: never one that is ending on its own)."""
SLOW_SECONDS = 10.0
"""How long `measure` may wait for a free slot before the monitor says its worker is behind."""
ONE_THREAD = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""The worker's thread counts (torch's OpenMP, MKL, OpenBLAS): one each, on the core it takes."""


IDLE_ENV = "ORTHOSCOPE_MONITOR_IDLE"
"""Set to 0, the worker process keeps normal priority (see PRELUDE)."""
PRELUDE = """import os, runpy
if os.environ.get({env!r}) != "0" and hasattr(os, "SCHED_IDLE"):
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError:
        pass
runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
"""
"""The worker's first lines (`python -c`): SCHED_IDLE (Linux), then `child.py` as `__main__`. The priority is set
before any import of the package (torch, ~1.7 s CPU), which would otherwise run beside the first training steps
at normal priority; the threads the child starts later inherit it. The worker then runs only on CPU time the
training leaves idle, unless ORTHOSCOPE_MONITOR_IDLE=0.

A worker at normal priority beside a training whose threads take every core makes their OpenMP barriers wait
on the descheduled thread. When `pending` steps are held, `measure` waits and the training's threads sleep, so
the worker runs; but CPU kept busy by other work (other jobs, spinning threads) starves it, and the training
then waits for it: `Worker.reserve` warns, and ORTHOSCOPE_MONITOR_IDLE=0 is the way out."""


def child_command(module: str = CHILD) -> list[str]:
    """How the worker process is started: this interpreter at idle priority (`PRELUDE`) running `module` (the
    child, not as `-m`: its package's imports come after the priority), told how long to wait idle for another
    series."""
    return [sys.executable, "-c", PRELUDE.format(env=IDLE_ENV, module=module), str(IDLE_SECONDS)]


class _Spare:
    """A worker process whose series ended cleanly, connected and idle, waiting for the next monitor."""

    def __init__(self, process: subprocess.Popen, conn: Any, cpu: float, idle: float, context: tuple):
        self.process, self.conn, self.cpu, self.context = process, conn, cpu, context
        self.until = time.monotonic() + idle / 2  # taken only before then: it waits `idle` seconds

    def end(self, wait: bool = True) -> None:
        """Close the connection and the child's stdin (either ends it), then reap it (here, or in a daemon thread
        when not `wait`: a monitor being made does not wait for an unused spare to exit)."""
        for closing in (self.conn.close, self.process.stdin.close):
            try:
                closing()
            except OSError:
                pass
        if not wait:
            threading.Thread(target=self._reap, name="orthoscope-monitor-reap", daemon=True).start()
            return
        self._reap()

    def _reap(self) -> None:
        try:
            self.process.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_SPARES: list[_Spare] = []
_SPARES_LOCK = threading.Lock()


def _swap_spares(new: list[_Spare]) -> list[_Spare]:
    """Put `new` in the place of the kept spares; the ones it replaces."""
    with _SPARES_LOCK:
        old, _SPARES[:] = list(_SPARES), new
    return old


def _park(spare: _Spare) -> None:
    """Keep `spare` for the next monitor (one at most: an older one ends)."""
    for other in _swap_spares([spare]):
        other.end(wait=False)


def _take_spare() -> _Spare | None:
    """The idle worker process, if one was let go recently enough and is alive; None otherwise."""
    taken = None
    for spare in _swap_spares([]):
        if (taken is None and spare.process.poll() is None and time.monotonic() < spare.until
                and spare.context == _context()):
            taken = spare
        else:
            spare.end(wait=False)
    return taken


def _context() -> tuple:
    """What a worker process inherits when it starts and a series may rely on: the working folder (relative
    paths), the environment (ORTHOSCOPE_CACHE_DIR, ...) and the import path. A spare serves only the same."""
    return os.getcwd(), tuple(sorted(os.environ.items())), tuple(sys.path)


def end_spares() -> None:
    """End the idle worker process kept for the next monitor, if any (also done when this process exits).

    >>> end_spares()
    """
    for spare in _swap_spares([]):
        spare.end()


atexit.register(end_spares)
if hasattr(os, "register_at_fork"):  # a forked child must not share this process's spare (its connection)
    os.register_at_fork(after_in_child=_SPARES.clear)


class Worker:
    """A worker process analysing the monitor's steps in order, at most `pending` held (see the module)."""

    def __init__(self, recipe: Callable[[], Any], adopt: Callable[[Any, Any], None], pending: int = 2):
        self.recipe, self.adopt = recipe, adopt
        self.slots = threading.BoundedSemaphore(pending)
        self.lock = threading.Lock()
        self.link: _Link | None = None
        self.open: set[Future] = set()  # submitted, not yet done
        self.links: list[_Link] = []  # every process started (their CPU counts)
        self.warned_slow = False
        self._start()
        atexit.register(_close, weakref.ref(self))  # a monitor left open still writes its last steps at exit

    @property
    def process(self) -> subprocess.Popen | None:
        return self.link.process if self.link is not None else None

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds the worker processes used so far (their own count, start-up included)."""
        return sum(link.cpu for link in self.links)

    @property
    def start_cpu_seconds(self) -> float:
        """CPU seconds the worker processes took to be ready (imports, the base) before their first step."""
        return sum(link.start_cpu for link in self.links)

    @property
    def thread_cpu_seconds(self) -> float:
        """CPU seconds of this process's threads that talk to the workers (sending, receiving), once ended."""
        return sum(link.thread_cpu for link in self.links)

    def reserve(self) -> None:
        """Take a slot for the next step; waits while `pending` steps are queued or being analysed (and warns
        once if that takes over SLOW_SECONDS: the worker runs on idle CPU only, see PRELUDE)."""
        if self.slots.acquire(timeout=SLOW_SECONDS):
            return
        if not self.warned_slow:
            self.warned_slow = True
            log.warning("orthoscope: measure() waited %.0f s for the monitor's worker, which runs on idle CPU "
                        "only; the training waits for it (ORTHOSCOPE_MONITOR_IDLE=0 gives it normal priority)",
                        SLOW_SECONDS)
        self.slots.acquire()

    def release(self) -> None:
        """Give back a slot taken by `reserve` for a step that will not be submitted."""
        self.slots.release()

    def submit(self, job: Any, step: int) -> Future:
        """Send `job` (after `reserve`); its Future gets the StepResult, or None if the step failed (warned)."""
        future: Future = Future()
        self.open.add(future)
        future.add_done_callback(self.open.discard)
        with self.lock:
            if self.link is None or self.link.dead:
                try:
                    self._start()
                except MonitorError as error:
                    warn_unmeasured(log, step, error)
                    self.release()
                    future.set_result(None)
                    return future
            self.link.submit(job, step, future)
        return future

    def wait(self) -> None:
        """Return once every submitted step is done."""
        wait_for(list(self.open))

    def close(self) -> None:
        """Wait for every submitted step, then end the worker process."""
        with self.lock:
            link, self.link = self.link, None
        if link is not None:
            link.close()

    def _start(self) -> None:
        self.link = _Link(self.recipe(), self.adopt, self.slots.release, _take_spare())  # no reference back here
        self.links.append(self.link)

    def __del__(self) -> None:  # a monitor dropped unclosed: its process finishes its steps and ends
        link = getattr(self, "link", None)
        if link is not None:
            link.request_close(drain=False)


def _close(ref: weakref.ref) -> None:
    worker = ref()
    if worker is not None:
        worker.close()


class _Link:
    """One worker process and the two threads that talk to it."""

    def __init__(self, recipe: Any, adopt: Callable[[Any, Any], None], release: Callable[[], None],
                 spare: _Spare | None = None):
        self.adopt, self.release = adopt, release
        self.futures: deque[tuple[int, Future]] = deque()
        self.lock = threading.Lock()
        self.dead = False  # takes no more steps
        self.failed = False  # its unanswered steps were resolved to None
        self.closing = False
        self.parked = False  # let go cleanly and kept as the spare (close then leaves it running)
        self.cpu_before = 0.0  # a spare's CPU seconds when this series took it (its own count is cumulative)
        self.cpu = 0.0  # the process's CPU seconds as it last reported them
        self.start_cpu = 0.0  # ... when it was ready for its first step (imports, the base)
        self.thread_cpu = 0.0  # CPU seconds of this process's sender and receiver threads, once they ended
        self.outbox: deque = deque([recipe])
        self.ready = threading.Condition(self.lock)
        self.conn = None
        self.receiver: threading.Thread | None = None
        if spare is not None:  # connected already: the sender starts with the recipe
            self.process, self.conn, self.cpu_before, self.context = spare.process, spare.conn, spare.cpu, spare.context
            key = b""
        else:
            key = self._start_process()
        self.sender = threading.Thread(target=self._send, args=(key,), name="orthoscope-monitor-send", daemon=True)
        self.sender.start()

    def _start_process(self) -> bytes:
        """Start a worker process and give it its authkey (the sender connects once it says its address)."""
        key = os.urandom(32)
        self.context = _context()
        try:
            self.process = subprocess.Popen(child_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            env=_child_env(), start_new_session=True)  # Ctrl-C stops the
            # training, not the worker: leaving `with Monitor(...)` after it still drains the steps
        except OSError as error:
            raise MonitorError(f"cannot start the monitor's worker process ({error}); "
                               f"measure with background=False") from None
        self.process.stdin.write(key.hex().encode() + b"\n")
        self.process.stdin.flush()  # stdin stays open: its end tells the child this process has ended
        return key

    def submit(self, job: Any, step: int, future: Future) -> None:
        with self.lock:
            if not self.dead:
                self.futures.append((step, future))
                self.outbox.append(job)
                self.ready.notify()
                return
        self._lost(step, future, self._why())

    def request_close(self, drain: bool = True) -> None:
        """Ask the process to finish its steps (the receiver then parks it as the spare, or reaps it); on every
        core when `drain` (the caller waits for them)."""
        with self.lock:
            if not self.closing:
                self.closing = True
                self.outbox.append(None if drain else DROPPED)
                self.ready.notify()

    def close(self) -> None:
        """Ask the process to finish its steps; wait for them. A clean end keeps it as the spare, else it is reaped."""
        self.request_close()
        self.sender.join()
        if self.receiver is not None:  # started by the sender once connected
            self.receiver.join()
        if self.parked:  # the spare now: every step was answered
            return
        self._end()
        self._fail(EOFError("closed"))  # steps a process that died while closing left unanswered

    # ------------------------------------------------------------------ the threads
    def _send(self, key: bytes) -> None:
        try:
            self._sending(key)
        except Exception as error:  # noqa: BLE001 - a broken connection, whatever the error: the steps resolve
            self._fail(error)
        finally:
            with self.lock:
                self.thread_cpu += time.thread_time()

    def _sending(self, key: bytes) -> None:
        if self.conn is None:  # a new process: its address, then the connection
            line = b""
            while not line.startswith(ADDRESS):  # lines an import may print before it are skipped
                line = self.process.stdout.readline()
                if not line:
                    raise EOFError("it ended before it was ready")
            self.process.stdout.close()
            address = json.loads(line[len(ADDRESS):])
            self.conn = Client(tuple(address) if isinstance(address, list) else address, authkey=key)
        self.receiver = threading.Thread(target=self._receive, name="orthoscope-monitor-receive", daemon=True)
        self.receiver.start()
        while True:
            with self.lock:
                while not self.outbox and not self.dead:
                    self.ready.wait()
                if not self.outbox:
                    return
                message = self.outbox.popleft()
            send_packed(self.conn, self._pack(message))
            if message is None or isinstance(message, str):  # the series' end
                return
            del message  # the snapshot is the worker's now

    def _pack(self, message: Any):
        """The message packed to send; a step that cannot be pickled is warned about here and goes as its bare
        step number (the worker answers None, so the steps after it keep their order)."""
        try:
            return pack(message)
        except Exception as error:
            if not hasattr(message, "step"):
                raise
            warn_unmeasured(log, message.step, error)
            return pack(message.step)

    def _receive(self) -> None:
        try:
            while True:
                kind, *rest = receive(self.conn)
                if kind == "log":
                    _emit(*rest)
                elif kind == "done":
                    result, update, cpu = rest
                    self.cpu = cpu - self.cpu_before
                    with self.lock:
                        _, future = self.futures.popleft()
                    try:
                        self.adopt(result, update)
                    finally:
                        self.release()
                        future.set_result(result)
                elif kind == "ready":
                    self.cpu = self.start_cpu = rest[0] - self.cpu_before
                elif kind == "closed":
                    cpu, idle = rest
                    self.cpu = cpu - self.cpu_before
                    with self.lock:  # every step answered: the process waits `idle` s for another series
                        self.parked = not self.dead and idle > 0
                    if self.parked:
                        _park(_Spare(self.process, self.conn, cpu, idle, self.context))
                    else:
                        self._end(timeout=10.0)
                    return
        except Exception as error:  # noqa: BLE001 - as in _send
            self._fail(error)
        finally:
            with self.lock:
                self.thread_cpu += time.thread_time()

    # ------------------------------------------------------------------ endings
    def _fail(self, error: BaseException) -> None:
        """The connection broke: the process ended (or is ended now); its steps resolve to None with a warning."""
        with self.lock:
            if self.failed:
                return
            self.dead = self.failed = True
            lost, closing = list(self.futures), self.closing
            self.futures.clear()
            self.outbox.clear()
            self.ready.notify_all()
        why = self._why(error)
        if not closing or lost:
            log.warning("orthoscope: %s; the next measured step starts another (training goes on)", why)
        for step, future in lost:
            self._lost(step, future, why)

    def _lost(self, step: int, future: Future, why: str) -> None:
        warn_unmeasured(log, step, MonitorError(why))
        self.release()
        future.set_result(None)

    def _why(self, error: BaseException | None = None) -> str:
        if error is not None and not isinstance(error, (EOFError, OSError)):  # not a broken connection
            self._end(timeout=2.0)
            return f"the monitor's worker process could not be sent its work ({type(error).__name__}: {error})"
        self._end(timeout=2.0)
        code = self.process.returncode
        if code is None:
            return f"the monitor's worker process stopped answering ({type(error).__name__})"
        ended = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return f"the monitor's worker process {ended}"

    def _end(self, timeout: float | None = None) -> None:
        """Close this end, then reap the process (killed if it has not ended within `timeout`)."""
        with self.lock:
            self.dead = True
            self.ready.notify_all()
        if self.conn is not None:
            self.conn.close()
        if self.process.stdin is not None and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _emit(name: str, level: int, message: str) -> None:
    """A log record of the worker process, handled here as if logged here."""
    logger = logging.getLogger(name)
    if logger.isEnabledFor(level):
        logger.handle(logger.makeRecord(name, level, "(monitor worker)", 0, message, None, None))


def _child_env() -> dict[str, str]:
    """This environment with one thread each, and this process's import path (the same orthoscope and libraries)."""
    env = {**os.environ, **dict.fromkeys(ONE_THREAD, "1")}
    env["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
    return env
