"""`orthoscope lab`: pretrain a base, post-train three variants from it, evaluate all four.

Layout of OUT:
    base/ instruct/ cot/ control/          normal HF checkpoints (config, safetensors, tokenizer)
    trajectories/<variant>/step-NNNN/      checkpoints every `save_every` post-training steps
    orthoscope/<variant>/                  the monitor's series run folder: each post-training measured
                                           against base every `save_every` steps while it trains
                                           (`orthoscope report OUT/orthoscope/cot` draws its trajectories)
    eval.json                              accuracies and perplexities of the four models
    lab.json                               preset, seed, losses, timings: how to regenerate
Each checkpoint folder is written under a temporary name and renamed when complete,
so a rerun skips finished models and never trusts a half-written one.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import torch

from orthoscope.lab.corpus import World, held_out_problems, held_out_text, make_world, post_training_examples
from orthoscope.lab.presets import Preset
from orthoscope.lab.tokenizer import char_tokenizer
from orthoscope.lab.train import document_batches, example_batches, example_blocks, train
from orthoscope.monitor import Monitor
from orthoscope.monitor.monitor import AUTO
from orthoscope.pipeline.store import write_text

VARIANTS = ("instruct", "cot", "control")
LOG_WIDTH = 80
"""The lab's log lines wrap at a terminal's 80 columns (`wrapped`)."""
MONITORED = "orthoscope"  # OUT/orthoscope/<variant>/: the monitor's series run folder of each post-training
Log = Callable[[str], None]


def model_config(preset: Preset, tokenizer):
    from transformers import LlamaConfig

    # Llama, not Qwen2: AutoTokenizer maps qwen2 folders to Qwen2Tokenizer whatever
    # tokenizer_config.json says, which would drop the spaces of the character tokenizer.
    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=preset.hidden, intermediate_size=preset.intermediate,
        num_hidden_layers=preset.layers, num_attention_heads=preset.heads, num_key_value_heads=preset.kv_heads,
        max_position_embeddings=4 * preset.block, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )


def save_checkpoint(model, tokenizer, folder: Path, meta: dict) -> None:
    """Write a checkpoint under a temporary name, then rename it into place."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "orthoscope_lab.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def load_checkpoint(folder: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype="float32")


def is_complete(folder: Path) -> bool:
    return (folder / "orthoscope_lab.json").is_file()


def build_lab(preset: Preset, out: str | Path, seed: int = 0, log: Log = print) -> dict:
    """Build (or finish building) the lab in `out`; returns the evaluation table."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    torch.set_num_threads(preset.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    world, tokenizer = make_world(seed, max_operand=preset.max_operand), char_tokenizer()
    world_spec = {"seed": seed, "max_operand": preset.max_operand}
    record = {"preset": preset.as_dict(), "seed": seed, "world": world_spec, "torch": torch.__version__, "stages": {}}
    base_dir = out / "base"
    if not is_complete(base_dir):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(model_config(preset, tokenizer))
        log(f"pretraining base: {sum(p.numel() for p in model.parameters()):,} parameters, "
            f"{preset.pretrain_steps} steps")
        documents = document_batches(world, tokenizer, preset.batch, preset.block, seed)
        record["stages"]["base"] = _run_stage(model, documents, preset.pretrain_steps, preset.pretrain_lr, log, "base")
        save_checkpoint(model, tokenizer, base_dir, {"stage": "base", "world": world_spec, **record["stages"]["base"]})
    for offset, variant in enumerate(VARIANTS, start=1):
        if not is_complete(out / variant):
            record["stages"][variant] = _post_train(preset, world, world_spec, tokenizer, base_dir, out, variant,
                                                    seed + offset, log)
    trained = bool(record["stages"])
    for name in ("base",) + VARIANTS:  # a stage built by an earlier run: its record as its checkpoint keeps it
        if name not in record["stages"]:
            record["stages"][name] = _stage_record(out / name)
    evaluated = out / "eval.json"
    if trained or not evaluated.is_file() or not _same_settings(out / "lab.json", record):
        record["eval"] = evaluate_lab(out, world, tokenizer, preset, seed, log)
        write_text(evaluated, json.dumps(record["eval"], indent=2))
    else:  # every model as the last evaluation, of the same preset and seed, saw it
        record["eval"] = json.loads(evaluated.read_text())
    write_text(out / "lab.json", json.dumps(record, indent=2))
    return record["eval"]


def _same_settings(previous: Path, record: dict) -> bool:
    """Whether the lab.json of the run before was written with this run's preset and seed (its evaluation holds)."""
    try:
        before = json.loads(previous.read_text())
    except (OSError, ValueError):
        return False
    return all(before.get(key) == record[key] for key in ("preset", "seed", "world"))


def _stage_record(folder: Path) -> dict:
    """What the run that trained the model in `folder` recorded of its stage (steps, lr, losses, seconds, monitor)."""
    meta = json.loads((folder / "orthoscope_lab.json").read_text())
    return {key: value for key, value in meta.items() if key not in ("stage", "world")}


def wrapped(line: str, width: int = LOG_WIDTH) -> list[str]:
    """A log line in lines of at most `width` characters: its indent kept, the next lines 4 deeper.

    >>> wrapped("  control 200: rel_delta 0.155 a_geo 1.01 z_pair 0.483 bh_pair 12/21 (0.25 s)", 60)
    ['  control 200: rel_delta 0.155 a_geo 1.01 z_pair 0.483', '      bh_pair 12/21 (0.25 s)']
    """
    indent = line[: len(line) - len(line.lstrip())]
    return textwrap.wrap(line.lstrip(), width, initial_indent=indent, subsequent_indent=indent + "    ",
                         break_long_words=False, break_on_hyphens=False) or [line]


def _run_stage(model, batches, steps: int, lr: float, log: Log, name: str, on_step=None) -> dict:
    started = time.time()

    def step_hook(step: int, loss: float) -> None:
        if step % max(1, steps // 10) == 0 or step == steps:
            log(f"  {name} step {step}/{steps} loss {loss:.3f}")
        if on_step:
            on_step(step, loss)

    losses = train(model, batches, steps, lr, on_step=step_hook)
    return {"steps": steps, "lr": lr, "final_loss": losses[-1], "first_loss": losses[0],
            "seconds": round(time.time() - started, 1)}


def _post_train(preset: Preset, world: World, world_spec: dict, tokenizer, base_dir: Path, out: Path, variant: str,
                seed: int, log: Log) -> dict:
    torch.manual_seed(seed)
    model = load_checkpoint(base_dir)
    examples = post_training_examples(world, variant, preset.post_examples, seed)
    inputs, targets = example_blocks(examples, tokenizer, preset.block)
    trajectory = out / "trajectories" / variant
    log(f"post-training {variant}: {preset.post_steps} steps at lr {preset.post_lr}")
    monitor = Monitor(base_dir, out / MONITORED / variant, overwrite=True, background=AUTO)
    for line in wrapped(f"  measuring {monitor.mode}"):
        log(line)
    curves: dict[str, dict] = {}

    def arrived(step: int, result) -> None:  # in line, or on the monitor's receiving thread; steps in order
        if result is not None:
            curves[str(step)] = result.logs("")
            for line in wrapped(f"  {variant} {step}: {result.brief()}"):
                log(line)

    def save_trajectory(step: int, loss: float) -> None:
        if step % preset.save_every == 0 or step == preset.post_steps:  # measured in memory, as it trains
            monitor.observe(model, step, functools.partial(arrived, step))
        if step % preset.save_every == 0 and step < preset.post_steps:
            save_checkpoint(model, tokenizer, trajectory / f"step-{step:04d}",
                            {"stage": variant, "step": step, "world": world_spec})

    with monitor:  # leaving (an interruption too) drains the queue: the last steps' analysis
        stage = _run_stage(model, example_batches(inputs, targets, preset.batch, seed), preset.post_steps,
                           preset.post_lr, log, variant, save_trajectory)
    stage["monitor"] = {"folder": str(out / MONITORED / variant), "seconds": round(monitor.seconds, 2),
                        "by_step": curves}
    save_checkpoint(model, tokenizer, out / variant, {"stage": variant, "world": world_spec, **stage})
    return stage


def evaluate_lab(out: Path, world: World, tokenizer, preset: Preset, seed: int, log: Log) -> dict:
    """Accuracy on each lab task and held-out perplexity, for base and every variant."""
    from orthoscope.evaluation import answer_accuracy, perplexity
    from orthoscope.lab.tasks import LAB_TASKS

    text = held_out_text(world, seed)
    results = {}
    for name in ("base",) + VARIANTS:
        model = load_checkpoint(out / name)
        row = {task: answer_accuracy(model, tokenizer, held_out_problems(world, task, preset.eval_problems), tokens)
               for task, tokens in LAB_TASKS.items()}
        row["ppl"] = perplexity(model, tokenizer, text, preset.block)
        results[name] = row
        log(f"  {name:9s} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
    return results


def lab_block(path: str | Path) -> int | None:
    """Tokens per training block of a lab checkpoint (its family's lab.json preset), None when unrecorded.

    >>> from orthoscope.lab.shipped import shipped_family
    >>> lab_block(shipped_family()["instruct"])
    64
    """
    meta = Path(path).parent / "lab.json"
    try:
        block = json.loads(meta.read_text()).get("preset", {}).get("block") if meta.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None
    return block if isinstance(block, int) and not isinstance(block, bool) and block > 0 else None


def lab_world(path: str | Path, default_seed: int = 0) -> World:
    """The world a lab checkpoint was trained in (recorded in orthoscope_lab.json)."""
    meta = Path(path) / "orthoscope_lab.json"
    spec = json.loads(meta.read_text()).get("world", {}) if meta.is_file() else {}
    return make_world(spec.get("seed", default_seed), max_operand=spec.get("max_operand", 99))
