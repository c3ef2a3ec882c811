"""How many jobs run at once: `--workers`, checked once for every executor, and the local executor's lanes.

A lane is a thread of this process that runs one job at a time with torch at one thread. On a
CPU, two jobs side by side on one thread each finish sooner than one job after the other on two
threads (a single SVD keeps two cores only partly busy, and the work between the kernels keeps
them less so), which docs/benchmarks.md records. The default (`workers=None`) is as many lanes
as torch has threads when the run starts (at most a container's CPU quota, `usable_cores`),
only in a process tuned for it (`orthoscope.tuning`: the CLI opts in) and on a CPU; otherwise
one lane, today's one-job-at-a-time run in the calling thread. Either way lanes never outnumber
the jobs that compute something (a job whose every result is stored only hashes its bytes), and
the memory guard below may lower them.

Memory guard: a job's working set is taken as `JOB_COPIES` float64 copies of its matrix plus its
stored copy per post; lanes times the largest job's working set must fit in `MEMORY_SHARE` of the
memory available when the run starts (`free_memory`: the smaller of Linux's MemAvailable and what
the process's memory cgroup and those above it (a container's limit) have left, else
`os.sysconf("SC_AVPHYS_PAGES")`), else fewer lanes run (at least one).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from orthoscope.errors import OrthoscopeError
from orthoscope.pipeline.filters import positive_int
from orthoscope.tuning import process_tuned

JOB_COPIES = 12  # float64 copies of one matrix a job may hold at once (operands, difference, factors, nulls)
MEMORY_SHARE = 0.5  # of the free memory, what the lanes' working sets together may take


def check_workers(workers: int | None) -> int | None:
    """`workers` if None or a positive integer, else the one-line error `--workers` gives.

    >>> check_workers(2), check_workers(None)
    (2, None)
    >>> check_workers(0)
    Traceback (most recent call last):
    ...
    orthoscope.errors.OrthoscopeError: --workers must be a positive integer, not 0
    """
    if workers is not None and not positive_int(workers):
        raise OrthoscopeError(f"--workers must be a positive integer, not {workers!r}")
    return workers


def computes(job) -> bool:
    """Whether `job` may compute anything: some post's or pair's result is not stored yet."""
    return (any(i not in job.known for i in job.posts)
            or any(pair not in job.known_pairs for pair in job.pairs))


def job_bytes(job, posts: int) -> int:
    """The working set `JOB_COPIES` stands for: float64 copies of the matrix, and one stored copy per post."""
    rows, cols = job.ref.shape
    return rows * cols * (8 * JOB_COPIES + 4 * posts)


def free_memory() -> int | None:
    """Bytes of memory available now: the smaller of Linux's MemAvailable (free memory plus the page cache it can
    drop, which holds the checkpoints just read) and what this process's memory cgroup has left (a container's
    limit, `cgroup_room`), else the free pages `os.sysconf` reports; None where none of them says.

    >>> free_memory() is None or free_memory() > 0
    True
    """
    return _free_memory(Path("/"))


NO_CGROUP_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63: a limit this large is none


def _free_memory(root: Path) -> int | None:
    """`free_memory` with /proc and /sys under `root` (tests give a fake tree)."""
    available = _mem_available(root)
    room = cgroup_room(root)
    known = [value for value in (available, room) if value is not None]
    if known:
        return min(known)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _mem_available(root: Path) -> int | None:
    try:
        with open(root / "proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cgroup_room(root: Path = Path("/")) -> int | None:
    """Bytes this process's memory cgroup may still take (`root`/proc/self/cgroup names it, under
    `root`/sys/fs/cgroup): its limit less its usage, plus its inactive page cache (reclaimable, as MemAvailable
    counts it: the checkpoints just read are charged to the cgroup). cgroup v2: the smallest room over the
    process's cgroup and each one above it to the root (`memory.max` less `memory.current`, "max": no limit);
    cgroup v1: the memory controller's cgroup, whose `hierarchical_memory_limit` (memory.stat) is the smallest
    limit on the way up, less `memory.usage_in_bytes`. The smaller of the two where both say; None where there
    is no limit or no cgroup file to read.

    >>> cgroup_room(Path("/nonexistent")) is None
    True
    """
    v2_path, v1_path = _own_cgroups(root)
    rooms = [room for room in (_v2_room(root / "sys/fs/cgroup", v2_path),
                               _v1_room(root / "sys/fs/cgroup/memory", v1_path)) if room is not None]
    return min(rooms) if rooms else None


def _own_cgroups(root: Path, controller: str = "memory") -> tuple[str, str]:
    """This process's cgroup v2 path (the `0::` line of /proc/self/cgroup) and its v1 `controller`'s path; "/" for
    one that is not listed or where the file cannot be read (the top of the tree: a container's own)."""
    v2, v1 = "/", "/"
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return v2, v1
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if line.startswith("0::"):
            v2 = path or "/"
        elif controller in controllers.split(","):
            v1 = path or "/"
    return v2, v1


def usable_cores(root: Path = Path("/")) -> int:
    """The cores this process may run on (its CPU affinity), at most its cgroups' CPU quota rounded up (a
    container's `--cpus`: cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`, on its own cgroup
    and each one above it).

    >>> usable_cores() >= 1
    True
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    v2_path, v1_path = _own_cgroups(root, "cpu")
    quotas = [_cpu_quota(folder / "cpu.max", None) for folder in _levels(root / "sys/fs/cgroup", v2_path)]
    quotas += [_cpu_quota(folder / "cpu.cfs_quota_us", folder / "cpu.cfs_period_us")
               for folder in _levels(root / "sys/fs/cgroup/cpu", v1_path)]
    return max(1, min([cores, *(quota for quota in quotas if quota is not None)]))


def physical_cores(root: Path = Path("/")) -> int:
    """The physical cores among those this process may run on (hyperthread siblings counted once, as torch's
    default thread count counts them), at most `usable_cores`; `usable_cores` where Linux's topology is not
    readable.

    >>> 1 <= physical_cores() <= usable_cores()
    True
    """
    usable = usable_cores(root)
    try:
        cpus = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return usable
    cores = set()
    for cpu in cpus:
        topology = root / f"sys/devices/system/cpu/cpu{cpu}/topology"
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(),
                       (topology / "core_id").read_text().strip()))
        except OSError:
            return usable
    return max(1, min(len(cores), usable))


def _cpu_quota(quota_file: Path, period_file: Path | None) -> int | None:
    """ceil(quota / period) of a cgroup (v2: both in `cpu.max`; v1: two files), None for no quota or no file."""
    try:
        fields = quota_file.read_text().split()
        quota, period = fields[0], fields[1] if period_file is None else period_file.read_text().strip()
        if quota == "max" or int(quota) <= 0:
            return None
        return -(-int(quota) // max(int(period), 1))
    except (OSError, ValueError, IndexError):
        return None


def _levels(top: Path, path: str) -> list[Path]:
    """The folders of `path`'s cgroup and each one above it, up to `top`, that exist under `top`."""
    parts = [part for part in path.split("/") if part and part not in (".", "..")]
    folders = [top.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]
    return [folder for folder in folders if folder.is_dir()]


def _v2_room(top: Path, path: str) -> int | None:
    rooms = []
    for folder in _levels(top, path):
        try:
            limit = (folder / "memory.max").read_text().strip()
            if limit == "max" or int(limit) >= NO_CGROUP_LIMIT:
                continue
            usage = int((folder / "memory.current").read_text().strip())
        except (OSError, ValueError):
            continue
        rooms.append(max(0, int(limit) - usage + _stat_value(folder / "memory.stat", "inactive_file")))
    return min(rooms) if rooms else None


def _v1_room(top: Path, path: str) -> int | None:
    for folder in _levels(top, path):  # the process's own cgroup where it is mounted, else the nearest above
        try:
            limit = _stat_value(folder / "memory.stat", "hierarchical_memory_limit") or int(
                (folder / "memory.limit_in_bytes").read_text().strip())
            usage = int((folder / "memory.usage_in_bytes").read_text().strip())
        except (OSError, ValueError):
            continue
        if limit >= NO_CGROUP_LIMIT:
            return None
        return max(0, limit - usage + _stat_value(folder / "memory.stat", "total_inactive_file"))
    return None


def _stat_value(path: Path, key: str) -> int:
    """A count of a cgroup's memory.stat, 0 where it is missing or unreadable."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _size(count: int, digits: int) -> str:
    """Bytes in GiB with `digits` decimals from 0.1 GiB, below that in whole MiB, below 1 MiB in whole KiB.

    >>> _size(int(2.1 * 2**30), 2), _size(2**29, 1), _size(300 << 20, 1), _size(50 << 20, 2), _size(5000, 2)
    ('2.10 GiB', '0.5 GiB', '0.3 GiB', '50 MiB', '5 KiB')
    """
    if count >= 2**30 / 10:
        return f"{count / 2**30:.{digits}f} GiB"
    return f"{count / 2**20:.0f} MiB" if count >= 2**20 else f"{count / 1024:.0f} KiB"


def choose_lanes(workers: int | None, jobs: Sequence, device: str, tuned: bool, free: int | None) -> int:
    """Lanes for a run: `workers` if given, else torch's thread count (at most `usable_cores`) in a tuned process
    on a CPU, else 1; at most the jobs that compute, and at most what `free` bytes hold (`MEMORY_SHARE`); always
    1 on a GPU.

    >>> from types import SimpleNamespace as Job
    >>> jobs = [Job(ref=Job(shape=(896, 896)), posts=(0,), known={}, pairs=(), known_pairs={})] * 8
    >>> choose_lanes(4, jobs, "cpu", False, 1 << 40), choose_lanes(None, jobs, "cpu", False, 1 << 40)
    (4, 1)
    >>> choose_lanes(4, jobs[:3], "cpu", False, 1 << 40), choose_lanes(4, jobs, "cuda:0", True, 1 << 40)
    (3, 1)
    >>> choose_lanes(4, jobs, "cpu", False, 3 * job_bytes(jobs[0], 1) * 2)  # room for three working sets
    3
    """
    return lanes_and_note(workers, jobs, device, tuned, free)[0]


def memory_lanes(lanes: int, largest: int, free: int | None) -> int:
    """At most `lanes`, and at most as many working sets of `largest` bytes as fit in `MEMORY_SHARE` of `free`
    (None: no guard); one at the least.

    >>> memory_lanes(4, 2 << 30, 10 << 30), memory_lanes(4, 2 << 30, 1 << 30), memory_lanes(4, 2 << 30, None)
    (2, 1, 4)
    """
    if free is None:
        return lanes
    return max(1, min(lanes, int(free * MEMORY_SHARE) // max(largest, 1)))


def lanes_and_note(workers: int | None, jobs: Sequence, device: str, tuned: bool,
                   free: int | None) -> tuple[int, str | None]:
    """`choose_lanes`, and a run note where a `workers` given explicitly was lowered on a GPU or by the memory
    guard (None otherwise: lowered to the jobs that compute is no loss, there is no more work to run at once).

    >>> from types import SimpleNamespace as Job
    >>> jobs = [Job(ref=Job(shape=(896, 896)), posts=(0,), known={}, pairs=(), known_pairs={})] * 8
    >>> lanes_and_note(4, jobs, "cuda:0", False, None)
    (1, '--workers 4 lowered to 1: on cuda:0 one matrix runs at a time')
    >>> lanes_and_note(4, jobs[:2], "cpu", False, None)
    (2, None)
    """
    if not device.startswith("cpu"):
        note = f"--workers {workers} lowered to 1: on {device} one matrix runs at a time"
        return 1, note if workers is not None and workers > 1 else None
    lanes = workers if workers is not None else (min(torch.get_num_threads(), usable_cores())
                                                 if tuned or process_tuned() else 1)
    lanes = min(lanes, max(1, sum(map(computes, jobs))))
    if lanes == 1 or free is None:
        return lanes, None
    largest = max(job_bytes(job, len(job.posts)) for job in jobs if computes(job))
    held = memory_lanes(lanes, largest, free)
    if held >= lanes:
        return lanes, None
    share = "half" if MEMORY_SHARE == 0.5 else f"{MEMORY_SHARE:.0%} of"
    room, size = f"{share} the {_size(free, 1)} free", _size(largest, 2)
    if held * largest > free * MEMORY_SHARE:  # the floor: one lane though its working set does not fit
        note = f"--workers {workers} lowered to 1: one working set of {size} exceeds {room}"
    else:
        sets = "one working set" if held == 1 else f"{held} working sets"
        note = f"--workers {workers} lowered to {held}: {sets} of {size} fit{'s' if held == 1 else ''} in {room}"
    return held, note if workers is not None else None
