"""Instruction tuning of a real base on the generated instructions (lab/instructions.py), resumable.

Three arms share steps, batch, sequence length and learning rate:

* `instruct`: the user's request, then the answer (loss on the answer tokens only);
* `cot`: the same requests, then the worked solution ending in `Answer: ...`;
* `control`: generated running text of the same token count, with as many loss-bearing
  tokens per block as `instruct` (recipes.match_supervised): the size-matched control.

Layout of OUT (the same as `orthoscope lab --base`, so `orthoscope compare` reads it):

    <arm>/                        the final checkpoint (or PEFT adapter with --lora)
    trajectories/<arm>/step-N/    a checkpoint every `save_every` steps: the series
    resume/<arm>/step-N/          trainable weights, optimizer, RNG states and step,
                                  written under a temporary name and renamed (atomic)

Data order is a pure function of the seed and the step, so a run killed at any point
restarts from its newest resume state and ends with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import torch

from orthoscope.errors import OrthoscopeError
from orthoscope.lab.corpus import Example
from orthoscope.lab.instructions import Instruction, control_stream, training_stream
from orthoscope.lab.real import MARKER, PROJECTIONS, _post_weights, _save, rel_delta
from orthoscope.lab.recipes import IGNORE, Packed, chat_pair, match_supervised
from orthoscope.lab.train import lr_at, optimizer_step

ARMS = ("instruct", "cot", "control")
TRAINABLE = ("all", "no-embeddings", "attention", "mlp")
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
RESUME_STATE = "state.json"


@dataclass(frozen=True)
class TuneOptions:
    """Settings of one arm's run; invalid values raise OrthoscopeError.

    >>> TuneOptions(steps=100).resume_every
    10
    >>> TuneOptions(trainable="heads")
    Traceback (most recent call last):
    ...
    orthoscope.errors.OrthoscopeError: bad --trainable heads (use all, no-embeddings, attention, mlp)
    """

    steps: int = 200
    batch: int = 4
    seq_len: int = 128
    lr: float = 1e-4
    trainable: str = "no-embeddings"
    lora: int | None = None
    save_every: int = 50
    resume_every: int | None = None
    seed: int = 0
    world_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "seq_len", "save_every"):
            if getattr(self, name) <= 0:
                raise OrthoscopeError(f"bad --{name.replace('_', '-')} {getattr(self, name)}: must be positive")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise OrthoscopeError(f"bad --lr {self.lr}: must be a positive finite number")
        if self.trainable not in TRAINABLE:
            raise OrthoscopeError(f"bad --trainable {self.trainable} (use {', '.join(TRAINABLE)})")
        if self.lora is not None and self.lora <= 0:
            raise OrthoscopeError(f"bad --lora {self.lora}: the adapter rank must be a positive integer")
        if self.resume_every is None:
            object.__setattr__(self, "resume_every", max(1, min(self.save_every, self.steps // 10)))


# Gemma-3's turn format, for a Gemma base whose tokenizer ships without a template (the GGUF's)
GEMMA_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + ('model' if message['role'] == "
                  "'assistant' else message['role']) + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
                  "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}")


def ensure_chat_template(tokenizer) -> str:
    """Give a Gemma tokenizer without a chat template Gemma-3's turn format; returns which format is used:
    `own` (the tokenizer's), `gemma` (set here) or `plain` (`Q: ...` / `A: ...`, no template)."""
    if getattr(tokenizer, "chat_template", None):
        return "own"
    if "<start_of_turn>" in tokenizer.get_vocab():
        tokenizer.chat_template = GEMMA_TEMPLATE
        return "gemma"
    return "plain"


def chat_text(tokenizer, item: Instruction, arm: str) -> tuple[str, str]:
    """(prompt, reply) text of an instruction through the tokenizer's chat template when it has one."""
    reply = item.solution if arm == "cot" else item.answer
    return chat_pair(tokenizer, Example(f"Q: {item.prompt}\nA:", f" {reply}\n", item.answer))


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """Token ids of a prompt: a templated prompt carries its own <bos>; a plain one gets the tokenizer's."""
    return tokenizer(prompt, add_special_tokens=not getattr(tokenizer, "chat_template", None))["input_ids"]


def _instruction_tokens(arm: str, tokenizer, needed: int, seed: int, world_seed: int) -> tuple[list, list]:
    ids: list[int] = []
    labels: list[int] = []
    stream = training_stream(seed, world_seed)
    while len(ids) < needed:
        for item in islice(stream, 256):
            prompt, reply = chat_text(tokenizer, item, arm)
            p, r = prompt_ids(tokenizer, prompt), tokenizer(reply, add_special_tokens=False)["input_ids"]
            ids += p + r
            labels += [IGNORE] * len(p) + r
    return ids, labels


def _control_tokens(tokenizer, needed: int, seed: int, world_seed: int) -> tuple[list, list]:
    ids: list[int] = []
    stream = control_stream(seed, world_seed)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    while len(ids) < needed:
        ids += tokenizer(next(stream), add_special_tokens=False)["input_ids"] + eos
    return ids, list(ids)


def pack_arm(arm: str, tokenizer, blocks: int, seq_len: int, seed: int = 0, world_seed: int = 0) -> Packed:
    """`blocks` rows of `seq_len` tokens of an arm's stream; labels shifted by one, IGNORE off the loss.

    >>> from orthoscope.lab.tokenizer import char_tokenizer
    >>> tok = char_tokenizer()
    >>> a, c = pack_arm("instruct", tok, 4, 64), pack_arm("control", tok, 4, 64)
    >>> a.tokens == c.tokens, a.supervised == c.supervised
    (True, True)
    """
    if arm not in ARMS:
        raise OrthoscopeError(f"unknown --arm {arm!r} (use {', '.join(ARMS)})")
    n = blocks * seq_len
    if arm == "control":
        ids, labels = _control_tokens(tokenizer, n + 1, seed, world_seed)
    else:
        ids, labels = _instruction_tokens(arm, tokenizer, n + 1, seed, world_seed)
    inputs = torch.tensor(ids[:n]).view(blocks, seq_len)
    targets = torch.tensor(labels[1 : n + 1]).view(blocks, seq_len)
    if arm == "control":
        reference = pack_arm("instruct", tokenizer, blocks, seq_len, seed, world_seed)
        targets = match_supervised(inputs, targets, reference.targets, seed)
    return Packed(inputs, targets)


def prepare(base, options: TuneOptions):
    """A copy of `base` with only the chosen parameters trainable (or wrapped in LoRA adapters on them)."""
    import copy

    model = copy.deepcopy(base)
    kinds = {"attention": ATTENTION, "mlp": tuple(k for k in PROJECTIONS if k not in ATTENTION)}.get(
        options.trainable, tuple(PROJECTIONS))
    if options.lora:
        from peft import LoraConfig, get_peft_model

        targets = sorted({n.split(".")[-1] for n, m in model.named_modules()
                          if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in kinds})
        if not targets:
            raise OrthoscopeError("--lora: the base has no attention/MLP projection layers to adapt")
        return get_peft_model(model, LoraConfig(r=options.lora, lora_alpha=2 * options.lora, lora_dropout=0.0,
                                                target_modules=targets))
    embeddings = {id(m.weight) for m in (model.get_input_embeddings(), model.get_output_embeddings())
                  if m is not None}
    for name, p in model.named_parameters():
        if options.trainable == "no-embeddings":
            p.requires_grad_(id(p) not in embeddings)
        elif options.trainable in ("attention", "mlp"):
            p.requires_grad_(name.split(".")[-2] in kinds)
    return model


def _trainable(model) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def write_resume(folder: Path, model, optimizer, step: int, losses: list[float], series: dict) -> None:
    """State to resume from after `step` steps, written under a temporary name then renamed into place."""
    from safetensors.torch import save_file

    final = folder / f"step-{step}"
    tmp = folder / f".step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({n: p.detach().cpu().contiguous() for n, p in _trainable(model).items()},
              tmp / "trainable.safetensors")
    torch.save({"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()}, tmp / "optimizer.pt")
    state = {"step": step, "loss": losses, "rel_delta": series, "python_rng": random.getstate()}
    (tmp / RESUME_STATE).write_text(json.dumps(state))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for older in folder.glob("step-*"):
        if older != final:
            shutil.rmtree(older, ignore_errors=True)


def latest_resume(folder: Path) -> Path | None:
    """The newest complete resume state (temporary folders of an interrupted write are ignored)."""
    done = [p for p in folder.glob("step-*") if (p / RESUME_STATE).is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def read_resume(folder: Path, model, optimizer) -> dict:
    from safetensors.torch import load_file

    weights = load_file(folder / "trainable.safetensors")
    params = _trainable(model)
    if set(weights) != set(params):
        raise OrthoscopeError(f"{folder} holds other trainable parameters than this run's; use another -o folder")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    saved = torch.load(folder / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved["torch_rng"])
    state = json.loads((folder / RESUME_STATE).read_text())
    version, internal, gauss = state["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    return state


def tune(base, tokenizer, data: Packed, options: TuneOptions, arm: str, out: Path, base_weights: dict,
         base_source: str | None = None, on_step: Callable[[int, float], None] | None = None,
         stop_after: int | None = None) -> dict:
    """Train a copy of `base` on `data` for `options.steps` (or until `stop_after`, for tests), resuming
    from the newest state in out/resume/<arm>; writes the series and the final checkpoint; returns its record.
    """
    out = Path(out)
    torch.manual_seed(options.seed + ARMS.index(arm) + 1)
    random.seed(options.seed)
    model = prepare(base, options)
    params = list(_trainable(model).values())
    device = params[0].device
    optimizer = torch.optim.AdamW(params, lr=options.lr, weight_decay=0.0, betas=(0.9, 0.95))
    resume_dir, series_dir = out / "resume" / arm, out / "trajectories" / arm
    start, losses, series = 0, [], {}
    latest = latest_resume(resume_dir)
    if latest is not None:
        state = read_resume(latest, model, optimizer)
        start, losses, series = state["step"], state["loss"], state["rel_delta"]
    warmup = min(50, options.steps // 10 + 1)
    adapter_base = base_source if options.lora else None
    started, cpu_started = time.time(), time.process_time()
    model.train()
    for step in range(start, min(options.steps, stop_after or options.steps)):
        inputs, targets = (t.to(device) for t in data.batch(step, options.batch))
        rate = lr_at(step, options.steps, options.lr, warmup)
        losses.append(round(optimizer_step(model, optimizer, params, inputs, targets, rate), 5))
        done = step + 1
        if on_step:
            on_step(done, losses[-1])
        if done % options.save_every == 0 or done == options.steps:
            series[str(done)] = rel_delta(base_weights, _post_weights(model, bool(options.lora)))["median"]
            meta = {"stage": arm, "step": done, "loss": losses, "rel_delta": series, "options": asdict(options)}
            _save(model, tokenizer, series_dir / f"step-{done}", meta, None, adapter_base)
        if done % options.resume_every == 0 or done == options.steps:
            write_resume(resume_dir, model, optimizer, done, losses, series)
    model.eval()
    if len(losses) < options.steps:
        return {"arm": arm, "steps_done": len(losses), "loss": losses}
    delta = rel_delta(base_weights, _post_weights(model, bool(options.lora)))
    record = {"arm": arm, "options": asdict(options), "tokens": data.tokens, "supervised_tokens": data.supervised,
              "loss": losses, "first_loss": losses[0], "final_loss": losses[-1], "rel_delta": delta["median"],
              "rel_delta_per_kind": delta["per_kind"], "rel_delta_by_step": series,
              "trained_parameters": sum(p.numel() for p in params), "seconds_this_run": round(time.time() - started, 2),
              "cpu_seconds_this_run": round(time.process_time() - cpu_started, 2),
              "resumed_from": start or None}
    _save(model, tokenizer, out / arm, {"stage": arm, **record}, None, adapter_base)
    return record


def is_finished(out: Path, arm: str) -> bool:
    return (out / arm / MARKER).is_file()
