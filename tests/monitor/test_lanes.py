"""Lanes: jobs on several threads from the moment a drain is asked for, results in the jobs' order, each lane at one
torch thread and with its own cache counts, the cache's disk I/O on several lanes at once; a failed job stops the
step with nothing left running; as many lanes as the device, the environment and the memory allow."""

import logging
import threading
import time
from types import SimpleNamespace

import pytest
import threadpoolctl
import torch

from orthoscope.kernels import singular_values, svd
from orthoscope.monitor import lanes as lanes_module
from orthoscope.monitor.held import HeldSVDCache
from orthoscope.monitor.lanes import LANES_ENV, Lanes, drain_lanes
from orthoscope.pipeline import cache as cache_module
from orthoscope.pipeline.cache import SVDCache
from orthoscope.pipeline.executors.workers import MEMORY_SHARE, job_bytes


def test_results_keep_the_jobs_order_from_the_moment_more_lanes_are_wanted():
    asked = []

    def wanted(jobs):
        asked.append(len(jobs))
        return 1 if len(asked) <= 2 else 3  # the close arrives after two jobs

    def work(job, cache):  # later jobs finish first
        time.sleep(0.02 * (6 - job))
        return job, threading.current_thread().name, torch.get_num_threads()

    lanes = Lanes(wanted)
    try:
        out = list(lanes.results(range(6), work, None))
    finally:
        lanes.close()
    assert [job for job, _ in out] == list(range(6)) and [r[0] for _, r in out] == list(range(6))
    threads = [r[1] for _, r in out]
    assert threads[:2] == [threading.current_thread().name] * 2  # one after another, here
    assert all(name.startswith("orthoscope-monitor-lane") for name in threads[2:])
    assert len(set(threads[2:])) > 1 and {r[2] for _, r in out[2:]} == {1}
    assert lanes.used == 3 and asked == [6, 5, 4]  # the jobs left; not asked again once the lanes run


def test_a_failed_job_raises_in_order_and_leaves_no_lane_working():
    finished = []

    def work(job, cache):
        if job == 1:
            raise ValueError("job 1")
        time.sleep(0.05)
        finished.append(job)
        return job

    lanes = Lanes(lambda jobs: 2)
    results = lanes.results(range(8), work, None)
    assert next(results) == (0, 0)
    with pytest.raises(ValueError, match="job 1"):
        next(results)
    done = list(finished)
    time.sleep(0.2)
    assert finished == done and len(done) < 8  # the jobs not started were cancelled, the running ones waited for
    lanes.close()


def test_each_lane_counts_its_own_cache_use_and_the_totals_are_the_shared_cache_s():
    cache = HeldSVDCache(None, hold_gib=1.0, disk=False)
    matrices = [torch.randn(6, 4, generator=torch.Generator().manual_seed(i)) for i in range(6)]

    def work(job, cache):  # a miss and a put, then a hit, like a base decomposed once and read again
        W = matrices[job % 3]
        before = cache.thread_counts()  # what a job reports (`work.analyse`)
        key = cache.key(W, torch.float64)
        if cache.get(key) is None:
            cache.put(key, svd(W, torch.float64, torch.device("cpu")))
        cache.get(key)
        after = cache.thread_counts()
        return {k: after[k] - before[k] for k in ("hits", "misses")}

    lanes = Lanes(lambda jobs: 2)
    for _ in range(3):  # races between the lanes on the same keys, if any, show in the sums
        cache.held.clear()
        cache.held_bytes = cache.hits = cache.misses = 0
        counts = [result for _, result in lanes.results(range(6), work, cache)]
        assert sum(c["hits"] for c in counts) == cache.hits and sum(c["misses"] for c in counts) == cache.misses
        assert cache.hits + cache.misses == 12 and all(c["hits"] >= 1 for c in counts)
        assert len(cache.held) == 3 and cache.held_bytes == sum(  # each base held once, its bytes counted once
            t.numel() * t.element_size() for f in cache.held.values() for t in (f.U, f.S, f.V))
    lanes.close()


def test_two_lanes_read_and_write_the_disk_cache_at_the_same_time(tmp_path, monkeypatch):
    """No lock around a lane's disk I/O (checksums, safetensors): a write waits here for the other lane's."""
    both = threading.Barrier(2, timeout=10)  # broken (an error) if the two writes cannot be under way together
    real_save, real_open = cache_module.save_file, cache_module.safe_open

    def save_file(*args, **kwargs):
        both.wait()
        return real_save(*args, **kwargs)

    def safe_open(*args, **kwargs):
        both.wait()
        return real_open(*args, **kwargs)

    monkeypatch.setattr(cache_module, "save_file", save_file)
    monkeypatch.setattr(cache_module, "safe_open", safe_open)
    matrices = [torch.randn(8, 5, generator=torch.Generator().manual_seed(i), dtype=torch.float64) for i in range(2)]
    factors = [svd(W, torch.float64, torch.device("cpu")) for W in matrices]
    keys = [SVDCache(tmp_path).key(W, torch.float64) for W in matrices]
    lanes = Lanes(lambda jobs: 2)
    writer = HeldSVDCache(tmp_path, hold_gib=1.0)
    stored = [ok for _, ok in lanes.results([0, 1], lambda i, c: c.put(keys[i], factors[i]), writer)]
    assert stored == [True, True]
    reader = HeldSVDCache(tmp_path, hold_gib=1.0)  # nothing held: both read from the disk
    read = [f for _, f in lanes.results([0, 1], lambda i, c: c.get(keys[i]), reader)]
    lanes.close()
    assert all(torch.equal(f.S, g.S) for f, g in zip(read, factors)) and reader.hits == 2 and len(reader.held) == 2


def job(rows: int, cols: int) -> SimpleNamespace:
    return SimpleNamespace(ref=SimpleNamespace(shape=(rows, cols)), posts=(0,))


def test_drain_lanes_are_the_environment_s_at_most_the_jobs_and_one_on_a_gpu(monkeypatch):
    monkeypatch.setattr(lanes_module, "free_memory", lambda: 1 << 50)
    monkeypatch.setenv(LANES_ENV, "3")
    jobs = [job(64, 64)] * 5
    assert drain_lanes("cpu", jobs) == 3 and drain_lanes("cpu", jobs[:2]) == 2
    assert drain_lanes("cuda", jobs) == drain_lanes("cuda:1", jobs) == 1  # the training's model is on it
    monkeypatch.setenv(LANES_ENV, "1")
    assert drain_lanes("cpu", jobs) == 1
    monkeypatch.delenv(LANES_ENV)
    assert drain_lanes("cpu", jobs * 100) == len(lanes_module.os.sched_getaffinity(0))


def test_drain_lanes_fit_the_largest_job_s_working_sets_in_the_executor_s_share_of_free_memory(monkeypatch):
    monkeypatch.setenv(LANES_ENV, "8")
    jobs = [job(64, 64), job(4096, 1024), job(512, 512)] * 3
    largest = job_bytes(jobs[1], 1)
    assert largest == 4096 * 1024 * (8 * 12 + 4)  # 12 float64 copies and the stored float32 one
    for room, lanes in ((3, 3), (2.5, 2), (1, 1), (0.2, 1), (100, 8)):
        monkeypatch.setattr(lanes_module, "free_memory", lambda: int(room * largest / MEMORY_SHARE))
        assert drain_lanes("cpu", jobs) == lanes, room
    monkeypatch.setattr(lanes_module, "free_memory", lambda: None)  # nothing says: no cap
    assert drain_lanes("cpu", jobs) == 8


@pytest.mark.parametrize("bad", ["0", "abc", "-1", "2.5"])
def test_a_bad_lanes_setting_is_a_warning_once_and_the_default(bad, monkeypatch, caplog):
    monkeypatch.setattr(lanes_module, "_WARNED", set())
    monkeypatch.setattr(lanes_module, "free_memory", lambda: None)
    monkeypatch.setenv(LANES_ENV, bad)
    jobs = [job(8, 8)] * 100
    with caplog.at_level(logging.WARNING, logger="orthoscope.monitor"):
        assert drain_lanes("cpu", jobs) == drain_lanes("cpu", jobs) == len(lanes_module.os.sched_getaffinity(0))
    assert caplog.messages == [f"orthoscope: {LANES_ENV}={bad!r} is not a positive integer: the monitor uses "
                               "the default (a thread per core)"]


def blas_counts() -> set[int]:
    return {pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"}


def test_a_drain_holds_the_blas_pools_at_one_thread_and_gives_their_count_back():
    """Without it each lane's kernel call would set the process-wide count and restore it, against the other
    lanes' (a call on several threads mid-drain, or the process left at another lane's count)."""
    matrices = [torch.randn(40, 24, generator=torch.Generator().manual_seed(i), dtype=torch.float64) for i in range(6)]

    def work(job, cache):
        seen = blas_counts()
        return singular_values(matrices[job]), seen | blas_counts()

    lanes = Lanes(lambda jobs: 2)
    torch_before = torch.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=3, user_api="blas"):
        out = list(lanes.results(range(6), work, None))
        after = blas_counts()
    lanes.close()
    assert all(seen == {1} for _, (_, seen) in out) and after == {3} and torch.get_num_threads() == torch_before
    assert all(torch.equal(values, singular_values(matrices[job])) for job, (values, _) in out)
