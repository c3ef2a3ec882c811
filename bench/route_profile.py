"""route_profile: `orthoscope.compare` of a pair in this process, each job's bare float32 SVDs timed just before it.

CPU seconds (time.process_time: robust to other load while a core is free) of the analysis and of its
floor, per matrix shape, in one process tuned as the CLI (`orthoscope.tuning.tune_process`), at the
thread count of OMP_NUM_THREADS (default 1); `--profile` adds cProfile on CPU time, the source of
docs/benchmarks.md's route profile table. The pairs come from bench/pair_speed.py (Qwen-shaped) or
bench/goals.py (SmolLM2-shaped); `--floor 2` for the sign-free set.

    cd bench && ../.venv/bin/python -c "from pathlib import Path; from pair_speed import build_pair; \
        build_pair(Path('/tmp/q2'), 2)" && cd ..                         # goals.build_smollm: SmolLM2-shaped
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/route_profile.py /tmp/q2/base /tmp/q2/post --profile q2.prof
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/route_profile.py /tmp/q2/base /tmp/q2/post \\
        --metrics sign-free --floor 2
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import orthoscope  # noqa: E402
import orthoscope.pipeline.executors.local as local  # noqa: E402
import orthoscope.pipeline.measure  # noqa: E402, F401  (imports are not analysis)
import orthoscope.pipeline.run  # noqa: E402, F401
from orthoscope.architectures import read_matrix  # noqa: E402
from orthoscope.kernels import svd  # noqa: E402
from orthoscope.tuning import tune_process  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base")
    parser.add_argument("post")
    parser.add_argument("--metrics", default="all")
    parser.add_argument("--floor", type=int, default=3, help="bare SVDs per matrix: 3 (base, post, base) or 2")
    parser.add_argument("--profile", default="", help="write cProfile's stats (CPU time) here and print the top")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    tune_process()
    floor: dict[tuple, float] = {}
    jobs: dict[tuple, float] = {}
    analyse = local.analyse

    def floor_then_analyse(base, posts, job, settings, cache):
        shape = tuple(job.ref.shape)
        W_b, W_p = read_matrix(base, job.ref).float(), read_matrix(posts[0], job.ref).float()
        for W in (W_b, W_p, W_b)[:args.floor]:
            c = time.process_time()
            svd(W, torch.float32)
            floor[shape] = floor.get(shape, 0.0) + time.process_time() - c
        c = time.process_time()
        try:
            return analyse(base, posts, job, settings, cache)
        finally:
            jobs[shape] = jobs.get(shape, 0.0) + time.process_time() - c

    local.analyse = floor_then_analyse
    out = tempfile.mkdtemp(prefix="route-profile-")
    profile = cProfile.Profile(time.process_time) if args.profile else None
    started = time.process_time()
    if profile:
        profile.enable()
    result = orthoscope.compare(args.base, args.post, out, metrics=args.metrics, cache=False, progress=False)
    if profile:
        profile.disable()
    total = time.process_time() - started - sum(floor.values())
    shutil.rmtree(out, ignore_errors=True)
    F, J = sum(floor.values()), sum(jobs.values())
    threads = torch.get_num_threads()
    print(f"{args.metrics}, {len(result.table)} matrices, {threads} thread(s): compare {total:.2f} s CPU "
          f"(jobs {J:.2f} s, outside them {total - J:.2f} s); floor of {args.floor} SVDs {F:.2f} s; "
          f"ratio {total / F:.3f} (jobs {J / F:.3f}); load {os.getloadavg()[0]:.2f}")
    for shape in floor:
        print(f"  {str(shape):14s} jobs {jobs[shape]:7.2f} s  floor {floor[shape]:7.2f} s  "
              f"ratio {jobs[shape] / floor[shape]:.3f}")
    if profile:
        profile.dump_stats(args.profile)
        stats = pstats.Stats(args.profile).sort_stats("cumulative")
        stats.print_stats(r"orthoscope/(pipeline|kernels|metrics)", args.top)


if __name__ == "__main__":
    main()
