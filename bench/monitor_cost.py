"""monitor_cost: what monitoring at the save interval adds to the lab's post-training time (tiny and small presets).

For each preset, one post-training (the `cot` variant, the preset's steps, batch, block, lr and
thread count) of a from_config base is timed three times in one process, in the order plain,
monitored, plain: the monitored run measures the model against the base in memory at every
`save_every` steps and at the end (the lab's points, `Monitor` defaults, cache off), as
`orthoscope lab` does: in background (the analysis in the monitor's worker process) unless
`--inline`, in a process tuned as the `orthoscope` command tunes it. Printed per preset: the two
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

    .venv/bin/python bench/monitor_cost.py                    # tiny and small, a few minutes on 2 cores
    .venv/bin/python bench/monitor_cost.py --presets tiny --json
    .venv/bin/python bench/monitor_cost.py --presets tiny --metrics sign-free --skip-p-pair
    .venv/bin/python bench/monitor_cost.py --presets tiny --inline        # measure() in the training loop
    .venv/bin/python bench/monitor_cost.py --presets small --steps 100    # CPU per measure, 2 measures

--metrics takes compare's --metrics values (default: the monitor's MONITOR_METRICS). --skip-p-pair
drops p_pair (its sign draws) from that set: the cost of a monitor without the pairing null's p-value.
--steps shortens the post-training (the measures stay at every save_every steps and the end).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
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


def bench(name: str, folder: Path, metrics: str | None, background: bool, steps: int | None = None) -> dict:
    from transformers import AutoModelForCausalLM

    preset = get_preset(name)
    if steps is not None:
        preset = dataclasses.replace(preset, post_steps=steps)
    torch.set_num_threads(preset.threads)
    world, tokenizer = make_world(0, max_operand=preset.max_operand), char_tokenizer()
    torch.manual_seed(0)
    base = folder / f"{name}-base"
    AutoModelForCausalLM.from_config(model_config(preset, tokenizer)).save_pretrained(base)
    data = example_blocks(post_training_examples(world, "cot", preset.post_examples, 1), tokenizer, preset.block)
    first = post_train(preset, base, data, None)
    end_spares()  # every preset's worker starts afresh (an earlier preset's idle one would skip its start-up)
    monitor = Monitor(base, folder / f"{name}-monitor", cache=False, metrics=metrics, background=background)
    run = post_train(preset, base, data, monitor)
    loop, measuring, drain = run["loop"], run["measure"], run["drain"]
    worker_cpu = monitor.worker.cpu_seconds if monitor.worker is not None else 0.0  # its own count, start-up in
    monitored = loop + drain
    last = post_train(preset, base, data, None)
    plain = [first["loop"], last["loop"]]
    mean = sum(plain) / 2
    plain_cpu = (first["cpu"] + last["cpu"]) / 2
    return {"preset": name, "steps": preset.post_steps, "measures": preset.post_steps // preset.save_every
            + (preset.post_steps % preset.save_every != 0), "threads": preset.threads,
            "plain_s": [round(t, 2) for t in plain], "monitored_s": round(monitored, 2), "loop_s": round(loop, 2),
            "drain_s": round(drain, 2), "ratio": round(monitored / mean, 3), "loop_ratio": round(loop / mean, 3),
            "background": background, "analysis_s": round(monitor.seconds, 2), "monitor_s": round(measuring, 2),
            "monitor_share": round(measuring / mean, 3), "plain_cpu_s": round(plain_cpu, 2),
            "monitored_cpu_s": round(run["cpu"], 2), "measure_cpu_s": round(run["measure_cpu"], 3),
            "worker_cpu_s": round(worker_cpu, 2), **_worker_cpu(monitor)}


def _worker_cpu(monitor: Monitor) -> dict:
    """The worker process's own count of its start-up CPU, and the CPU of this process's threads talking to it."""
    worker = monitor.worker
    if worker is None or not hasattr(worker, "start_cpu_seconds"):  # in line, or the thread worker before
        return {}
    return {"worker_start_cpu_s": round(worker.start_cpu_seconds, 2),
            "link_threads_cpu_s": round(worker.thread_cpu_seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--metrics", default=None, help="compare's --metrics (default: MONITOR_METRICS)")
    parser.add_argument("--skip-p-pair", action="store_true", help="what-if: no p_pair sign draws (see above)")
    parser.add_argument("--inline", action="store_true", help="measure in the training loop (Monitor's default)")
    parser.add_argument("--steps", type=int, default=None, help="post-training steps (default: the preset's)")
    args = parser.parse_args()
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
            r = bench(name, Path(tmp), metrics, not args.inline, args.steps)
            r["metrics"], r["skip_p_pair"] = args.metrics or "monitor default", args.skip_p_pair
            r["load_before"], r["load_after"] = before, os.getloadavg()
            if args.json:
                print(json.dumps(r), flush=True)
                continue
            mode = "background" if r["background"] else "in line"
            print(f"{r['preset']:6s} {r['steps']} steps, {r['measures']} measures ({mode}), {r['threads']} "
                  f"thread(s): plain {r['plain_s'][0]:.1f} / {r['plain_s'][1]:.1f} s, monitored "
                  f"{r['monitored_s']:.1f} s (loop {r['loop_s']:.1f} s + drain {r['drain_s']:.2f} s), ratio "
                  f"{r['ratio']:.3f} (loop alone {r['loop_ratio']:.3f}); measure() held training "
                  f"{r['monitor_s']:.2f} s = {100 * r['monitor_share']:.1f} % of plain, analysis "
                  f"{r['analysis_s']:.2f} s; CPU s: plain {r['plain_cpu_s']:.1f}, monitored {r['monitored_cpu_s']:.1f}"
                  f" (in measure() {r['measure_cpu_s']:.2f}, sending/receiving {r.get('link_threads_cpu_s', 0):.2f}),"
                  f" worker process {r['worker_cpu_s']:.1f} (start-up {r.get('worker_start_cpu_s', 0):.1f}); "
                  f"load average {before[0]:.1f} -> {r['load_after'][0]:.1f} on "
                  f"{os.cpu_count()} cores [metrics {r['metrics']}{', p_pair skipped' if r['skip_p_pair'] else ''}]",
                  flush=True)


if __name__ == "__main__":
    main()
