"""Lanes: jobs on several threads from the moment a drain is asked for, results in the jobs' order, each lane at one
torch thread and with its own cache counts; a failed job stops the step with nothing left running."""

import threading
import time

import pytest
import threadpoolctl
import torch

from orthoscope.kernels import singular_values, svd
from orthoscope.monitor.held import HeldSVDCache
from orthoscope.monitor.lanes import LANES_ENV, Lanes, drain_lanes


def test_results_keep_the_jobs_order_from_the_moment_more_lanes_are_wanted():
    asked = []

    def wanted():
        asked.append(len(asked))
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
    assert lanes.used == 3 and len(asked) == 3  # not asked again once the lanes run


def test_a_failed_job_raises_in_order_and_leaves_no_lane_working():
    finished = []

    def work(job, cache):
        if job == 1:
            raise ValueError("job 1")
        time.sleep(0.05)
        finished.append(job)
        return job

    lanes = Lanes(lambda: 2)
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

    def work(job, lane):  # a miss and a put, then a hit, like a base decomposed once and read again
        W = matrices[job % 3]
        before = lane.stats()
        key = lane.key(W, torch.float64)
        if lane.get(key) is None:
            lane.put(key, svd(W, torch.float64, torch.device("cpu")))
        lane.get(key)
        after = lane.stats()
        return {k: after[k] - before[k] for k in ("hits", "misses")}

    lanes = Lanes(lambda: 2)
    for _ in range(3):  # races between the lanes on the same keys, if any, show in the sums
        cache.held.clear()
        cache.hits = cache.misses = 0
        counts = [result for _, result in lanes.results(range(6), work, cache)]
        assert sum(c["hits"] for c in counts) == cache.hits and sum(c["misses"] for c in counts) == cache.misses
        assert cache.hits + cache.misses == 12 and all(c["hits"] >= 1 for c in counts)
    lanes.close()


def test_drain_lanes_follows_the_environment(monkeypatch):
    monkeypatch.setenv(LANES_ENV, "3")
    assert drain_lanes() == 3
    monkeypatch.setenv(LANES_ENV, "0")
    assert drain_lanes() >= 1


def blas_counts() -> set[int]:
    return {pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"}


def test_a_drain_holds_the_blas_pools_at_one_thread_and_gives_their_count_back():
    """Without it each lane's kernel call would set the process-wide count and restore it, against the other
    lanes' (a call on several threads mid-drain, or the process left at another lane's count)."""
    matrices = [torch.randn(40, 24, generator=torch.Generator().manual_seed(i), dtype=torch.float64) for i in range(6)]

    def work(job, cache):
        seen = blas_counts()
        return singular_values(matrices[job]), seen | blas_counts()

    lanes = Lanes(lambda: 2)
    torch_before = torch.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=3, user_api="blas"):
        out = list(lanes.results(range(6), work, None))
        after = blas_counts()
    lanes.close()
    assert all(seen == {1} for _, (_, seen) in out) and after == {3} and torch.get_num_threads() == torch_before
    assert all(torch.equal(values, singular_values(matrices[job])) for job, (values, _) in out)
