"""small_route: where one float64 SVD stops costing less than a float32 SVD and its float64 refinement.

For each shape: the float32 SVD plus `kernels.top_subspaces` (the top-64 subspaces refined in
float64: the old route for every matrix under `--precision auto`) against one float64 SVD,
and the Gaussian null's 2r x r SVD in each dtype. Best of 5, in one process; `measure.SMALL_RANK`
is set from it (docs/benchmarks.md, "The small-matrix route").

    .venv/bin/python bench/small_route.py --threads 1
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from orthoscope.kernels import svd, top_subspaces

SHAPES = [(96, 96), (96, 288), (128, 896), (192, 192), (192, 576), (256, 256), (384, 384), (576, 576),
          (576, 1536), (896, 896)]


def best(run, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# threads {args.threads}, load {os.getloadavg()[0]:.2f}")
    print("shape      f32+refine   f64 SVD   ratio   null f32   null f64")
    for m, n in SHAPES:
        W = torch.randn(m, n).bfloat16().float()
        r = min(m, n)
        k = min(64, r)
        N = torch.randn(2 * r, r)
        refined = best(lambda: top_subspaces(W, svd(W, torch.float32), k))
        exact = best(lambda: svd(W, torch.float64))
        n32, n64 = best(lambda: svd(N, torch.float32)), best(lambda: svd(N, torch.float64))
        print(f"{m}x{n:<6} {refined * 1e3:9.1f} ms {exact * 1e3:7.1f} ms {exact / refined:6.2f} "
              f"{n32 * 1e3:8.1f} ms {n64 * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
