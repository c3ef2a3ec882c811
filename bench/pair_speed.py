"""pair_speed: how close does `orthoscope.compare` get to the cost of its bare SVDs?

Builds a synthetic base/post pair with Qwen2.5-0.5B matrix shapes (random bf16
weights, sharded safetensors with an index), runs `orthoscope.compare` end to
end in a fresh subprocess (wall time, peak RSS), then times the bare float64
thin SVDs of the same matrices with the same routine (`orthoscope.kernels.svd`):
the floor. The pipeline does three SVDs per matrix pair (base, post, Gaussian
null), so the floor is reported for 2 and for 3 SVDs per matrix. The SVD calls
inside the compare child are also timed (a thin wrapper around
`orthoscope.pipeline.measure.svd`), which splits compare's own time into SVD and
non-SVD parts under the same load: on a shared 2-core machine the separate
floor run can see very different contention from the compare run.

    .venv/bin/python bench/pair_speed.py --layers 2        # quick check
    .venv/bin/python bench/pair_speed.py                   # all 24 layers
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

THREADS = 2

# Qwen2.5-0.5B
CONFIG = {
    "model_type": "qwen2",
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "torch_dtype": "bfloat16",
}
HIDDEN, INTER, HEADS, KV_HEADS = 896, 4864, 14, 2
HEAD_DIM = HIDDEN // HEADS
KV = KV_HEADS * HEAD_DIM  # 128

MATRICES = {  # suffix -> (rows, cols), nn.Linear layout (out, in)
    "self_attn.q_proj.weight": (HIDDEN, HIDDEN),
    "self_attn.k_proj.weight": (KV, HIDDEN),
    "self_attn.v_proj.weight": (KV, HIDDEN),
    "self_attn.o_proj.weight": (HIDDEN, HIDDEN),
    "mlp.gate_proj.weight": (INTER, HIDDEN),
    "mlp.up_proj.weight": (INTER, HIDDEN),
    "mlp.down_proj.weight": (HIDDEN, INTER),
}
BIASES = {  # Qwen2 has q/k/v biases; orthoscope ignores them
    "self_attn.q_proj.bias": HIDDEN,
    "self_attn.k_proj.bias": KV,
    "self_attn.v_proj.bias": KV,
}
LAYERS_PER_SHARD = 4
INIT_STD = 0.02
PERTURBATION = 0.01  # ||W_p - W_b||_F / ||W_b||_F, before bf16 rounding


# --------------------------------------------------------------------------- pair


def kind_of(name: str) -> str:
    return name.rsplit(".", 2)[-2].removesuffix("_proj")


def build_pair(root: Path, layers: int, seed: int = 0) -> tuple[Path, Path]:
    """Write base/ and post/ under root, one shard of LAYERS_PER_SHARD layers at a time."""
    base_dir, post_dir = root / "base", root / "post"
    for folder in (base_dir, post_dir):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps({**CONFIG, "num_hidden_layers": layers}, indent=2))
    shards = [list(range(s, min(s + LAYERS_PER_SHARD, layers))) for s in range(0, layers, LAYERS_PER_SHARD)]
    weight_map: dict[str, str] = {}
    total = 0
    for k, shard_layers in enumerate(shards, start=1):
        file = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        gen = torch.Generator().manual_seed(seed * 1000 + k)
        base: dict[str, torch.Tensor] = {}
        post: dict[str, torch.Tensor] = {}
        for i in shard_layers:
            for suffix, shape in MATRICES.items():
                name = f"model.layers.{i}.{suffix}"
                W = torch.randn(shape, generator=gen) * INIT_STD
                noise = torch.randn(shape, generator=gen)
                noise *= PERTURBATION * torch.linalg.matrix_norm(W) / torch.linalg.matrix_norm(noise)
                base[name] = W.to(torch.bfloat16)
                post[name] = (W + noise).to(torch.bfloat16)
            for suffix, size in BIASES.items():
                name = f"model.layers.{i}.{suffix}"
                b = (torch.randn(size, generator=gen) * INIT_STD).to(torch.bfloat16)
                base[name], post[name] = b, b.clone()
        save_file(base, str(base_dir / file), metadata={"format": "pt"})
        save_file(post, str(post_dir / file), metadata={"format": "pt"})
        for name, t in base.items():
            weight_map[name] = file
            total += t.numel() * t.element_size()
        del base, post
    index = json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
    for folder in (base_dir, post_dir):
        (folder / "model.safetensors.index.json").write_text(index)
    return base_dir, post_dir


def matrix_names(folder: Path) -> list[tuple[str, str]]:
    """(tensor name, shard path) of every 2-D weight, in layer order."""
    weight_map = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    names = [n for n in weight_map if n.endswith(".weight")]
    order = list(MATRICES)
    names.sort(key=lambda n: (int(n.split(".")[2]), order.index(n.split(".", 3)[3])))
    return [(n, str(folder / weight_map[n])) for n in names]


# ------------------------------------------------------------------------ compare

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(int(sys.argv[4]))
import orthoscope
import orthoscope.pipeline.measure as measure_mod
svd_time = [0.0, 0]
if hasattr(measure_mod, "svd"):  # time the SVDs inside this very run (same load)
    _svd = measure_mod.svd
    def timed_svd(*args, **kwargs):
        t = time.perf_counter()
        try:
            return _svd(*args, **kwargs)
        finally:
            svd_time[0] += time.perf_counter() - t
            svd_time[1] += 1
    measure_mod.svd = timed_svd
t1 = time.perf_counter()
prof = None
if sys.argv[5]:
    import cProfile
    prof = cProfile.Profile()
    prof.enable()
result = orthoscope.compare(sys.argv[1], sys.argv[2], sys.argv[3])
t2 = time.perf_counter()
if prof is not None:
    prof.disable()
    prof.dump_stats(sys.argv[5])
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print("PAIR_SPEED " + json.dumps({
    "vmhwm_mib": hwm / 1024,
    "import_s": t1 - t0, "compare_s": t2 - t1, "rows": len(result.table),
    "skipped": len(result.skipped), "summary_seconds": result.summary["seconds"],
    "svd_dtype": result.summary["settings"]["svd_dtype"],
    "svd_in_compare_s": svd_time[0], "svd_calls": svd_time[1],
}))
"""


def run_compare(base: Path, post: Path, out: Path, profile: Path | None = None) -> dict:
    """One end-to-end compare in a fresh interpreter; wall time and that child's peak RSS."""
    if out.exists():
        shutil.rmtree(out)  # a leftover run would be resumed, not recomputed
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS)}
    cmd = [sys.executable, "-c", CHILD, str(base), str(post), str(out), str(THREADS), str(profile or "")]
    log = out.parent / f"{out.name}.log"
    with log.open("w") as handle:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    if proc.returncode != 0:
        sys.exit(f"compare child failed (exit {proc.returncode}):\n{text[-4000:]}")
    line = next(ln for ln in text.splitlines() if ln.startswith("PAIR_SPEED "))
    info = json.loads(line.removeprefix("PAIR_SPEED "))
    # ru_maxrss (KiB on Linux, bytes on macOS) starts at the parent's peak after fork+exec on Linux,
    # and this parent built the pair: VmHWM from the child itself is the child's own peak
    rss_mib = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return {**info, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mib": info.get("vmhwm_mib", rss_mib)}


# -------------------------------------------------------------------------- floor


def _read(path: str, name: str) -> torch.Tensor:
    with safe_open(path, framework="pt") as handle:
        return handle.get_tensor(name)


def run_floor(base: Path, post: Path, dtype: torch.dtype) -> dict:
    """Bare thin SVDs (orthoscope.kernels.svd) of every base, post and null matrix."""
    from orthoscope.kernels import svd

    per_kind: dict[str, list[float]] = {}
    base_s = post_s = null_s = cpu2 = cpu3 = 0.0
    pairs = matrix_names(base)
    post_files = dict(matrix_names(post))
    for name, path in pairs:
        W_b = _read(path, name).to(dtype)
        W_p = _read(post_files[name], name).to(dtype)
        # the pipeline's null: a_fro W_b + G with ||G||_F = ||W_p - a_fro W_b||_F
        a = (torch.linalg.matrix_norm(W_p) / torch.linalg.matrix_norm(W_b)).item()
        G = torch.randn(W_b.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        G = (G * (torch.linalg.matrix_norm(W_p - a * W_b) / torch.linalg.matrix_norm(G))).to(dtype)
        W_n = a * W_b + G
        times, cpus = [], []
        for W in (W_b, W_p, W_n):
            c, t = time.process_time(), time.perf_counter()
            svd(W, dtype)
            times.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        cpu2, cpu3 = cpu2 + cpus[0] + cpus[1], cpu3 + sum(cpus)
        base_s, post_s, null_s = base_s + times[0], post_s + times[1], null_s + times[2]
        kind = per_kind.setdefault(kind_of(name), [0.0, 0.0])
        kind[0] += times[0] + times[1]
        kind[1] += times[2]
    return {
        "floor2_s": base_s + post_s,
        "floor3_s": base_s + post_s + null_s,
        "null_s": null_s,
        "floor2_cpu_s": cpu2,
        "floor3_cpu_s": cpu3,
        "matrices": len(pairs),
        "per_kind": {k: {"svd2_s": v[0], "svd3_s": v[0] + v[1]} for k, v in per_kind.items()},
    }


# --------------------------------------------------------------------------- main


def largest_pair_mib() -> tuple[str, float]:
    suffix, (r, c) = max(MATRICES.items(), key=lambda kv: kv[1][0] * kv[1][1])
    return suffix, 2 * r * c * 8 / 2**20


def print_profile(path: Path, top: int = 25) -> None:
    import pstats

    print(f"\n--- cProfile of one compare (not timed), top {top} by total time ---")
    pstats.Stats(str(path)).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=24, help="decoder layers (default 24, as Qwen2.5-0.5B)")
    parser.add_argument("--workdir", type=Path, default=None, help="folder for the pair and outputs (default: temp)")
    parser.add_argument("--repeats", type=int, default=1, help="repeat compare and floor; medians are reported")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    parser.add_argument("--profile", action="store_true", help="one extra, untimed compare under cProfile")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.layers < 1 or args.repeats < 1:
        parser.error("--layers and --repeats must be >= 1")

    torch.set_num_threads(THREADS)
    from orthoscope.metrics.registry import COLUMNS as METRIC_COLUMNS
    from orthoscope.pipeline.precision import resolve_precision

    dtype = resolve_precision("auto", set(METRIC_COLUMNS))  # what compare(precision="auto") uses

    temp = args.workdir is None
    root = Path(tempfile.mkdtemp(prefix="pair_speed_")) if temp else args.workdir
    root.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    try:
        t = time.perf_counter()
        base, post = build_pair(root, args.layers)
        print(f"built pair: {args.layers} layers, {7 * args.layers} matrices, in {root} "
              f"({time.perf_counter() - t:.1f} s)", flush=True)

        runs, floors = [], []
        for rep in range(args.repeats):
            run = run_compare(base, post, root / f"out{rep}")
            runs.append(run)
            print(f"[{rep + 1}/{args.repeats}] compare: wall {run['wall_s']:.2f} s "
                  f"(compare() {run['compare_s']:.2f} s, import {run['import_s']:.2f} s, "
                  f"cpu {run['cpu_s']:.2f} s, {run['svd_calls']} SVDs inside {run['svd_in_compare_s']:.2f} s), "
                  f"peak RSS {run['peak_rss_mib']:.0f} MiB, rows {run['rows']}, skipped {run['skipped']}",
                  flush=True)
            floor = run_floor(base, post, dtype)
            floors.append(floor)
            print(f"[{rep + 1}/{args.repeats}] floor: 2 SVDs {floor['floor2_s']:.2f} s, "
                  f"3 SVDs {floor['floor3_s']:.2f} s (cpu {floor['floor3_cpu_s']:.2f} s)", flush=True)
        if args.profile:
            prof = root / "compare.prof"
            run_compare(base, post, root / "out_profile", prof)
            print_profile(prof)

        med = statistics.median
        wall = med(r["wall_s"] for r in runs)
        inner = med(r["compare_s"] for r in runs)
        f2 = med(f["floor2_s"] for f in floors)
        f3 = med(f["floor3_s"] for f in floors)
        rss = max(r["peak_rss_mib"] for r in runs)
        cpu = med(r["cpu_s"] for r in runs)
        svd_in = med(r["svd_in_compare_s"] for r in runs)
        f3_cpu = med(f["floor3_cpu_s"] for f in floors)
        load_end = os.getloadavg()
        suffix, pair_mib = largest_pair_mib()
        kinds = {k: med(f["per_kind"][k]["svd3_s"] for f in floors) for k in floors[0]["per_kind"]}
        results = {
            "layers": args.layers, "matrices": floors[0]["matrices"], "repeats": args.repeats,
            "threads": THREADS, "torch": torch.__version__, "svd_dtype": str(dtype),
            "compare_svd_dtype": runs[0]["svd_dtype"],
            "wall_s": wall, "compare_call_s": inner, "floor2_s": f2, "floor3_s": f3,
            "ratio_wall_floor2": wall / f2, "ratio_wall_floor3": wall / f3,
            "ratio_call_floor3": inner / f3,
            "compare_cpu_s": cpu, "svd_in_compare_s": svd_in, "svd_calls": runs[0]["svd_calls"], "floor3_cpu_s": f3_cpu,
            "loadavg_start": load_start, "loadavg_end": load_end,
            "peak_rss_mib": rss, "largest_pair": suffix, "largest_pair_f64_mib": pair_mib,
            "floor3_per_kind_s": kinds, "runs": runs, "floors": floors,
        }
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))

        tag = " (median)" if args.repeats > 1 else ""
        summary = [
            ("pair", f"Qwen2.5-0.5B shapes, {args.layers} layers, {results['matrices']} matrices, bf16"),
            ("machine", f"{os.cpu_count()} cpus, torch {torch.__version__}, {THREADS} threads"),
            ("svd dtype", f"{dtype} (compare used {runs[0]['svd_dtype']})"),
            ("repeats", f"{args.repeats}"),
            ("wall" + tag, f"{wall:9.2f} s   (compare() call alone {inner:.2f} s)"),
            ("floor, 2 SVDs" + tag, f"{f2:9.2f} s   (base + post)"),
            ("floor, 3 SVDs" + tag, f"{f3:9.2f} s   (base + post + Gaussian null)"),
            ("SVDs in compare" + tag, f"{svd_in:9.2f} s   ({runs[0]['svd_calls']} calls, timed in the same run; "
             f"the other {inner - svd_in:.2f} s = {(inner - svd_in) / inner:.0%} of compare() is not SVD)"),
            ("wall / floor2", f"{wall / f2:9.2f}"),
            ("wall / floor3", f"{wall / f3:9.2f}"),
            ("cpu time" + tag, f"{cpu:9.2f} s   compare child, vs {f3_cpu:.2f} s for the 3-SVD floor "
             f"(ratio {cpu / f3_cpu:.2f})"),
            ("load avg (1 min)", f"{load_start[0]:9.2f} at start, {load_end[0]:.2f} at end "
             f"({os.cpu_count()} cpus; above ~{THREADS} means other work shared the cores)"),
            ("peak RSS (child)", f"{rss:9.0f} MiB" + ("   (max over repeats)" if args.repeats > 1 else "")),
            ("largest pair (f64)",
             f"{pair_mib:9.1f} MiB   ({suffix}, 2 x {MATRICES[suffix][0]}x{MATRICES[suffix][1]})"),
            ("floor3 by kind", ", ".join(f"{k} {v:.2f} s" for k, v in kinds.items())),
        ]
        width = max(len(label) for label, _ in summary) + 1
        print("\n================ pair_speed summary ================")
        for label, text in summary:
            print(f"{label:<{width}}{text}")
        print("====================================================")
    finally:
        if temp and not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
