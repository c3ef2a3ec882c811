"""The local executor's lanes: several matrices at once on one thread each, the same table as one at a time."""

import threading

import pandas as pd
import pytest
import threadpoolctl
import torch

import orthoscope
from orthoscope import tuning
from orthoscope.kernels.threads import torch_threads
from orthoscope.pipeline import LocalExecutor, operands
from orthoscope.pipeline import measure as measure_module
from orthoscope.pipeline.executors import local, workers
from orthoscope.pipeline.executors.workers import choose_lanes, job_bytes
from orthoscope.pipeline.work import Job


def blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"}


@pytest.fixture
def spy(monkeypatch):
    """Every job's cache counts, and the lane, torch threads and BLAS threads seen inside each SVD."""
    seen = {"inside": [], "jobs": {}}
    real_analyse = local.analyse

    def analyse(base, posts, job, settings, cache):
        result = real_analyse(base, posts, job, settings, cache)
        seen["jobs"][job.ref.name] = result.cache
        return result

    for module in (operands, measure_module):  # the base's decomposition; the post's and the null's
        def svd(*args, real=module.svd, **kwargs):
            seen["inside"].append((threading.current_thread().name, torch.get_num_threads(), blas_threads()))
            return real(*args, **kwargs)

        monkeypatch.setattr(module, "svd", svd)
    monkeypatch.setattr(local, "analyse", analyse)
    return seen


def test_two_lanes_give_the_same_table_and_each_job_its_own_cache_counts(planted, tmp_path, spy):
    two = orthoscope.compare(*planted, tmp_path / "two", executor=LocalExecutor(workers=2))
    assert two.summary["settings"]["executor_options"] == {"executor": "local", "workers": 2, "lanes": 2}
    assert len(spy["jobs"]) == 14
    assert all(counts == {"hits": 0, "misses": 1, "not_stored": 0} for counts in spy["jobs"].values())
    lanes = {name for name, *_ in spy["inside"]}
    assert len(lanes) == 2 and all(name.startswith("orthoscope-lane") for name in lanes)
    assert {(threads, frozenset(blas)) for _, threads, blas in spy["inside"]} == {(1, frozenset({1}))}
    one = orthoscope.compare(*planted, tmp_path / "one", executor=LocalExecutor(workers=1), cache=False)
    pd.testing.assert_frame_equal(two.table, one.table, check_exact=True)
    # the base is cached now: every job counts exactly its own one hit, whatever ran beside it
    spy["jobs"].clear()
    again = orthoscope.compare(*planted, tmp_path / "again", executor=LocalExecutor(workers=2))
    assert all(counts == {"hits": 1, "misses": 0, "not_stored": 0} for counts in spy["jobs"].values())
    assert len(spy["jobs"]) == 14 and again.summary["cache"] == {"hits": 14, "misses": 0, "not_stored": 0}
    pd.testing.assert_frame_equal(again.table, one.table, check_exact=True)


def test_lanes_give_back_torch_threads_and_the_blas_pools(planted):
    import scipy.linalg  # noqa: F401 (its BLAS is loaded before the counts are taken)

    with torch_threads(2):
        before = blas_threads()
        result = orthoscope.compare(*planted, kinds="q,k", cache=False, executor=LocalExecutor(workers=2))
        assert torch.get_num_threads() == 2 and blas_threads() == before
    assert result.summary["settings"]["executor_options"]["lanes"] == 2


def test_the_default_is_torch_threads_in_a_tuned_process_and_one_lane_otherwise(planted, monkeypatch):
    with torch_threads(2):
        plain = orthoscope.compare(*planted, kinds="q,k", cache=False)
        monkeypatch.setattr(tuning, "_ENABLED", True)
        tuned = orthoscope.compare(*planted, kinds="q,k", cache=False)
    assert plain.summary["settings"]["executor_options"]["lanes"] == 1
    assert tuned.summary["settings"]["executor_options"]["lanes"] == 2
    pd.testing.assert_frame_equal(tuned.table, plain.table, rtol=1e-10, atol=1e-12)


def test_lanes_are_capped_by_the_jobs_that_compute_by_memory_and_on_a_gpu():
    shape = type("Ref", (), {"shape": (1000, 1000)})()
    fresh, stored = Job(shape, (0,)), Job(shape, (0,), known={0: ("a", "b")})
    assert choose_lanes(4, [fresh] * 8, "cpu", False, None) == 4
    assert choose_lanes(4, [fresh] * 2 + [stored] * 6, "cpu", False, None) == 2
    assert choose_lanes(4, [stored] * 8, "cpu", False, None) == 1
    room = job_bytes(fresh, 1) / workers.MEMORY_SHARE
    assert choose_lanes(4, [fresh] * 8, "cpu", False, int(3 * room)) == 3
    assert choose_lanes(4, [fresh] * 8, "cpu", False, int(room / 4)) == 1
    assert choose_lanes(4, [fresh] * 8, "cuda:0", True, None) == 1


def test_an_error_in_one_lane_is_the_runs_error_and_ends_the_run(planted, tmp_path, monkeypatch):
    real, started = local.analyse, []

    def failing(base, posts, job, settings, cache):
        started.append(job.ref.name)
        if len(started) == 3:
            raise RuntimeError("lane failed")
        return real(base, posts, job, settings, cache)

    monkeypatch.setattr(local, "analyse", failing)
    with torch_threads(2):
        with pytest.raises(RuntimeError, match="lane failed"):
            orthoscope.compare(*planted, tmp_path / "r", cache=False, executor=LocalExecutor(workers=2))
        assert torch.get_num_threads() == 2
    assert len(started) < 14  # the jobs not started were dropped
    # what finished was stored, the job running beside the failed one included: a rerun resumes it
    monkeypatch.setattr(local, "analyse", real)
    again = orthoscope.compare(*planted, tmp_path / "r", cache=False, executor=LocalExecutor(workers=2))
    assert again.summary["resumed"] >= 2 and len(again.table) == 14


GIB = 1 << 30


def fake_root(tmp_path, files: dict[str, str]):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


MEMINFO = {"proc/meminfo": f"MemTotal: {64 * GIB // 1024} kB\nMemAvailable: {40 * GIB // 1024} kB\n"}


@pytest.mark.parametrize("cgroup, expected", [
    ({}, 40 * GIB),  # no cgroup files: the host's MemAvailable
    ({"sys/fs/cgroup/memory.max": "max\n", "sys/fs/cgroup/memory.current": str(GIB)}, 40 * GIB),
    ({"sys/fs/cgroup/memory.max": str(8 * GIB), "sys/fs/cgroup/memory.current": str(5 * GIB)}, 3 * GIB),
    ({"sys/fs/cgroup/memory.max": str(8 * GIB), "sys/fs/cgroup/memory.current": str(7 * GIB),
      "sys/fs/cgroup/memory.stat": f"anon {GIB}\ninactive_file {2 * GIB}\nactive_file {GIB}\n"}, 3 * GIB),
    ({"sys/fs/cgroup/memory.max": str(8 * GIB), "sys/fs/cgroup/memory.current": str(9 * GIB)}, 0),
    ({"sys/fs/cgroup/memory.max": str(100 * GIB), "sys/fs/cgroup/memory.current": str(GIB)}, 40 * GIB),
    ({"sys/fs/cgroup/memory/memory.limit_in_bytes": str(6 * GIB),
      "sys/fs/cgroup/memory/memory.usage_in_bytes": str(2 * GIB),
      "sys/fs/cgroup/memory/memory.stat": f"cache {GIB}\ntotal_inactive_file {GIB}\n"}, 5 * GIB),
    ({"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712",  # v1's "no limit"
      "sys/fs/cgroup/memory/memory.usage_in_bytes": str(2 * GIB)}, 40 * GIB),
], ids=["host", "v2-max", "v2-limit", "v2-inactive-cache", "v2-over", "v2-above-host", "v1-limit", "v1-none"])
def test_free_memory_is_the_smaller_of_the_host_and_the_containers_cgroup(tmp_path, cgroup, expected):
    assert workers._free_memory(fake_root(tmp_path, {**MEMINFO, **cgroup})) == expected


V1_CGROUP = "4:memory:/process_api/job\n3:cpuset:/\n0::/\n"  # cgroup v1, the process in its own memory cgroup
V2_CGROUP = "0::/user.slice/run/job\n"


@pytest.mark.parametrize("cgroup, expected", [
    ({"proc/self/cgroup": V1_CGROUP,  # a limit on the process's own v1 cgroup, none at the top
      "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712",
      "sys/fs/cgroup/memory/memory.usage_in_bytes": str(9 * GIB),
      "sys/fs/cgroup/memory/process_api/job/memory.limit_in_bytes": str(4 * GIB),
      "sys/fs/cgroup/memory/process_api/job/memory.usage_in_bytes": str(3 * GIB),
      "sys/fs/cgroup/memory/process_api/job/memory.stat":
          f"hierarchical_memory_limit {6 * GIB}\ntotal_inactive_file {GIB}\n"}, 4 * GIB),  # 6 - 3 + 1
    ({"proc/self/cgroup": V1_CGROUP,  # hierarchical_memory_limit carries a limit set above the process's cgroup
      "sys/fs/cgroup/memory/process_api/job/memory.limit_in_bytes": "9223372036854771712",
      "sys/fs/cgroup/memory/process_api/job/memory.usage_in_bytes": str(GIB),
      "sys/fs/cgroup/memory/process_api/job/memory.stat": f"hierarchical_memory_limit {3 * GIB}\n"}, 2 * GIB),
    ({"proc/self/cgroup": V1_CGROUP,  # the process's cgroup not mounted here (a container's view): the top
      "sys/fs/cgroup/memory/memory.limit_in_bytes": str(5 * GIB),
      "sys/fs/cgroup/memory/memory.usage_in_bytes": str(2 * GIB)}, 3 * GIB),
    ({"proc/self/cgroup": V2_CGROUP,  # the process's own v2 cgroup
      "sys/fs/cgroup/user.slice/run/job/memory.max": str(6 * GIB),
      "sys/fs/cgroup/user.slice/run/job/memory.current": str(GIB)}, 5 * GIB),
    ({"proc/self/cgroup": V2_CGROUP,  # the smallest room over each level up to the root
      "sys/fs/cgroup/user.slice/run/job/memory.max": str(20 * GIB),
      "sys/fs/cgroup/user.slice/run/job/memory.current": str(GIB),
      "sys/fs/cgroup/user.slice/run/memory.max": "max\n",
      "sys/fs/cgroup/user.slice/run/memory.current": str(2 * GIB),
      "sys/fs/cgroup/user.slice/memory.max": str(10 * GIB),
      "sys/fs/cgroup/user.slice/memory.current": str(8 * GIB),
      "sys/fs/cgroup/user.slice/memory.stat": f"inactive_file {GIB}\n",
      "sys/fs/cgroup/memory.max": str(30 * GIB), "sys/fs/cgroup/memory.current": str(9 * GIB)}, 3 * GIB),
], ids=["v1-own", "v1-hierarchical", "v1-not-mounted", "v2-own", "v2-ancestor"])
def test_free_memory_reads_the_processs_own_cgroup_and_those_above(tmp_path, cgroup, expected):
    assert workers._free_memory(fake_root(tmp_path, {**MEMINFO, **cgroup})) == expected


def test_free_memory_without_meminfo_takes_the_cgroup_else_the_free_pages(tmp_path):
    limited = fake_root(tmp_path / "a", {"sys/fs/cgroup/memory.max": str(8 * GIB),
                                         "sys/fs/cgroup/memory.current": str(6 * GIB)})
    assert workers._free_memory(limited) == 2 * GIB
    bare = workers._free_memory(fake_root(tmp_path / "b", {}))
    assert bare is None or bare > 0


def test_ctrl_c_stores_every_finished_job_and_stops_the_running_ones_at_their_next_kernel(monkeypatch):
    """Lanes a and b finish; c runs kernel after kernel and never ends on its own (within a minute); d finishes
    while Ctrl-C lands in the wait, before it was handed over. Stored: a, b and d; c stops at its next kernel
    with Cancelled, well before its minute is out."""
    import time
    from types import SimpleNamespace

    from orthoscope.kernels.threads import Cancelled, full_threads
    from orthoscope.pipeline.work import Settings

    jobs = [Job(SimpleNamespace(name=name, shape=(8, 8)), (0,)) for name in "abcde"]
    c_stopped = {}

    def analyse(base, posts, job, settings, cache):
        if job.ref.name == "c":
            deadline = time.monotonic() + 60
            try:
                while time.monotonic() < deadline:
                    with full_threads():  # a kernel's entry
                        time.sleep(0.01)
            except Cancelled:
                c_stopped["at"] = time.monotonic()
                raise
        return job.ref.name

    real_wait = local.wait
    interrupted = []

    def wait(running, return_when):
        if "d" in {job.ref.name for job in running.values()}:  # Ctrl-C once d has finished, c still running
            d = next(f for f, job in running.items() if job.ref.name == "d")
            real_wait([d])
            interrupted.append(time.monotonic())
            raise KeyboardInterrupt
        return real_wait(running, return_when=return_when)

    monkeypatch.setattr(local, "analyse", analyse)
    monkeypatch.setattr(local, "wait", wait)
    monkeypatch.setattr(local, "prefetch", lambda *args: None)
    stored = []
    with pytest.raises(KeyboardInterrupt):
        LocalExecutor(workers=2).run(SimpleNamespace(base=None, posts=()), jobs,
                                     Settings(torch.float32, "cpu", 0, frozenset()),
                                     lambda job, result: stored.append(result))
    assert sorted(stored) == ["a", "b", "d"]  # e never started, c was cancelled
    assert c_stopped["at"] - interrupted[0] < 30  # stopped by Cancelled at a kernel's entry, not its 60 s


def test_ctrl_c_between_a_finished_job_and_its_storing_still_stores_it(monkeypatch):
    """a finishes; Ctrl-C lands while the next job's bytes are asked for (after the wait that saw a finish, before
    a was handed over): a is stored all the same, b (running, never done on its own) is cancelled."""
    from types import SimpleNamespace

    from orthoscope.kernels.threads import full_threads
    from orthoscope.pipeline.work import Settings

    jobs = [Job(SimpleNamespace(name=name, shape=(8, 8)), (0,)) for name in "abcdefghijkl"]
    b_go, waited = threading.Event(), threading.Event()
    real_wait = local.wait

    def analyse(base, posts, job, settings, cache):
        while job.ref.name == "b" and not b_go.wait(0.01):
            with full_threads():  # a kernel's entry: stops here once cancelled
                pass
        return job.ref.name

    def wait(running, return_when):
        done = real_wait(running, return_when=return_when)
        waited.set()
        return done

    def prefetch(base, posts, job):  # the first bytes asked for after a wait: starting c, in a's place
        if waited.is_set():
            raise KeyboardInterrupt

    monkeypatch.setattr(local, "analyse", analyse)
    monkeypatch.setattr(local, "wait", wait)
    monkeypatch.setattr(local, "prefetch", prefetch)
    stored = []
    try:
        with pytest.raises(KeyboardInterrupt):
            LocalExecutor(workers=2).run(SimpleNamespace(base=None, posts=()), jobs,
                                         Settings(torch.float32, "cpu", 0, frozenset()),
                                         lambda job, result: stored.append(result))
    finally:
        b_go.set()
    assert stored == ["a"]


def test_a_given_workers_lowered_by_memory_or_a_gpu_says_so_once(planted, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from orthoscope.cli import app

    shape = type("Ref", (), {"shape": (1024, 1024)})()
    jobs = [Job(shape, (0,))] * 8
    room = job_bytes(jobs[0], 1) / workers.MEMORY_SHARE
    assert workers.lanes_and_note(4, jobs, "cpu", False, int(2.5 * room)) == (
        2, "--workers 4 lowered to 2: 2 working sets of 100 MiB fit in half the 0.5 GiB free")
    assert workers.lanes_and_note(4, jobs, "cpu", False, int(1.5 * room)) == (
        1, "--workers 4 lowered to 1: one working set of 100 MiB fits in half the 0.3 GiB free")
    assert workers.lanes_and_note(4, jobs, "cpu", False, int(0.5 * room)) == (  # the floor: one lane all the same
        1, "--workers 4 lowered to 1: one working set of 100 MiB exceeds half the 100 MiB free")
    assert workers.lanes_and_note(3, jobs, "cpu", False, 3000)[1] == (
        "--workers 3 lowered to 1: one working set of 100 MiB exceeds half the 3 KiB free")
    assert workers.lanes_and_note(None, jobs, "cpu", True, int(2.5 * room))[1] is None  # not asked for: no note
    assert workers.lanes_and_note(4, jobs[:2], "cpu", False, None) == (2, None)  # no more jobs to run: no note
    assert workers.lanes_and_note(1, jobs, "cuda", False, None) == (1, None)
    monkeypatch.setattr(local, "free_memory", lambda: 1)  # room for none: one lane
    result = orthoscope.compare(*planted, kinds="q,k", cache=False, executor=LocalExecutor(workers=2))
    lowered = [note for note in result.summary["notes"] if note.startswith("--workers 2 lowered to 1: one working")]
    assert len(lowered) == 1 and result.summary["settings"]["executor_options"]["lanes"] == 1
    args = ["compare", *map(str, planted), "-o", str(tmp_path / "r"), "--no-report", "--kinds", "q,k", "--workers", "2"]
    shown = CliRunner().invoke(app, args).output
    assert shown.count("note: --workers 2 lowered to 1: one working") == 1, shown
    assert "lowered" not in CliRunner().invoke(app, [*args, "-q"]).output
    monkeypatch.setattr(local, "free_memory", lambda: None)  # no guard: 3 lanes for 4 jobs, nothing to say
    assert "lowered" not in " ".join(orthoscope.compare(*planted, kinds="q,k", cache=False,
                                                         executor=LocalExecutor(workers=3)).summary["notes"])


@pytest.mark.parametrize("cgroup, quota", [
    ({}, None),
    ({"sys/fs/cgroup/cpu.max": "max 100000\n"}, None),
    ({"sys/fs/cgroup/cpu.max": "150000 100000\n"}, 2),  # --cpus 1.5: two cores may be busy at once
    ({"proc/self/cgroup": V2_CGROUP, "sys/fs/cgroup/user.slice/run/job/cpu.max": "max 100000\n",
      "sys/fs/cgroup/user.slice/cpu.max": "100000 100000\n"}, 1),  # a quota above the process's cgroup
    ({"proc/self/cgroup": "2:cpu,cpuacct:/process_api/job\n0::/\n",
      "sys/fs/cgroup/cpu/process_api/job/cpu.cfs_quota_us": "50000\n",
      "sys/fs/cgroup/cpu/process_api/job/cpu.cfs_period_us": "100000\n"}, 1),
    ({"sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n", "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"}, None),
], ids=["none", "v2-max", "v2-quota", "v2-ancestor", "v1-own", "v1-none"])
def test_usable_cores_are_the_affinity_capped_by_the_cgroups_cpu_quota(tmp_path, monkeypatch, cgroup, quota):
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: set(range(8)))
    assert workers.usable_cores(fake_root(tmp_path, cgroup)) == (8 if quota is None else quota)


def test_physical_cores_count_hyperthread_siblings_once_and_respect_the_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: set(range(8)))
    topology = {f"sys/devices/system/cpu/cpu{cpu}/topology/{name}": f"{value}\n" for cpu in range(8)
                for name, value in (("physical_package_id", cpu // 4), ("core_id", cpu % 2))}  # 2 sockets x 2 cores
    assert workers.physical_cores(fake_root(tmp_path / "a", topology)) == 4
    quota = {**topology, "sys/fs/cgroup/cpu.max": "300000 100000\n"}
    assert workers.physical_cores(fake_root(tmp_path / "b", quota)) == 3
    assert workers.physical_cores(fake_root(tmp_path / "c", {})) == 8  # no topology to read: the usable cores
