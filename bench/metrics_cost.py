"""metrics_cost: time of `measure()` per matrix pair on the default route and the sign-free route.

Qwen2.5-0.5B shapes (896 x 896 attention, 4864 x 896 MLP), float32 storage,
one thread. The base SVD (`prepare_base`, shared by both versions) is timed apart;
`measure()` is the per-post cost the new metrics add to. Times are CPU seconds
of this process (time.process_time, best of 2), robust to other load on the
machine; wall seconds of the same calls are printed beside them. Run it once with this
checkout's src and once with an older one to compare:

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python bench/metrics_cost.py
    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/old/src .venv/bin/python bench/metrics_cost.py
"""

from __future__ import annotations

import json
import sys
import time

import torch

torch.set_num_threads(1)

from orthoscope.metrics.registry import metric_sets  # noqa: E402
from orthoscope.pipeline.measure import measure  # noqa: E402
from orthoscope.pipeline.operands import prepare_base  # noqa: E402
from orthoscope.pipeline.precision import resolve_precision  # noqa: E402

METRIC_SETS = metric_sets()

SHAPES = [(896, 896)] * 4 + [(4864, 896)] * 4
REPEATS = 2


def pair(shape: tuple[int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    W_b = torch.randn(shape, generator=g) / shape[1] ** 0.5
    W_p = 1.02 * W_b + 0.01 * torch.randn(shape, generator=g) / shape[1] ** 0.5
    return W_b, W_p


def timed(route: str) -> dict:
    metrics = METRIC_SETS[route]
    dtype = resolve_precision("auto", metrics)
    out = {"route": route, "dtype": str(dtype), "base_svd_cpu_s": 0.0, "measure_cpu_s": 0.0, "measure_wall_s": 0.0}
    for i, shape in enumerate(SHAPES):
        W_b, W_p = pair(shape, i)
        start = time.process_time()
        base = prepare_base(W_b, dtype, torch.device("cpu"))
        out["base_svd_cpu_s"] += time.process_time() - start
        best, wall = float("inf"), float("inf")
        for _ in range(REPEATS):
            start, start_wall = time.process_time(), time.perf_counter()
            measure(base, W_p, f"m{i}", 0, metrics)
            best, wall = min(best, time.process_time() - start), min(wall, time.perf_counter() - start_wall)
        out["measure_cpu_s"] += best
        out["measure_wall_s"] += wall
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


if __name__ == "__main__":
    routes = sys.argv[1:] or ["all", "sign-free"]
    print(json.dumps([timed(r) for r in routes], indent=1))
