"""goals: issue 29's ratios (small and medium pairs), each measured in one run, the load average beside each.

tiny     `orthoscope compare` of the shipped pair (lab-tiny base vs instruct, `--no-report`, a fresh
         cache folder) from process start to exit / a bare floor process (start Python, import
         torch, read both checkpoints, float64 SVDs of all 42 matrices). Goal <= 1.5. CPU beside wall;
         both byte-compiled (an untimed warm-up run of each first).
smollm   default `orthoscope compare` of a SmolLM2-135M-shaped random pair (210 matrices, a 1 %
         update) / modeldelta's analysis of the same pair (its own venv, `--modeldelta`), both
         whole processes. Goal <= 0.75. Also: the base against itself (every matrix unchanged).
route    the 4-layer Qwen2.5-0.5B-shaped pair: default compare / three bare float32 SVDs per matrix
         (<= 1.15), sign-free / two (<= 0.85), each in one child that alternates the whole
         `orthoscope.compare` (tuned as the CLI is) with the floor: the bare SVDs one after another on
         two threads, and the same SVDs in two one-thread lanes (printed beside: the floor of a
         route that runs two matrices at once), wall and CPU.
demo     `orthoscope demo` (fresh output folder and cache, experiment included): quiet (<= 15 s),
         and beside two CPU-bound processes / quiet (<= 2.5).
startup  `python -c "import orthoscope"` and `orthoscope --help`, wall seconds (light: < 1 s).

Children run one at a time; each ratio alternates its two sides `--repeats` times and keeps the
best of each (the machine's speed drifts). The 1-minute load average is printed with every line.

modeldelta lives in its own venv, never orthoscope's; it may reuse this torch through a .pth file:

    python3 -m venv /tmp/benchvenv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/benchvenv/lib/python3.11/site-packages/zz_torch.pth
    /tmp/benchvenv/bin/pip install modeldelta          # 0.4.4 measured

    .venv/bin/python bench/goals.py tiny startup                       # a minute
    .venv/bin/python bench/goals.py --repeats 3 tiny smollm route demo startup
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pair_speed import build_pair, matrix_names  # noqa: E402
from scale import TINY, child  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ORTHOSCOPE = BIN / "orthoscope"

TINY_FLOOR = r"""
import json, sys
import torch
from safetensors.torch import load_file
for folder in sys.argv[1:]:
    for name, W in load_file(folder + "/model.safetensors").items():
        if W.ndim == 2 and "embed" not in name and "lm_head" not in name:
            torch.linalg.svd(W.double(), full_matrices=False)
"""

ROUTE = r"""
import json, shutil, sys, time
from concurrent.futures import ThreadPoolExecutor
import torch
threads = int(sys.argv[1])
torch.set_num_threads(threads)
import orthoscope
import orthoscope.pipeline.run, orthoscope.pipeline.measure, orthoscope.verdicts  # imports are not analysis
from orthoscope.kernels import svd
from safetensors import safe_open
kwargs, svds, repeats, pairs = json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
def read(path, name):
    with safe_open(path, framework="pt") as handle:
        return handle.get_tensor(name).float()
jobs = [(read(*b), read(*p)) for b, p in pairs]
def job(pair):
    for W in (pair[0], pair[1], pair[0])[:svds]:
        svd(W, torch.float32)
def one_thread():
    torch.set_num_threads(1)
def sequential():
    for pair in jobs:
        job(pair)
def lanes():
    with ThreadPoolExecutor(threads, initializer=one_thread) as pool:
        list(pool.map(job, jobs))
def compare():  # a fresh folder each time: the same folder would resume (nothing left to do)
    shutil.rmtree(kwargs["out"], ignore_errors=True)
    orthoscope.compare(**kwargs)
def timed(fn):
    c, t = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t, time.process_time() - c
best = {}
for _ in range(repeats):  # the sides alternate; the least wall of each is kept, with its CPU
    for name, fn in (("floor_s", sequential), ("compare_s", compare), ("lanes_floor_s", lanes)):
        wall, cpu = timed(fn)
        if name not in best or wall < best[name][0]:
            best[name] = (wall, cpu)
walls, cpus = {k: v[0] for k, v in best.items()}, {k.replace("_s", "_cpu_s"): v[1] for k, v in best.items()}
print("SCALE " + json.dumps(walls | cpus))
"""

SMOLLM = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 576,
          "intermediate_size": 1536, "num_attention_heads": 9, "num_key_value_heads": 3,
          "num_hidden_layers": 30, "vocab_size": 49152, "torch_dtype": "bfloat16", "tie_word_embeddings": True}


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def wall(command: list[str], env: dict | None = None) -> float:
    """Seconds from process start to exit (the command must succeed)."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return seconds


def timed(command: list[str], env: dict | None = None) -> tuple[float, float]:
    """Wall and CPU seconds (the child's user + system, every thread) from process start to exit."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(command)}\n{stderr[-3000:]}")
    return seconds, usage.ru_utime + usage.ru_stime


def alternate(repeats: int, **sides) -> dict:
    """Run each side (a callable returning seconds) in turn, `repeats` times; the best of each."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, run in sides.items():
            times[name].append(run())
    return {name: min(values) for name, values in times.items()} | {"all": times}


def report(label: str, ratio: float, goal: str, detail: str) -> None:
    print(f"{label}: {ratio:.3f}  (goal {goal})  {detail}  [{load()}]", flush=True)


def tiny(work: Path, repeats: int) -> dict:
    """Whole processes, wall and CPU (user + sys) seconds. Both sides read byte-compiled modules, as an installed
    package does (under PYTHONDONTWRITEBYTECODE=1 an editable install compiles its ~70 modules in every run,
    ~0.1 s): an untimed first run of each side writes them and warms the page cache."""
    base, post = TINY / "base", TINY / "instruct"
    compiled = {"PYTHONDONTWRITEBYTECODE": ""}
    cpu: dict[str, list[float]] = {}

    def side(name: str, command: list[str], env: dict | None = None) -> float:
        seconds, used = timed(command, {**compiled, **(env or {})})
        cpu.setdefault(name, []).append(used)
        return seconds

    def cli() -> float:
        out, cache = work / "tiny-run", work / "tiny-cache"
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        return side("cli", [str(ORTHOSCOPE), "compare", str(base), str(post), "-o", str(out), "--no-report", "-q"],
                    {"ORTHOSCOPE_CACHE_DIR": str(cache)})

    def bare() -> float:
        return side("floor", [sys.executable, "-c", TINY_FLOOR, str(base), str(post)])

    cli(), bare()  # the warm-up, not counted
    cpu.clear()
    best = alternate(repeats, cli=cli, floor=bare)
    ratio, cpu_ratio = best["cli"] / best["floor"], min(cpu["cli"]) / min(cpu["floor"])
    report("tiny CLI / bare floor process", ratio, "<= 1.5", f"{best['cli']:.2f} s / {best['floor']:.2f} s wall; "
           f"CPU {cpu_ratio:.3f} ({min(cpu['cli']):.2f} / {min(cpu['floor']):.2f} s)")
    return {"ratio": ratio, "cpu_ratio": cpu_ratio, **best, "cpu": cpu}


def build_smollm(root: Path, layers: int = 30, seed: int = 0, update: float = 0.01) -> tuple[Path, Path]:
    """base/ and post/ with SmolLM2-135M's linear shapes (7 per layer, 30 layers: 210; bf16, one file each),
    post = base + `update` noise."""
    gen = torch.Generator().manual_seed(seed)
    h, i, kv = SMOLLM["hidden_size"], SMOLLM["intermediate_size"], 192
    shapes = {"self_attn.q_proj": (h, h), "self_attn.k_proj": (kv, h), "self_attn.v_proj": (kv, h),
              "self_attn.o_proj": (h, h), "mlp.gate_proj": (i, h), "mlp.up_proj": (i, h), "mlp.down_proj": (h, i)}
    base, post = {}, {}
    for layer in range(layers):
        for suffix, shape in shapes.items():
            name = f"model.layers.{layer}.{suffix}.weight"
            W = torch.randn(shape, generator=gen) * 0.02
            noise = torch.randn(shape, generator=gen)
            noise *= update * torch.linalg.matrix_norm(W) / torch.linalg.matrix_norm(noise)
            base[name], post[name] = W.bfloat16(), (W + noise).bfloat16()
        for norm in ("input_layernorm", "post_attention_layernorm"):
            key = f"model.layers.{layer}.{norm}.weight"
            base[key] = post[key] = torch.ones(h).bfloat16()
    out = []
    for label, tensors in (("base", base), ("post", post)):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps({**SMOLLM, "num_hidden_layers": layers}, indent=2))
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        out.append(folder)
    return out[0], out[1]


def smollm(work: Path, repeats: int, modeldelta: str, layers: int = 30, threads: int | None = None) -> dict:
    """Whole processes, alternated `repeats` times, the best wall of each kept; CPU seconds (user + sys) beside:
    the CPU ratio is the one to read on a loaded machine."""
    base, post = build_smollm(work / "smollm", layers)
    cpu: dict[str, list[float]] = {}

    pinned = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}

    def side(name: str, command: list[str], env: dict | None = None) -> float:
        seconds, used = timed(command, {**pinned, **(env or {})})
        cpu.setdefault(name, []).append(used)
        return seconds

    def ours(label: str, other: Path) -> float:
        out, cache = work / label, work / f"{label}-cache"
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        return side(label, [str(ORTHOSCOPE), "compare", str(base), str(other), "-o", str(out), "--no-report", "-q"],
                    {"ORTHOSCOPE_CACHE_DIR": str(cache)})

    row: dict = {}
    sides = {"orthoscope": lambda: ours("smollm-run", post)}
    if Path(modeldelta).exists():
        sides["modeldelta"] = lambda: side("modeldelta", [modeldelta, str(base), str(post), "-q", "-o",
                                                          str(work / "md.json")])
    best = alternate(repeats, **sides)
    row.update(best)
    row["cpu"] = {"orthoscope": min(cpu["smollm-run"])}
    if "modeldelta" in cpu:
        row["cpu"]["modeldelta"] = min(cpu["modeldelta"])
    if "modeldelta" in best:
        row["ratio"] = best["orthoscope"] / best["modeldelta"]
        row["cpu_ratio"] = row["cpu"]["orthoscope"] / row["cpu"]["modeldelta"]
        report(f"SmolLM2-shaped ({7 * layers} matrices) default compare / modeldelta", row["ratio"], "<= 0.75",
               f"{best['orthoscope']:.1f} s / {best['modeldelta']:.1f} s wall; CPU {row['cpu_ratio']:.3f} "
               f"({row['cpu']['orthoscope']:.1f} / {row['cpu']['modeldelta']:.1f} s)")
    else:
        print(f"SmolLM2-shaped default compare: {best['orthoscope']:.1f} s, CPU {row['cpu']['orthoscope']:.1f} s "
              f"(modeldelta missing: {modeldelta}) [{load()}]", flush=True)
    row["self_s"] = ours("smollm-self", base)
    print(f"SmolLM2-shaped base against itself ({7 * layers} unchanged matrices): {row['self_s']:.1f} s, "
          f"CPU {cpu['smollm-self'][-1]:.1f} s  [{load()}]", flush=True)
    return row


def route(work: Path, repeats: int, threads: int | None = None) -> dict:
    """Each ratio in one child: `orthoscope.compare` as a whole (reads, run folder and summary included; tuned as the
    CLI tunes, so its jobs run in lanes) alternated `repeats` times with the floor, the bare float32 SVDs of every
    matrix one after another on `threads` threads (the goal's floor), and the same SVDs in `threads` one-thread
    lanes (the floor of a route that runs jobs side by side). Least wall of each side, CPU beside it."""
    base, post = build_pair(work / "qwen4", 4)
    threads = threads or 2
    pairs = [[[b, name], [p, name]] for (name, b), (_, p) in zip(matrix_names(base), matrix_names(post))]
    row: dict = {}
    for key, label, goal, svds, extra in (("default", "default / 3 float32 SVDs", "<= 1.15", 3, {}),
                                          ("signfree", "sign-free / 2 float32 SVDs", "<= 0.85", 2,
                                           {"metrics": "sign-free"})):
        out = work / f"route-{key}"
        kwargs = {"base": str(base), "posts": [str(post)], "out": str(out), "cache": False, "progress": False, **extra}
        info, _, _ = child(ROUTE, [str(threads), json.dumps(kwargs), str(svds), str(repeats), json.dumps(pairs)],
                           threads, work / f"route-{key}.log")
        row[key] = info
        report(f"4-layer Qwen-shaped {label}", info["compare_s"] / info["floor_s"], goal,
               f"{info['compare_s']:.2f} s / {info['floor_s']:.2f} s wall; CPU {info['compare_cpu_s']:.2f} / "
               f"{info['floor_cpu_s']:.2f} s; the same SVDs in {threads} one-thread lanes {info['lanes_floor_s']:.2f} s"
               f" (compare / that {info['compare_s'] / info['lanes_floor_s']:.3f})")
    return row


def demo(work: Path, repeats: int) -> dict:
    def run() -> float:
        out, cache = work / "demo", work / "demo-cache"
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        return wall([str(ORTHOSCOPE), "demo", "-o", str(out), "-q"], {"ORTHOSCOPE_CACHE_DIR": str(cache)})

    def busy() -> float:
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
        try:
            return run()
        finally:
            for proc in spinners:
                proc.kill()
                proc.wait()

    best = alternate(repeats, quiet=run, busy=busy)
    ratio = best["busy"] / best["quiet"]
    print(f"demo cold: {best['quiet']:.1f} s  (goal <= 15 s)  [{load()}]", flush=True)
    report("demo beside two CPU-bound processes / quiet", ratio, "<= 2.5",
           f"{best['busy']:.1f} s / {best['quiet']:.1f} s")
    return {"ratio": ratio, **best}


def startup(repeats: int) -> dict:
    best = alternate(repeats, imports=lambda: wall([sys.executable, "-c", "import orthoscope"]),
                     help=lambda: wall([str(ORTHOSCOPE), "--help"]))
    print(f"startup: import orthoscope {best['imports']:.2f} s, orthoscope --help {best['help']:.2f} s "
          f"(goal < 1 s each)  [{load()}]", flush=True)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("goals", nargs="+", choices=["tiny", "smollm", "route", "demo", "startup"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--modeldelta", default="/tmp/benchvenv/bin/modeldelta",
                        help="modeldelta's command in its own venv (never orthoscope's)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--smollm-layers", type=int, default=30,
                        help="fewer layers of the same shapes (a busy machine)")
    parser.add_argument("--threads", type=int, default=None,
                        help="smollm and route: every child on this many threads (OMP/MKL/torch; default: route 2, "
                             "smollm the machine's); 1 on a loaded machine, where two-thread LAPACK waits on "
                             "descheduled threads")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="orthoscope-goals-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"# {os.cpu_count()} CPUs, torch {torch.__version__}, workdir {work}  [{load()}]", flush=True)
    results: dict = {}
    try:
        for goal in args.goals:
            if goal == "tiny":
                results[goal] = tiny(work, args.repeats)
            elif goal == "smollm":
                results[goal] = smollm(work, args.repeats, args.modeldelta, args.smollm_layers, args.threads)
            elif goal == "route":
                results[goal] = route(work, args.repeats, args.threads)
            elif goal == "demo":
                results[goal] = demo(work, args.repeats)
            else:
                results[goal] = startup(args.repeats)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
