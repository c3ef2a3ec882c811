"""route_profile: `orthoscope.compare` of a pair in this process, each job's bare float32 SVDs timed just before it.

CPU seconds (time.process_time: robust to other load while a core is free) of the analysis and of its
floor, per matrix shape, in one process tuned as the CLI (`orthoscope.tuning.tune_process`), at the
thread count of OMP_NUM_THREADS (default 1); `--profile` adds cProfile on CPU time, the source of
docs/benchmarks.md's route profile table; `--split` adds each job's CPU seconds per stage (exclusive: a
stage's own time, its sub-stages apart) per shape, as fractions of that shape's floor (the default route's
stages: on other metric sets the stages it does not wrap fall in "rest of the job"). The pairs come from
bench/pair_speed.py (Qwen-shaped) or bench/goals.py (SmolLM2-shaped); `--floor 2` for the sign-free set.

    cd bench && ../.venv/bin/python -c "from pathlib import Path; from pair_speed import build_pair; \
        build_pair(Path('/tmp/q2'), 2)" && cd ..                         # goals.build_smollm: SmolLM2-shaped
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/route_profile.py /tmp/q2/base /tmp/q2/post --profile q2.prof
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/route_profile.py /tmp/q2/base /tmp/q2/post \\
        --metrics sign-free --floor 2
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/route_profile.py /tmp/q2/base /tmp/q2/post --split
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import tempfile
import time
from collections import defaultdict

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import orthoscope  # noqa: E402
import orthoscope.metrics as metrics  # noqa: E402
import orthoscope.metrics.columns as columns  # noqa: E402
import orthoscope.metrics.nulls as nulls  # noqa: E402
import orthoscope.pipeline.executors.local as local  # noqa: E402
import orthoscope.pipeline.measure as measure  # noqa: E402  (imports are not analysis)
import orthoscope.pipeline.operands as operands  # noqa: E402
import orthoscope.pipeline.run  # noqa: E402, F401
from orthoscope.architectures import read_matrix  # noqa: E402
from orthoscope.kernels import svd  # noqa: E402
from orthoscope.tuning import tune_process  # noqa: E402


class Split:
    """Exclusive CPU seconds per stage of the default route, per job shape: the functions the route calls are
    wrapped in this process (module attributes, so the pipeline's own calls go through them)."""

    # (module, attribute, stage); an SVD's stage is named by the stage that calls it (post: full_route)
    WRAPPED = [
        (operands, "svd", "base SVD"), (measure, "svd", "post SVD"), (measure, "gaussian_null", "null: rest"),
        (measure, "null_frame", "null: draw"), (metrics, "overlaps", "products Q_U, Q_V"),
        (measure, "delta_frame", "product D"), (operands, "top_subspaces", "top-64 refinement"),
        (columns.Angles, "__init__", "principal angles"), (columns.Rotation, "row", "rotation columns"),
        (columns.Rotation, "__init__", "rotation columns"), (measure, "symmetry_columns", "symmetry columns"),
        (nulls, "p_pair", "p_pair draws"), (columns.GaussianNull, "__init__", "null: columns"),
        (columns.GaussianNull, "row", "null: columns"), (measure, "update_of", "update dW, norms"),
    ]

    def __init__(self):
        self.seconds: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.shape: tuple = ()
        self.stack: list[list] = []  # [stage, start, children's seconds]
        for owner, name, stage in self.WRAPPED:
            setattr(owner, name, self.wrap(getattr(owner, name), stage))

    def wrap(self, function, stage: str):
        def timed(*args, **kwargs):
            if stage == "post SVD" and self.stack and self.stack[-1][0].startswith("null"):
                label = "null SVD"
            else:
                label = stage
            self.stack.append([label, time.process_time(), 0.0])
            try:
                return function(*args, **kwargs)
            finally:
                label, start, children = self.stack.pop()
                spent = time.process_time() - start
                self.seconds[self.shape][label] += spent - children
                if self.stack:
                    self.stack[-1][2] += spent
        return timed

    def print(self, jobs: dict, floor: dict) -> None:
        stages = list(dict.fromkeys(["base SVD", "post SVD", "null SVD"] + [s for _, _, s in self.WRAPPED]))
        shapes = list(floor)
        print(f"{'stage / floor of its shape':26s}" + "".join(f"{str(s):>14s}" for s in shapes) + f"{'all':>9s}")
        F = sum(floor.values())
        for stage in stages + ["rest of the job"]:
            def own(shape):
                spent = self.seconds[shape]
                return jobs[shape] - sum(spent.values()) if stage == "rest of the job" else spent.get(stage, 0.0)
            print(f"{stage:26s}" + "".join(f"{own(s) / floor[s]:14.3f}" for s in shapes)
                  + f"{sum(own(s) for s in shapes) / F:9.3f}")
        print(f"{'jobs / floor':26s}" + "".join(f"{jobs[s] / floor[s]:14.3f}" for s in shapes)
              + f"{sum(jobs.values()) / F:9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base")
    parser.add_argument("post")
    parser.add_argument("--metrics", default="all")
    parser.add_argument("--floor", type=int, default=3, help="bare SVDs per matrix: 3 (base, post, base) or 2")
    parser.add_argument("--profile", default="", help="write cProfile's stats (CPU time) here and print the top")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--split", action="store_true", help="each job's CPU seconds per stage, per shape")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    tune_process()
    floor: dict[tuple, float] = {}
    jobs: dict[tuple, float] = {}
    analyse = local.analyse
    split = Split() if args.split else None

    def floor_then_analyse(base, posts, job, settings, cache):
        shape = tuple(job.ref.shape)
        W_b, W_p = read_matrix(base, job.ref).float(), read_matrix(posts[0], job.ref).float()
        for W in (W_b, W_p, W_b)[:args.floor]:
            c = time.process_time()
            svd(W, torch.float32)
            floor[shape] = floor.get(shape, 0.0) + time.process_time() - c
        if split:
            split.shape = shape
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
    if split:
        split.print(jobs, floor)
    if profile:
        profile.dump_stats(args.profile)
        stats = pstats.Stats(args.profile).sort_stats("cumulative")
        stats.print_stats(r"orthoscope/(pipeline|kernels|metrics)", args.top)


if __name__ == "__main__":
    main()
