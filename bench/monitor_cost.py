"""monitor_cost: what monitoring at the save interval adds to the lab's post-training time (tiny and small presets).

For each preset, one post-training (the `cot` variant, the preset's steps, batch, block, lr and
thread count) of a from_config base is timed three times in one process, in the order plain,
monitored, plain: the monitored run measures the model against the base in memory at every
`save_every` steps and at the end (the lab's points, `Monitor` defaults, cache off), as
`orthoscope lab` does (`--mode auto`: in the monitor's worker process where the training leaves
a core, else in line on every core; `--mode background` or `--mode inline` force either), in a
process tuned as the `orthoscope` command tunes it. Printed per preset: the two
plain times, the monitored time as the user waits for it (the training loop, and the drain of the
monitor's queue after it: `monitor.close()`), the ratio of that total to mean(plain) and the
loop's alone, and the seconds the `monitor.measure` calls held the training up (in line: the whole
measure, analysis, summary and writes; in background: the copies of the weights and any wait for
the worker), over the mean plain time. CPU seconds, which a shared machine's load changes far less
than wall time: this process's CPU in the plain runs (mean) and the monitored one, the training
thread's CPU inside `measure()`, and the worker process's CPU (its own count: a
closed monitor's worker stays alive, idle, for the next monitor, so `RUSAGE_CHILDREN` does not see it;
its start-up included and also given apart; 0 in line), and the CPU of this
process's two threads that send the steps to the worker and take its results. The load average is
printed before and after: on a shared machine, compare ratios from one run only.

`--repeats N` runs N monitored post-trainings, each between two plain ones, all in one process
(plain, monitored, plain, monitored, ..., plain: N + 1 plain runs; every monitored run's worker
starts afresh): two plain runs of one line may differ by more than the 10 % to resolve, so each
monitored run is set against the mean of the two plain runs beside it. A second line then gives
every ratio, their median and range, and this process's CPU over the loop and drain, monitored /
plain (the mean of the same two), for each pair and as a median: the figure load changes least.
The first line's figures are then the monitored runs' medians (plain: the range of the N + 1).
`--json` gives the same keys as before (`ratio` is the median) and `ratios`, `ratio_min`,
`ratio_max`, `cpu_ratio(s)`, `cpu_ratio_min/max`, `repeats` and each run's seconds.

    .venv/bin/python bench/monitor_cost.py                    # tiny and small, a few minutes on 2 cores
    .venv/bin/python bench/monitor_cost.py --presets tiny --json
    .venv/bin/python bench/monitor_cost.py --presets tiny --metrics sign-free --skip-p-pair
    .venv/bin/python bench/monitor_cost.py --presets tiny --mode inline   # measure() in the training loop
    .venv/bin/python bench/monitor_cost.py --presets small --steps 100    # CPU per measure, 2 measures
    .venv/bin/python bench/monitor_cost.py --presets small tiny --repeats 5  # 5 pairs each: median and range

--metrics takes compare's --metrics values (default: the monitor's MONITOR_METRICS). --skip-p-pair
drops p_pair (its sign draws) from that set: the cost of a monitor without the pairing null's p-value.
--steps shortens the post-training (the measures stay at every save_every steps and the end).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from orthoscope.lab.build import model_config
from orthoscope.lab.corpus import make_world, post_training_examples
from orthoscope.lab.presets import get_preset
from orthoscope.lab.tokenizer import char_tokenizer
from orthoscope.lab.train import example_batches, example_blocks, train
from orthoscope.monitor import Monitor
from orthoscope.monitor.worker import end_spares


def post_train(preset, base: Path, data, monitor: Monitor | None) -> dict:
    """Seconds of one post-training from `base` (monitored at the lab's save points when `monitor`), the seconds
    its `monitor.measure` calls held it up, and the seconds `monitor.close()` took after it (the queue's drain);
    and the CPU seconds of this process over loop and drain and of the training thread inside `measure`."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    measuring, measuring_cpu = [0.0], [0.0]

    def on_step(step: int, loss: float) -> None:
        if monitor is not None and (step % preset.save_every == 0 or step == preset.post_steps):
            began, began_cpu = time.perf_counter(), time.thread_time()
            monitor.measure(model, step)
            measuring[0] += time.perf_counter() - began
            measuring_cpu[0] += time.thread_time() - began_cpu

    started, started_cpu = time.perf_counter(), time.process_time()
    train(model, example_batches(*data, preset.batch, 1), preset.post_steps, preset.post_lr, on_step=on_step)
    loop = time.perf_counter() - started
    if monitor is not None:
        monitor.close()
    return {"loop": loop, "measure": measuring[0], "drain": time.perf_counter() - started - loop,
            "cpu": time.process_time() - started_cpu, "measure_cpu": measuring_cpu[0]}


MODES = {"auto": "auto", "inline": False, "background": True}
"""`--mode`: the monitor's `background` for each (monitor_blocks.py adds its control, no monitor)."""


def lab_base(preset, base: Path) -> tuple[Path, tuple]:
    """A from_config base of `preset` saved in `base` (torch at the preset's threads from here on), and the
    blocks of its `cot` post-training data."""
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(preset.threads)
    world, tokenizer = make_world(0, max_operand=preset.max_operand), char_tokenizer()
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(model_config(preset, tokenizer)).save_pretrained(base)
    return base, example_blocks(post_training_examples(world, "cot", preset.post_examples, 1), tokenizer,
                                preset.block)


def bench(name: str, folder: Path, metrics: str | None, background: bool | str, steps: int | None = None,
          repeats: int = 1) -> dict:
    """`repeats` monitored post-trainings of preset `name`, each between two plain ones (plain, monitored, plain,
    monitored, ..., plain: `repeats + 1` plain runs), and what they give (see the module)."""

    preset = get_preset(name)
    if steps is not None:
        preset = dataclasses.replace(preset, post_steps=steps)
    base, data = lab_base(preset, folder / f"{name}-base")
    plains, runs, modes = [post_train(preset, base, data, None)], [], set()
    for repeat in range(repeats):
        end_spares()  # every monitored run's worker starts afresh (an earlier one's idle worker would skip start-up)
        monitor = Monitor(base, folder / f"{name}-monitor-{repeat}", cache=False, metrics=metrics,
                          background=background)
        modes.add(monitor.mode)
        run = post_train(preset, base, data, monitor)
        worker = monitor.worker
        run.update(analysis=monitor.seconds, worker_cpu=worker.cpu_seconds if worker is not None else 0.0,
                   **_worker_cpu(monitor))  # the worker's own count, start-up included
        runs.append(run)
        plains.append(post_train(preset, base, data, None))
    return _figures(name, preset, " / ".join(sorted(modes)), plains, runs)


def _figures(name: str, preset, mode: str, plains: list[dict], runs: list[dict]) -> dict:
    """Each monitored run against the mean of its two neighbouring plain runs (wall: loop + drain; and the CPU of
    this process), their medians and ranges; the other figures are the monitored runs' medians."""
    def around(i: int, key: str) -> float:
        return (plains[i][key] + plains[i + 1][key]) / 2

    ratios = [(run["loop"] + run["drain"]) / around(i, "loop") for i, run in enumerate(runs)]
    cpu_ratios = [run["cpu"] / around(i, "cpu") for i, run in enumerate(runs)]
    mean = statistics.mean(p["loop"] for p in plains)

    def median(key: str) -> float:
        return statistics.median(run[key] for run in runs)

    figures = {"preset": name, "steps": preset.post_steps, "measures": preset.post_steps // preset.save_every
               + (preset.post_steps % preset.save_every != 0), "threads": preset.threads,
               "plain_s": [round(p["loop"], 2) for p in plains],
               "monitored_s": round(statistics.median(run["loop"] + run["drain"] for run in runs), 2),
               "loop_s": round(median("loop"), 2), "drain_s": round(median("drain"), 2),
               "ratio": round(statistics.median(ratios), 3),
               "loop_ratio": round(statistics.median(run["loop"] / around(i, "loop") for i, run in enumerate(runs)), 3),
               "mode": mode, "analysis_s": round(median("analysis"), 2),
               "monitor_s": round(median("measure"), 2), "monitor_share": round(median("measure") / mean, 3),
               "plain_cpu_s": round(statistics.mean(p["cpu"] for p in plains), 2),
               "monitored_cpu_s": round(median("cpu"), 2), "measure_cpu_s": round(median("measure_cpu"), 3),
               "worker_cpu_s": round(median("worker_cpu"), 2),
               "repeats": len(runs), "ratios": [round(r, 3) for r in ratios],
               "ratio_min": round(min(ratios), 3), "ratio_max": round(max(ratios), 3),
               "cpu_ratio": round(statistics.median(cpu_ratios), 3), "cpu_ratios": [round(r, 3) for r in cpu_ratios],
               "cpu_ratio_min": round(min(cpu_ratios), 3), "cpu_ratio_max": round(max(cpu_ratios), 3),
               "monitored_runs_s": [round(run["loop"] + run["drain"], 2) for run in runs],
               "drains_s": [round(run["drain"], 2) for run in runs],
               "plain_cpus_s": [round(p["cpu"], 2) for p in plains],
               "monitored_cpus_s": [round(run["cpu"], 2) for run in runs]}
    if "worker_start_cpu_s" in runs[0]:
        figures.update(worker_start_cpu_s=round(median("worker_start_cpu_s"), 2),
                       link_threads_cpu_s=round(median("link_threads_cpu_s"), 3))
    return figures


def _worker_cpu(monitor: Monitor) -> dict:
    """The worker process's own count of its start-up CPU, and the CPU of this process's threads talking to it."""
    worker = monitor.worker
    if worker is None or not hasattr(worker, "start_cpu_seconds"):  # in line, or the thread worker before
        return {}
    return {"worker_start_cpu_s": worker.start_cpu_seconds, "link_threads_cpu_s": worker.thread_cpu_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--metrics", default=None, help="compare's --metrics (default: MONITOR_METRICS)")
    parser.add_argument("--skip-p-pair", action="store_true", help="what-if: no p_pair sign draws (see above)")
    parser.add_argument("--mode", choices=list(MODES), default="auto",
                        help="how the monitor measures (default: auto, as the lab and the callback)")
    parser.add_argument("--steps", type=int, default=None, help="post-training steps (default: the preset's)")
    parser.add_argument("--repeats", type=int, default=1, metavar="N",
                        help="monitored runs per preset, each between two plain ones (N + 1 plain runs)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be a positive integer, not {args.repeats}")
    from orthoscope.tuning import tune_process

    tune_process()  # as `orthoscope lab` runs: the orthoscope command opts its process in
    from transformers.utils import logging

    from orthoscope.metrics.registry import resolve_metrics
    from orthoscope.monitor.monitor import MONITOR_METRICS

    metrics = args.metrics
    if args.skip_p_pair:
        metrics = (resolve_metrics(metrics) if metrics else MONITOR_METRICS) - {"p_pair"}

    logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.presets:  # one line per preset as it finishes, with the load around it
            before = os.getloadavg()
            r = bench(name, Path(tmp), metrics, MODES[args.mode], args.steps, args.repeats)
            r["metrics"], r["skip_p_pair"] = args.metrics or "monitor default", args.skip_p_pair
            r["load_before"], r["load_after"] = before, os.getloadavg()
            if args.json:
                print(json.dumps(r), flush=True)
                continue
            print(_line(r, before), flush=True)


def _line(r: dict, before: tuple) -> str:
    """The preset's figures as printed: one line, and with --repeats over 1 a second with every pair's ratios."""
    mode = r["mode"]
    plain = r["plain_s"]
    plains = (f"{plain[0]:.1f} / {plain[1]:.1f} s" if len(plain) == 2
              else f"{min(plain):.1f}-{max(plain):.1f} s ({len(plain)} runs)")
    median = "median " if r["repeats"] > 1 else ""
    line = (f"{r['preset']:6s} {r['steps']} steps, {r['measures']} measures ({mode}), {r['threads']} "
            f"thread(s): plain {plains}, monitored {median}"
            f"{r['monitored_s']:.1f} s (loop {r['loop_s']:.1f} s + drain {r['drain_s']:.2f} s), ratio {median}"
            f"{r['ratio']:.3f} (loop alone {r['loop_ratio']:.3f}); measure() held training "
            f"{r['monitor_s']:.2f} s = {100 * r['monitor_share']:.1f} % of plain, analysis "
            f"{r['analysis_s']:.2f} s; CPU s: plain {r['plain_cpu_s']:.1f}, monitored {r['monitored_cpu_s']:.1f}"
            f" (in measure() {r['measure_cpu_s']:.2f}, sending/receiving {r.get('link_threads_cpu_s', 0):.2f}),"
            f" worker process {r['worker_cpu_s']:.1f} (start-up {r.get('worker_start_cpu_s', 0):.1f}); "
            f"load average {before[0]:.1f} -> {r['load_after'][0]:.1f} on "
            f"{os.cpu_count()} cores [metrics {r['metrics']}{', p_pair skipped' if r['skip_p_pair'] else ''}]")
    if r["repeats"] == 1:
        return line
    each = ", ".join(f"{a:.3f}" for a in r["ratios"])
    cpu = ", ".join(f"{a:.3f}" for a in r["cpu_ratios"])
    return (f"{line}\n{'':6s} {r['repeats']} pairs, each monitored run / mean of the plain runs beside it: ratio "
            f"{each}: median {r['ratio']:.3f} ({r['ratio_min']:.3f}-{r['ratio_max']:.3f}); training process "
            f"CPU, monitored / plain: {cpu}: median {r['cpu_ratio']:.3f} "
            f"({r['cpu_ratio_min']:.3f}-{r['cpu_ratio_max']:.3f})")


if __name__ == "__main__":
    main()
