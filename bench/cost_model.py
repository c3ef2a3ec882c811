"""cost_model: per-shape kernel times on this machine, a fitted cost model, and pair costs at paper scale.

Times (median of --repeats, 2 torch threads) of the kernels one matrix pair needs:
  svd32 / svd64   thin SVD of the base (gesdd, tall orientation)
  values          the post singular values (blocked float64 Gram by dsyrk + values-only dsyev,
                  orthoscope.kernels.singular_values;
                  square test matrices get a shifted spectrum so the Gram route is accepted, as on
                  trained weights; its svdvals fallback costs about one svd64)
  M               U_b^T W_p V_b in float32
Each is fitted as t = a * m n^2 + b * n^3 (m >= n, the tall orientation) and used
to predict the cost of a whole pair for Llama-3.1-8B, Llama-3.1-70B and
DeepSeek-V3 (671B MoE) shapes, for the one-SVD route (sign-free metrics; cold
and with the base cached) and the full route (the default: 3 SVDs in float32, base, post and
Gaussian null, plus D and the overlaps; and with --precision float64: 3 SVDs in float64).
The numbers feed docs/scaling.md.

    .venv/bin/python bench/cost_model.py                  # about a minute
    .venv/bin/python bench/cost_model.py --device cuda    # the same on a GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from orthoscope.kernels import singular_values, svd
from orthoscope.metrics import one_svd_form

SHAPES = [(896, 896), (4864, 896), (2048, 2048), (7168, 2048), (4096, 4096)]

# (rows, cols) of every analysed matrix in one layer, and the layer count
MODELS = {
    "Llama-3.1-8B": ([(4096, 4096), (1024, 4096), (1024, 4096), (4096, 4096),
                      (14336, 4096), (14336, 4096), (4096, 14336)], 32),
    "Llama-3.1-70B": ([(8192, 8192), (1024, 8192), (1024, 8192), (8192, 8192),
                       (28672, 8192), (28672, 8192), (8192, 28672)], 80),
}
# DeepSeek-V3: MLA attention in all 61 layers; 3 dense MLP layers; 58 MoE layers
# with 256 routed experts and 1 shared expert (each gate/up 2048x7168, down 7168x2048)
DSV3_ATTENTION = [(1536, 7168), (24576, 1536), (576, 7168), (32768, 512), (7168, 16384)]
DSV3_DENSE_MLP = [(18432, 7168), (18432, 7168), (7168, 18432)]
DSV3_EXPERT = [(2048, 7168), (2048, 7168), (7168, 2048)]


DEVICE = torch.device("cpu")


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats + (DEVICE.type == "cuda")):  # one warm-up call on a GPU
        start = time.perf_counter()
        fn()
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[-repeats:])


def measure(shape: tuple[int, int], repeats: int) -> dict:
    g = torch.Generator().manual_seed(0)
    W_b = torch.randn(shape, generator=g) * 0.02
    if shape[0] == shape[1]:
        # a square Gaussian has s_min near 0, which would send `values` to its svdvals
        # fallback at random; trained weights are not like that, so shift the spectrum away from 0
        W_b += 0.1 * shape[0] ** 0.5 * torch.eye(shape[0])
    W_p = W_b + 2e-4 * torch.randn(shape, generator=g)
    W_b, W_p = W_b.to(DEVICE), W_p.to(DEVICE)
    big = shape[0] * shape[1] >= 4096 * 4096 and DEVICE.type == "cpu"
    reps = 1 if big else repeats
    f = svd(W_b, torch.float32, DEVICE)
    row = {"shape": list(shape),
           "svd32": timed(lambda: svd(W_b, torch.float32, DEVICE), reps),
           "values": timed(lambda: singular_values(W_p, DEVICE), reps),
           "M": timed(lambda: one_svd_form(f.U, W_p, f.V), reps)}
    if not big:
        row["svd64"] = timed(lambda: svd(W_b, torch.float64, DEVICE), reps)
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    return row


def fit(rows: list[dict], key: str) -> tuple[float, float]:
    """Least squares of t = a m n^2 + b n^3 in relative error (each row weighted by 1/t)."""
    rows = [r for r in rows if key in r]
    A = np.array([[max(r["shape"]) * min(r["shape"]) ** 2, min(r["shape"]) ** 3] for r in rows], dtype=float)
    t = np.array([r[key] for r in rows])
    coef, *_ = np.linalg.lstsq(A / t[:, None], np.ones(len(t)), rcond=None)
    return float(coef[0]), float(coef[1])


def predict(coef: tuple[float, float], shape: tuple[int, int]) -> float:
    m, n = max(shape), min(shape)
    return coef[0] * m * n * n + coef[1] * n ** 3


def pair_cost(models: dict, shapes: list[tuple[int, int]]) -> dict:
    one_svd_warm = sum(predict(models["values"], s) + predict(models["M"], s) for s in shapes)
    one_svd_cold = one_svd_warm + sum(predict(models["svd32"], s) for s in shapes)
    # the default full route: base, post and null SVDs in float32 (the null's is at most 2r x r: counted as
    # one of the matrix's shape, an upper bound), D and the overlaps U_b^T U_p, V_b^T V_p (about 2 M)
    full32 = sum(3 * predict(models["svd32"], s) + 2 * predict(models["M"], s) for s in shapes)
    full = sum(3 * predict(models["svd64"], s) for s in shapes)
    return {"matrices": len(shapes), "one_svd_cold_h": one_svd_cold / 3600, "one_svd_warm_h": one_svd_warm / 3600,
            "full_f32_h": full32 / 3600, "full_f64_h": full / 3600}


def model_shapes() -> dict[str, list[tuple[int, int]]]:
    out = {name: layer * layers for name, (layer, layers) in MODELS.items()}
    out["DeepSeek-V3 (671B MoE)"] = (DSV3_ATTENTION * 61 + DSV3_DENSE_MLP * 3 + DSV3_EXPERT * 257 * 58)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda: the GPU column of docs/scaling.md")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads)
    rows = [measure(shape, args.repeats) for shape in SHAPES]
    models = {key: fit(rows, key) for key in ("svd32", "svd64", "values", "M")}
    print("FIT " + json.dumps({k: {"a_mn2": v[0], "b_n3": v[1]} for k, v in models.items()}))
    for row in rows:
        errors = {k: round(predict(models[k], row["shape"]) / row[k] - 1, 3) for k in models if k in row}
        print(f"fit error {row['shape']}: {errors}")
    for name, shapes in model_shapes().items():
        print("PAIR " + json.dumps({"model": name, **{k: (round(v, 2) if isinstance(v, float) else v)
                                                        for k, v in pair_cost(models, shapes).items()}}))


if __name__ == "__main__":
    main()
