"""route_cost: the default `compare` route per matrix against three bare float32 SVDs of the same matrices.

One process, one thread by default (OMP_NUM_THREADS), Qwen2.5-0.5B shapes (4864 x 896 MLP,
896 x 896 attention), bfloat16 storage like the hub checkpoints, LLM-like spectra (power-law
head, dense tail) with a consistent rotation plus noise as the update. For each shape:

- bare: `torch.linalg.svd` in float32 of W_b, W_p and a third matrix of the same shape
  (tall orientation), the floor of a route with a base, a post and a null SVD;
- route: `prepare_base` (the base SVD, no cache) plus `measure` with every metric of the
  default set, at the precision `--precision auto` picks;
- sign-free: `prepare_base` plus `measure` on the one-SVD route, against two bare SVDs;
- quick: the `quick` set (no full SVD), in seconds and against the three bare SVDs;
- p_pair's share: the default route without p_pair (its sign draws), and the draws p_pair took,
  its p and whether the analytic bound settled it (`metrics.nulls.pair_tail`).

Times are CPU seconds of this process (time.process_time, best of REPEATS), robust to other
load on the machine as long as it has a core to spare. `--profile` prints cProfile's top
functions of one default-route call per shape.

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python bench/route_cost.py [--profile]

(PYTHONPATH=<older checkout>/src measures an older version with the same script.)
"""

from __future__ import annotations

import cProfile
import math
import os
import pstats
import sys
import time

import torch

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

from orthoscope.metrics import nulls  # noqa: E402
from orthoscope.metrics.registry import metric_sets  # noqa: E402
from orthoscope.pipeline.measure import measure  # noqa: E402
from orthoscope.pipeline.operands import prepare_base  # noqa: E402
from orthoscope.pipeline.precision import resolve_precision  # noqa: E402

METRIC_SETS = metric_sets()
PAIR_TAIL = nulls.pair_tail

SHAPES = [(4864, 896), (896, 896)]
REPEATS = 3
CPU = torch.device("cpu")


def llm_like(shape: tuple[int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A bf16 pair: s_i = 20 i^-0.6 + 0.5 in random bases, the post a consistent small rotation, 1.05 x, plus noise."""
    g = torch.Generator().manual_seed(seed)
    m, n = shape
    r = min(m, n)
    U = torch.linalg.qr(torch.randn(m, r, generator=g))[0]
    V = torch.linalg.qr(torch.randn(n, r, generator=g))[0]
    S = 20 * torch.arange(1, r + 1, dtype=torch.float32) ** -0.6 + 0.5
    A = 0.002 * torch.randn(r, r, generator=g)
    Q = torch.linalg.matrix_exp(A - A.T)
    W_b = (U * S) @ V.T
    W_p = (U @ Q * (1.05 * S)) @ (V @ Q).T + 0.002 * torch.randn(m, n, generator=g)
    scale = 0.05 / W_b.std()
    return (W_b * scale).bfloat16(), (W_p * scale).bfloat16()


def best_of(fn, repeats: int = REPEATS) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def bare_svds(mats: list[torch.Tensor]) -> None:
    for W in mats:
        W = W.float()
        torch.linalg.svd(W.T if W.shape[0] < W.shape[1] else W, full_matrices=False)


def route(W_b: torch.Tensor, W_p: torch.Tensor, metrics: frozenset[str]) -> None:
    dtype = resolve_precision("auto", metrics)
    measure(prepare_base(W_b, dtype, CPU), W_p, "m", 0, metrics)


def main(profile: bool) -> None:
    print(f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}, "
          f"default set at {resolve_precision('auto', METRIC_SETS['all'])}")
    for i, shape in enumerate(SHAPES):
        W_b, W_p = llm_like(shape, i)
        third = (W_b.float() + 0.01 * torch.randn(shape)).bfloat16()
        bare3 = best_of(lambda: bare_svds([W_b, W_p, third]))
        full = best_of(lambda: route(W_b, W_p, METRIC_SETS["all"]))
        bare2 = best_of(lambda: bare_svds([W_b, W_p]))
        free = best_of(lambda: route(W_b, W_p, METRIC_SETS["sign-free"]))
        has_quick = "quick" in METRIC_SETS  # an older checkout may lack it
        quick = best_of(lambda: route(W_b, W_p, METRIC_SETS["quick"])) if has_quick else math.nan
        no_pair = best_of(lambda: route(W_b, W_p, METRIC_SETS["all"] - {"p_pair"}))
        tails = []
        nulls.pair_tail = lambda *a, **k: tails.append(PAIR_TAIL(*a, **k)) or tails[-1]
        route(W_b, W_p, METRIC_SETS["all"])
        nulls.pair_tail = PAIR_TAIL
        print(f"{shape[0]}x{shape[1]}: default route {full:.3f} s / 3 bare f32 SVDs {bare3:.3f} s"
              f" = {full / bare3:.2f}x;"
              f" sign-free {free:.3f} s / 2 bare {bare2:.3f} s = {free / bare2:.2f}x;"
              f" quick {quick:.3f} s = {quick / bare3:.2f}x;"
              f" default without p_pair {no_pair:.3f} s = {no_pair / bare3:.2f}x"
              f" (p_pair: {tails[0].draws} draws, p {tails[0].p:.2g}{', bound' if tails[0].bounded else ''})")
        if profile:
            prof = cProfile.Profile()
            prof.enable()
            route(W_b, W_p, METRIC_SETS["all"])
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(14)


if __name__ == "__main__":
    main("--profile" in sys.argv)
