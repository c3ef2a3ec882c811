"""The monitor's worker process: `orthoscope.monitor.child` run as `__main__` by `worker.PRELUDE` at idle priority,
started by `worker.Worker` (not by hand).

It reads an authkey on stdin, listens on a local socket whose address it writes on stdout, and serves the one
monitor that connects: first the series' recipe (`series.Recipe`), then one job per step (`series.Job`), each
analysed in order (`Series.run`) and answered with its StepResult (None if it failed) and what the step
changed in the series (`Series.update`); a None job (or `worker.DROPPED`) ends the series. It then waits,
idle, up to the seconds given as its argument for the next series' recipe on the same connection (the caller's
next monitor, see `worker.IDLE_SECONDS`), and ends if none comes. Its log records at the monitor's level go
back to the monitor, which logs them (at DEBUG, each step's lanes, wall and CPU seconds, and the drain's). It
runs torch at one thread, tuned (`orthoscope.tuning`: its own process), and exits when its stdin closes: the
monitor's process ended, however it ended.

A thread reads the messages as they come (`_Inbox`), so the worker knows when the series' None job
has arrived: the monitor is closing and its caller waits for the queue's drain. From then on the
matrices still to analyse go to one thread per core (`lanes.py`; on a CPU and as memory allows; at
SCHED_IDLE still, which an unprivileged process cannot leave, but the training is over and the cores
idle); rows, summaries and writes stay in step order and the numbers are those of one thread.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import queue
import sys
import threading
import time
from multiprocessing.connection import Listener

from orthoscope.monitor.worker import ADDRESS, DROPPED

log = logging.getLogger("orthoscope.monitor")


def main() -> None:
    idle = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    line = b""
    while not line.endswith(b"\n"):  # the key, read from the file descriptor itself (see _exit_with_parent)
        chunk = os.read(0, 128)
        if not chunk:
            return
        line += chunk
    key = bytes.fromhex(line.decode().strip())
    with Listener(authkey=key) as listener:
        sys.stdout.buffer.write(ADDRESS + json.dumps(listener.address).encode() + b"\n")
        sys.stdout.flush()
        threading.Thread(target=_exit_with_parent, daemon=True).start()
        conn = listener.accept()
    os.dup2(2, 1)  # later prints go to stderr (the monitor read the address and closed its end)
    serve(conn, idle)


def _exit_with_parent() -> None:
    while os.read(0, 4096):  # returns b"" when the monitor's process closes the pipe or ends; unbuffered, so
        pass  # that the interpreter's exit does not wait on sys.stdin's lock held by this thread
    os._exit(0)


def serve(conn, idle: float = 0.0) -> None:
    """Analyse the series `conn` brings, one after the other, until the connection ends or no new series
    comes within `idle` seconds of the last one's end."""
    import torch

    from orthoscope.monitor.channel import send
    from orthoscope.tuning import tune_process

    torch.set_num_threads(1)
    tune_process()
    sending = threading.Lock()

    def post(message) -> None:
        with sending:
            send(conn, message)

    inbox = _Inbox(conn)
    wait: float | None = None  # the first recipe: as long as it takes
    while True:
        try:
            recipe = inbox.get(wait)
        except (EOFError, queue.Empty):
            return
        if not _one_series(inbox, recipe, post, idle):
            return
        wait = idle


def _one_series(inbox: _Inbox, recipe, post, idle: float) -> bool:
    """Serve one series from its recipe to its None job; False if the connection ended or it could not start."""
    from orthoscope.monitor.lanes import Lanes, drain_lanes
    from orthoscope.monitor.series import Series

    _forward_logs(post, recipe.level)
    try:
        series = Series.from_recipe(recipe)
    except Exception as error:  # noqa: BLE001 - said in the monitor's log; its steps then resolve to None
        log.warning("orthoscope: the monitor's worker process cannot start (%s: %s)", type(error).__name__, error)
        return False
    del recipe
    device = series.settings.device
    series.lanes = lanes = Lanes(lambda jobs: drain_lanes(device, jobs) if inbox.closing() else 1)
    post(("ready", time.process_time()))
    drain = [0, 0.0, 0.0]  # steps analysed (in part) on several lanes at close, their wall and CPU seconds
    try:
        while True:
            try:
                job = inbox.get()
            except EOFError:
                return False
            if job is None or job == DROPPED:  # closed (drained), or its monitor dropped unclosed
                if drain[0]:
                    log.debug("orthoscope: monitor worker: drain at close, %d step(s), %.3f s, %.3f s CPU", *drain)
                del series
                gc.collect()  # the series' base and held factors go before the wait, not at the next series
                post(("closed", time.process_time(), idle))  # how long it will wait for another series
                return True
            step = job if isinstance(job, int) else job.step
            began, began_cpu = time.perf_counter(), time.process_time()
            result = series.run(job)
            del job
            seconds, cpu = time.perf_counter() - began, time.process_time() - began_cpu
            log.debug("orthoscope: monitor worker: step %d on %d lane(s), %.3f s, %.3f s CPU", step, lanes.used,
                      seconds, cpu)
            if lanes.used > 1:
                drain = [drain[0] + 1, drain[1] + seconds, drain[2] + cpu]
            post(("done", *series.update(result), time.process_time()))  # the step's rows, not the series'
    finally:
        lanes.close()


class _Inbox:
    """The monitor's messages, read by a thread as they come; `closing()`: the series' None job has come (the
    monitor is closing: the jobs before it are its last)."""

    def __init__(self, conn):
        self.messages: queue.Queue = queue.Queue()
        self.ends_read = self.ends_taken = 0  # None jobs read from the connection, and taken by `get`
        threading.Thread(target=self._read, args=(conn,), name="orthoscope-monitor-inbox", daemon=True).start()

    def _read(self, conn) -> None:
        from orthoscope.monitor.channel import receive

        while True:
            try:
                message = receive(conn)
            except BaseException as error:  # noqa: BLE001 - EOF, or a message that cannot be read: `get` raises it
                self.messages.put(_Failed(error))
                return
            if message is None:
                self.ends_read += 1
            self.messages.put(message)

    def get(self, timeout: float | None = None):
        """The next message (queue.Empty after `timeout` seconds; what reading raised, EOFError at the end)."""
        message = self.messages.get(timeout=timeout)
        if isinstance(message, _Failed):
            self.messages.put(message)
            raise message.error
        if message is None:
            self.ends_taken += 1
        return message

    def closing(self) -> bool:
        return self.ends_read > self.ends_taken


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


class _Forward(logging.Handler):
    def __init__(self, post, level: int):
        super().__init__(level)
        self.post = post

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.post(("log", record.name, record.levelno, record.getMessage()))
        except Exception:  # noqa: BLE001 - a record that cannot go back is dropped, the step goes on
            self.handleError(record)


def _forward_logs(post, level: int) -> None:
    logger = logging.getLogger("orthoscope")
    for handler in [h for h in logger.handlers if isinstance(h, _Forward)]:  # the last series' level
        logger.removeHandler(handler)
    logger.addHandler(_Forward(post, level))
    logger.setLevel(level)
    logger.propagate = False


if __name__ == "__main__":
    main()
