"""kernels.threads: one torch thread between kernels, every thread inside them; scipy's BLAS spins briefly."""

import importlib

import pytest
import torch

from orthoscope.kernels import singular_values
from orthoscope.kernels.threads import full_count, full_threads, kernel, light
from tests.helpers import orthonormal

svd_module = importlib.import_module("orthoscope.kernels.svd")


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_light_gives_kernels_the_count_it_found(two_threads):
    seen = []

    @kernel
    def probe():
        seen.append((torch.get_num_threads(), full_count()))

    probe()  # outside light(): nothing changes
    with light():
        between = torch.get_num_threads()
        probe()
        after_kernel = torch.get_num_threads()
        with full_threads(), full_threads():  # nested: the inner one leaves the count alone
            nested = torch.get_num_threads()
    assert seen == [(2, 2), (2, 2)]
    assert (between, after_kernel, nested) == (1, 1, 2)
    assert torch.get_num_threads() == 2


def test_light_restores_the_count_when_the_block_raises(two_threads):
    with pytest.raises(RuntimeError), light():
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


def test_scipy_blas_spins_briefly_and_values_stay_exact(two_threads, monkeypatch):
    """In a tuned process, OpenBLAS workers (scipy's, numpy's) wait 2^20 cycles, not 2^28, after a call;
    the environment is left as it was."""
    import os

    from orthoscope import tuning

    monkeypatch.setattr(tuning, "_ENABLED", None)
    tuning.tune_process()
    _, controller = svd_module._scipy_lapack()
    libs = [lib for lib in controller.select(internal_api="openblas").lib_controllers
            if getattr(lib, "threading_layer", None) == "pthreads"]
    if not libs or "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        pytest.skip("no pthreads OpenBLAS here, or the user set the timeout")
    assert "OPENBLAS_THREAD_TIMEOUT" not in os.environ
    assert {lib.dynlib.openblas_thread_timeout() for lib in libs} == {svd_module.BLAS_SPIN_LOG2_CYCLES}
    s = torch.linspace(3.0, 1.0, 40, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    W = orthonormal(300, 40, g) @ torch.diag(s) @ orthonormal(40, 40, g).T
    with light():
        for _ in range(3):
            torch.testing.assert_close(singular_values(W), s, rtol=1e-12, atol=0)


def blas_counts() -> list[int]:
    import threadpoolctl

    return [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]


def test_overlapping_lanes_from_two_threads_hold_until_the_last_exit(two_threads):
    """Run A enters lanes(), run B enters on another thread, A leaves while B still runs: B keeps the BLAS
    pools at one thread and blas_limit still does nothing; the counts come back when B leaves."""
    import scipy.linalg  # noqa: F401 (its BLAS is loaded before the counts are taken)

    from orthoscope.kernels import threads

    with svd_module.scipy_blas_controller().limit(limits=2, user_api="blas"):  # known counts to restore
        overlapping_lanes(threads)


def a_leaves_lanes_before_b(threads, while_b_alone=lambda: None) -> None:
    """Run A (this thread) enters lanes(), run B (another thread) enters, A leaves; B then calls
    `while_b_alone()` inside its lanes and leaves (the last exit on another thread than the first entry)."""
    import threading

    a_in, b_in, a_out = (threading.Event() for _ in range(3))

    def run_b():
        a_in.wait()
        with threads.lanes():
            b_in.set()
            a_out.wait()
            while_b_alone()

    b = threading.Thread(target=run_b)
    b.start()
    with threads.lanes():
        a_in.set()
        b_in.wait()
    a_out.set()
    b.join()


def overlapping_lanes(threads) -> None:
    before = blas_counts()
    assert set(before) == {2} or not before
    seen = {}

    def look() -> None:
        seen["b after a left"] = (threads._BLAS_HELD, set(blas_counts()),
                                  threads.blas_limit(svd_module.scipy_blas_controller(), 2).__class__.__name__)

    a_leaves_lanes_before_b(threads, look)
    assert seen["b after a left"] == (True, {1} if before else set(), "nullcontext")
    assert blas_counts() == before and torch.get_num_threads() == 2 and not threads._BLAS_HELD


def test_lanes_left_by_another_thread_leave_blas_control_free(two_threads):
    """A enters lanes(), B enters, A leaves, B leaves (the last exit on another thread than the first entry);
    A then runs a kernel's per-call blas_limit, and C enters lanes() from a third thread: C's lanes hold the
    BLAS pools at one thread (no thread keeps threadpoolctl's control of OpenBLAS for good), and the counts
    come back after."""
    import threading

    import scipy.linalg  # noqa: F401 (its BLAS is loaded before the counts are taken)
    import threadpoolctl

    from orthoscope.kernels import threads

    controller = svd_module.scipy_blas_controller()
    threads._release_blas_control()
    known = controller.limit(limits=2, user_api="blas")  # counts to tell apart, set without entering a limiter
    threads._release_blas_control()
    try:
        before = blas_counts()
        a_leaves_lanes_before_b(threads)
        with threads.blas_limit(controller, 2):
            pass
        seen = {}

        def run_c():
            with threads.lanes():
                seen["c"] = set(blas_counts())

        c = threading.Thread(target=run_c)
        c.start()
        c.join()
        assert seen["c"] == ({1} if before else set())
        assert threadpoolctl.CONTROLLING_THREAD_OWNERSHIP.count == 0
        assert blas_counts() == before and not threads._BLAS_HELD
    finally:
        threads._release_blas_control()
        known.restore_original_limits()
        threads._release_blas_control()
