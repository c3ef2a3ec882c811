"""weightwatcher_compare: WeightWatcher 0.7.7 vs `orthoscope.spectra` on the same model folder.

Both tools compute the singular-value spectrum (ESD) of every linear matrix of
one checkpoint: the synthetic Qwen2.5-0.5B-shaped `base` folder that
`pair_speed.build_pair` writes (sharded bf16 safetensors + index; 7 matrices a
layer, no embeddings, so both tools see exactly the same 7 x layers matrices).
Each tool runs in its own fresh child process, one after the other, with the
same thread count; we time the analysis call alone (imports and set-up are
reported apart) and take each child's peak RSS from os.wait4.

WeightWatcher is driven on the folder itself (0.7.x reads safetensors folders
lazily, one tensor at a time, as orthoscope does), in these modes:

  default   `WeightWatcher(model=folder).analyze()` with its defaults: per layer
            the ESD (scipy SVD in float64, eigenvalues = s**2), a power-law fit
            of the ESD and the norm metrics (alpha, stable rank, entropy, ...).
  esd       the fastest ESD-only route through WW's own code: analyze()'s layer
            iterator with its defaults, then `apply_normalize_Wmats` +
            `apply_esd` per layer (no power-law fit, no metrics).
  get_esd   (opt-in, slow) the documented per-layer call `get_ESD(layer=name)`
            for every layer; each call runs `describe()` over the whole model,
            so its cost grows as layers**2.

WeightWatcher is not an orthoscope dependency: it lives in its own venv:

    python3 -m venv /work/ww-venv
    /work/ww-venv/bin/pip install torch==2.13.0
    /work/ww-venv/bin/pip install weightwatcher==0.7.7 safetensors transformers

    .venv/bin/python bench/weightwatcher_compare.py --layers 1     # smoke test (~1 min)
    .venv/bin/python bench/weightwatcher_compare.py                # 24 layers, as Qwen2.5-0.5B
    .venv/bin/python bench/weightwatcher_compare.py --ww-modes default,esd,get_esd --layers 2
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

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # bench/ is not a package

from pair_speed import MATRICES, build_pair  # noqa: E402

DEFAULT_WW_PYTHON = "/work/ww-venv/bin/python"
WW_MODES = ("default", "esd", "get_esd")
TAG = "WW_COMPARE "  # the children's one result line starts with this

# --------------------------------------------------------------------- children

# orthoscope child. argv: folder, threads, samples json (names to dump), samples out
ORTHO_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(int(sys.argv[2]))
import orthoscope
t1 = time.perf_counter()

spectra, impl = orthoscope.spectra, "orthoscope.spectra"

t2 = time.perf_counter()
result = spectra(sys.argv[1])
t3 = time.perf_counter()
wanted = set(json.loads(sys.argv[3]))
samples = {n.removesuffix(".weight"): s.tolist() for n, s in result.items() if n.removesuffix(".weight") in wanted}
with open(sys.argv[4], "w") as handle:
    json.dump(samples, handle)
print("WW_COMPARE " + json.dumps({
    "tool": "orthoscope", "mode": "spectra", "impl": impl,
    "import_s": t1 - t0, "load_s": t2 - t1, "analyze_s": t3 - t2,
    "matrices": len(result), "names": sorted(n.removesuffix(".weight") for n in result),
    "threads": torch.get_num_threads(),
}))
"""

# WeightWatcher child. argv: folder, threads, mode, samples json, samples out
WW_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import torch
torch.set_num_threads(int(sys.argv[2]))
import weightwatcher as ww
import weightwatcher.weightwatcher as ww_core
t1 = time.perf_counter()

folder, mode = sys.argv[1], sys.argv[3]
watcher = ww.WeightWatcher(model=folder)  # infers the safetensors-folder framework; weights are read lazily
t2 = time.perf_counter()

def esd_only():
    # analyze()'s own layer iterator and ESD step, with analyze()'s defaults for
    # everything they read; skips the power-law fit and the norm metrics
    params = ww_core.DEFAULT_PARAMS.copy()
    params.update({"randomize": False, "plot": False, "mp_fit": False, "vectors": False,
                   "detX": False, "savefig": False})
    evals = {}
    for layer in watcher.make_layer_iterator(model=folder, layers=[], params=params):
        if not layer.skipped and layer.has_weights:
            watcher.apply_normalize_Wmats(layer, params)
            watcher.apply_esd(layer, params)
            evals[layer.name] = layer.evals
    return evals

def per_layer_get_esd():
    names = list(watcher.describe()["name"])  # the documented way to list the layers
    return {name: watcher.get_ESD(layer=name) for name in names}

t3 = time.perf_counter()
if mode == "default":
    details = watcher.analyze()
    evals = {name: None for name in details["name"]}
elif mode == "esd":
    evals = esd_only()
elif mode == "get_esd":
    evals = per_layer_get_esd()
else:
    sys.exit(f"unknown mode {mode}")
t4 = time.perf_counter()

wanted = set(json.loads(sys.argv[4]))
samples = {n: np.asarray(e, dtype=np.float64).tolist() for n, e in evals.items() if n in wanted and e is not None}
with open(sys.argv[5], "w") as handle:
    json.dump(samples, handle)
try:
    from threadpoolctl import threadpool_info
    blas = sorted({f"{i['internal_api']}:{i['num_threads']}" for i in threadpool_info()})
except ImportError:
    blas = []
print("WW_COMPARE " + json.dumps({
    "tool": "weightwatcher", "mode": mode, "impl": f"weightwatcher {ww.__version__}",
    "import_s": t1 - t0, "load_s": t2 - t1, "analyze_s": t4 - t3,
    "matrices": len(evals), "names": sorted(evals), "threads": torch.get_num_threads(), "blas": blas,
}))
"""


def run_child(cmd: list[str], threads: int, log: Path, cwd: Path) -> dict:
    """One child in a fresh interpreter: its result line, wall time and its own peak RSS."""
    # OPENBLAS too: WW's SVD runs in scipy's bundled OpenBLAS, not torch's
    env = {**os.environ, "MPLBACKEND": "Agg",
           **{k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    with log.open("w") as handle:
        started = time.perf_counter()
        # cwd=workdir: anything a tool writes next to itself (e.g. WW's ww-img) is cleaned with it
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        wall = time.perf_counter() - started
    text = log.read_text()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"child failed (exit {code}): {' '.join(cmd[:1] + cmd[3:])}\n{text[-4000:]}")
    line = next(ln for ln in text.splitlines() if ln.startswith(TAG))
    # ru_maxrss is KiB on Linux, bytes on macOS
    rss_mib = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return {**json.loads(line.removeprefix(TAG)), "wall_s": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": rss_mib}


def run_orthoscope(folder: Path, threads: int, sample: list[str], out: Path) -> dict:
    cmd = [sys.executable, "-c", ORTHO_CHILD, str(folder), str(threads), json.dumps(sample), str(out)]
    return run_child(cmd, threads, out.with_suffix(".log"), out.parent)


def run_weightwatcher(python: str, folder: Path, threads: int, mode: str, sample: list[str], out: Path) -> dict:
    cmd = [python, "-c", WW_CHILD, str(folder), str(threads), mode, json.dumps(sample), str(out)]
    return run_child(cmd, threads, out.with_suffix(".log"), out.parent)


# ------------------------------------------------------------------------ model


def base_model(root: Path, layers: int) -> Path:
    """The `base` folder of a build_pair pair; reused when --workdir already holds one of this size."""
    base = root / "base"
    config = base / "config.json"
    if config.exists() and json.loads(config.read_text()).get("num_hidden_layers") == layers:
        return base
    base, post = build_pair(root, layers)
    shutil.rmtree(post)  # only one model is analysed; the post half is just disk
    return base


def sample_names(layers: int) -> list[str]:
    """Every matrix kind in the first and the last layer: all shapes, both ends of the files."""
    ids = sorted({0, layers - 1})
    return [f"model.layers.{i}.{suffix.removesuffix('.weight')}" for i in ids for suffix in MATRICES]


# --------------------------------------------------------------------- checking


def spectra_error(ww_file: Path, ortho_file: Path) -> dict:
    """Max relative error of WW's spectra, as singular values, against orthoscope's.

    WW's eigenvalues are the plain squares s**2 of the float64 singular values
    (no 1/N: `normalize` is gone since 0.6.5), sorted ascending; so s = sqrt(evals)
    reversed. Elementwise error is over all singular values; normwise is
    max |ds| / s_max, the scale-free error of the spectrum as a whole.
    """
    ww_spec = json.loads(ww_file.read_text())
    ortho = json.loads(ortho_file.read_text())
    common = sorted(set(ww_spec) & set(ortho))
    elementwise = normwise = 0.0
    for name in common:
        s_ww = [max(e, 0.0) ** 0.5 for e in reversed(ww_spec[name])]
        s_o = ortho[name]
        if len(s_ww) != len(s_o):
            return {"compared": common, "error": f"{name}: {len(s_ww)} vs {len(s_o)} values"}
        diffs = [abs(a - b) for a, b in zip(s_ww, s_o)]
        elementwise = max(elementwise, max(d / b for d, b in zip(diffs, s_o) if b > 0))
        normwise = max(normwise, max(diffs) / s_o[0])
    return {"compared": len(common), "max_rel_err": elementwise, "max_normwise_err": normwise}


def same_set(ww_run: dict, ortho_run: dict) -> str:
    ww_names, o_names = set(ww_run["names"]), set(ortho_run["names"])
    if ww_names == o_names:
        return f"same {len(o_names)} matrices"
    return (f"DIFFERENT: {len(ww_names - o_names)} only in WW (e.g. {sorted(ww_names - o_names)[:3]}), "
            f"{len(o_names - ww_names)} only in orthoscope (e.g. {sorted(o_names - ww_names)[:3]})")


# ------------------------------------------------------------------------- main


def public(run: dict) -> dict:
    """One run's JSON line without the long name list."""
    return {k: v for k, v in run.items() if k != "names"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=24, help="decoder layers (default 24, as Qwen2.5-0.5B)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every child (default 2)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each tool; medians are reported")
    parser.add_argument("--workdir", type=Path, default=None, help="folder for the model and logs (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    parser.add_argument("--ww-python", default=DEFAULT_WW_PYTHON, help="python of the venv with weightwatcher")
    parser.add_argument("--ww-modes", default="default,esd", help=f"comma list of {', '.join(WW_MODES)}")
    parser.add_argument("--json", type=Path, default=None, help="also write the ratios here (bench/scale.py's ww)")
    args = parser.parse_args(argv)
    modes = [m for m in args.ww_modes.split(",") if m]
    if args.layers < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--layers, --repeats and --threads must be >= 1")
    if not modes or any(m not in WW_MODES for m in modes):
        parser.error(f"--ww-modes: pick from {', '.join(WW_MODES)}")
    if not Path(args.ww_python).exists():
        sys.exit(f"no WeightWatcher python at {args.ww_python}: see this script's docstring to set one up")

    temp = args.workdir is None
    root = Path(tempfile.mkdtemp(prefix="ww_compare_")) if temp else args.workdir
    root.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    try:
        t = time.perf_counter()
        folder = base_model(root, args.layers)
        print(f"model: {folder} ({args.layers} layers, {7 * args.layers} matrices, "
              f"{time.perf_counter() - t:.1f} s to prepare)", flush=True)
        sample = sample_names(args.layers)

        runs: dict[str, list[dict]] = {"orthoscope": [], **{m: [] for m in modes}}
        for rep in range(args.repeats):  # one child at a time, never two at once
            o_run = run_orthoscope(folder, args.threads, sample, root / f"orthoscope{rep}.json")
            runs["orthoscope"].append(o_run)
            print(json.dumps(public(o_run)), flush=True)
            for mode in modes:
                w_run = run_weightwatcher(args.ww_python, folder, args.threads, mode, sample,
                                          root / f"ww_{mode}{rep}.json")
                runs[mode].append(w_run)
                print(json.dumps(public(w_run)), flush=True)

        med = statistics.median
        ortho_s = med(r["analyze_s"] for r in runs["orthoscope"])
        ortho_wall = med(r["wall_s"] for r in runs["orthoscope"])
        print(f"\nload avg (1 min): {load_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end "
              f"({os.cpu_count()} cpus, {args.threads} threads a child)")
        print(f"orthoscope impl: {runs['orthoscope'][0]['impl']}")
        summary: dict[str, dict] = {}
        for mode in modes:
            ww_s = med(r["analyze_s"] for r in runs[mode])
            ww_wall = med(r["wall_s"] for r in runs[mode])
            print(f"[{mode}] matrix set: {same_set(runs[mode][0], runs['orthoscope'][0])}")
            if mode != "default":  # analyze() keeps no spectra; its ESD step is the esd mode's
                err = spectra_error(root / f"ww_{mode}0.json", root / "orthoscope0.json")
                print(f"[{mode}] spectra vs orthoscope: {json.dumps(err)}")
            print(f"ratio WW/orthoscope [{mode}]: {ww_s / ortho_s:.2f}  "
                  f"(analysis call {ww_s:.2f} s vs {ortho_s:.2f} s; child wall {ww_wall:.2f} s vs {ortho_wall:.2f} s)")
            summary[mode] = {"ww_s": ww_s, "orthoscope_s": ortho_s, "ratio": ww_s / ortho_s}
        if args.json is not None:
            first = modes[0]
            args.json.write_text(json.dumps({"ratio": summary[first]["ratio"], "modes": summary}, indent=2))
    finally:
        if temp and not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
