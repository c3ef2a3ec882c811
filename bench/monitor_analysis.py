"""monitor_analysis: CPU seconds of the Monitor's analysis alone, one thread, on the lab's own training states.

For each preset, the lab's post-training (the `cot` variant, the preset's steps, batch and lr) of a
from_config base runs once on one thread and its weights at every save point are kept in a folder
(reused by later runs). Then `Monitor(base, None, cache=False).measure(state, step)` runs in line over
those saves, once per metric variant, and the process time of the measure calls is printed (the first
call includes the base's SVDs):

- `default`: the Monitor's defaults (MONITOR_METRICS, p_pair capped at MONITOR_PAIR_DRAWS);
- `uncapped`: p_pair by compare's stated-error rule (`pair_draws=None`);
- `no-p_pair`: MONITOR_METRICS without p_pair;
- `... +post-svd`: the same with `incons` added, which takes the full route (the post SVD): the cost of
  intruders as it was before it came from the post's Gram.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/monitor_analysis.py                   # tiny and small
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/monitor_analysis.py --presets tiny --states /tmp/states
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

VARIANTS = {  # name -> (drop p_pair, add incons (the post SVD), Monitor settings)
    "uncapped +post-svd": (False, True, {"pair_draws": None}),
    "default +post-svd": (False, True, {}),
    "no-p_pair +post-svd": (True, True, {}),
    "uncapped": (False, False, {"pair_draws": None}),
    "default": (False, False, {}),
    "no-p_pair": (True, False, {}),
}


def train_states(name: str, folder: Path) -> None:
    """The preset's post-training from a from_config base, its weights saved at every save point (once)."""
    from transformers import AutoModelForCausalLM

    from orthoscope.lab.build import model_config
    from orthoscope.lab.corpus import make_world, post_training_examples
    from orthoscope.lab.presets import get_preset
    from orthoscope.lab.tokenizer import char_tokenizer
    from orthoscope.lab.train import example_batches, example_blocks, train

    if (folder / "done").is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    preset = get_preset(name)
    world, tokenizer = make_world(0, max_operand=preset.max_operand), char_tokenizer()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(model_config(preset, tokenizer))
    model.save_pretrained(folder / "base")
    data = example_blocks(post_training_examples(world, "cot", preset.post_examples, 1), tokenizer, preset.block)
    torch.manual_seed(1)

    def on_step(step: int, loss: float) -> None:
        if step % preset.save_every == 0 or step == preset.post_steps:
            torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, folder / f"step-{step}.pt")

    train(model, example_batches(*data, preset.batch, 1), preset.post_steps, preset.post_lr, on_step=on_step)
    (folder / "done").write_text("")


def analysis_seconds(folder: Path, drop_p_pair: bool, post_svd: bool, settings: dict) -> tuple[float, int, int]:
    """Process seconds of the measure calls over every saved step; the number of steps; the intruders' sum."""
    from orthoscope.monitor import MONITOR_METRICS, Monitor

    metrics = (MONITOR_METRICS - {"p_pair"} if drop_p_pair else MONITOR_METRICS) | ({"incons"} if post_svd else set())
    monitor = Monitor(folder / "base", None, cache=False, metrics=metrics, **settings)
    steps = sorted(int(p.stem.split("-")[1]) for p in folder.glob("step-*.pt"))
    seconds, intruders = 0.0, 0
    for step in steps:
        state = torch.load(folder / f"step-{step}.pt", weights_only=True)
        began = time.process_time()
        result = monitor.measure(state, step)
        seconds += time.process_time() - began
        intruders += int(result.table.intruders.sum())
    return seconds, len(steps), intruders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--states", type=Path, default=Path("/tmp/orthoscope-monitor-states"),
                        help="folder of the training states (made once, reused)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    from transformers.utils import logging

    logging.disable_progress_bar()
    for name in args.presets:
        folder = args.states / name
        train_states(name, folder)
        for variant in args.variants:
            seconds, steps, intruders = analysis_seconds(folder, *VARIANTS[variant])
            print(f"{name:6s} {variant:20s} {seconds:6.2f} s CPU over {steps} saves ({seconds / steps:.2f} s each), "
                  f"intruders {intruders}", flush=True)


if __name__ == "__main__":
    main()
