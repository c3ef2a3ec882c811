"""monitor_blocks: what a measure costs the training around it, from ONE training (the noise of separate runs left out).

`monitor_cost.py` sets whole monitored post-trainings against plain ones run before and after them; on this
shared machine two plain runs of one line differ by 5-10 %, as much as the goal it resolves. Here one
training of the preset (its model, batch, block and threads; the `cot` data of a from_config base) runs
`2 * --blocks` blocks of `save_every` steps, and every other block starts with a `measure` (the lab's
interval: one measure per `save_every` steps). Blocks are timed alone, so a block after a measure and the
plain block before it ran seconds apart on the same process and machine. Printed per mode: the median
plain block, the median block after a measure (what a worker analysing beside the training, or what an in-line
measure left behind, costs its steps), the median time `measure` held the training, and the cost of
monitoring at the lab's interval: (held + block after) / plain block. The first pair of blocks is left out
(warm-up). `--modes none` is the control: the same alternation with no measure (its ratio is the method's
own noise).

    .venv/bin/python bench/monitor_blocks.py                          # small: none, inline, background
    .venv/bin/python bench/monitor_blocks.py --presets tiny small --modes inline background
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from monitor_cost import MODES as COST_MODES  # bench/, this script's folder
from monitor_cost import lab_base

from orthoscope.lab.presets import get_preset

MODES = {"none": None, **COST_MODES}  # none: the control, no monitor


def blocks(name: str, mode: str, count: int, folder: Path, base: Path, data: tuple) -> dict:
    """Time `2 * count` blocks of one training of preset `name` from `base` on `data` (`lab_base`); a measure
    before every other one unless none."""
    from transformers import AutoModelForCausalLM

    from orthoscope.lab.train import example_batches, optimizer_step
    from orthoscope.monitor import Monitor
    from orthoscope.monitor.worker import end_spares

    preset = get_preset(name)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    batches = example_batches(*data, preset.batch, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=preset.post_lr, betas=(0.9, 0.95))
    end_spares()
    monitor = None if MODES[mode] is None else Monitor(base, folder / f"{name}-{mode}", cache=False,
                                                        background=MODES[mode])
    plain, after, held, step = [], [], [], 0
    for block in range(2 * count):
        measured = block % 2 == 1
        if measured and monitor is not None:
            began = time.perf_counter()
            monitor.measure(model, step)
            held.append(time.perf_counter() - began)
        began = time.perf_counter()
        for _ in range(preset.save_every):
            inputs, targets = next(batches)
            optimizer_step(model, optimizer, model.parameters(), inputs, targets, preset.post_lr)
            step += 1
        (after if measured else plain).append(time.perf_counter() - began)
    if monitor is not None:
        monitor.close()
    plain_s, after_s = statistics.median(plain[1:]), statistics.median(after[1:])
    held_s = statistics.median(held[1:]) if held else 0.0
    return {"preset": name, "mode": monitor.mode if monitor is not None else "none (control)",
            "threads": preset.threads, "block_steps": preset.save_every, "plain_s": plain_s, "after_s": after_s,
            "held_s": held_s, "ratio": (held_s + after_s) / plain_s, "blocks": count - 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["small"])
    parser.add_argument("--modes", nargs="+", default=["none", "inline", "background"], choices=list(MODES))
    parser.add_argument("--blocks", type=int, default=8, help="measured blocks per mode (as many plain ones)")
    args = parser.parse_args()
    from orthoscope.tuning import tune_process

    tune_process()  # as `orthoscope lab` runs
    from transformers.utils import logging

    logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.presets:
            base, data = lab_base(get_preset(name), Path(tmp) / f"{name}-base")
            for mode in args.modes:
                r = blocks(name, mode, args.blocks, Path(tmp), base, data)
                print(f"{r['preset']:5s} {r['mode']}: {r['blocks']} blocks of {r['block_steps']} steps, "
                      f"{r['threads']} thread(s): plain {r['plain_s']:.2f} s, after a measure {r['after_s']:.2f} s, "
                      f"measure held {r['held_s']:.2f} s: cost at the lab's interval {r['ratio']:.3f} "
                      f"(load {' '.join(f'{x:.1f}' for x in os.getloadavg())})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
