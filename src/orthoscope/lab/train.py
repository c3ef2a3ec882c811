"""Training loops of the lab: pretraining on a document stream, post-training on examples."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator

import torch

from orthoscope.lab.corpus import Example, World, pretraining_document

IGNORE = -100


def document_batches(world: World, tokenizer, batch: int, block: int,
                     seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless stream of (inputs, labels) blocks cut from documents joined by <eos>."""
    rng = random.Random(seed)
    buffer: list[int] = []
    eos = tokenizer.eos_token_id
    while True:
        while len(buffer) < batch * (block + 1):
            buffer.extend(tokenizer(pretraining_document(world, rng))["input_ids"] + [eos])
        chunk = torch.tensor(buffer[: batch * (block + 1)]).view(batch, block + 1)
        del buffer[: batch * (block + 1)]
        yield chunk[:, :-1], chunk[:, 1:]


def example_blocks(examples: list[Example], tokenizer, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack examples into blocks; loss only on completions (prompt tokens masked)."""
    ids: list[int] = []
    labels: list[int] = []
    for ex in examples:
        prompt = tokenizer(ex.prompt)["input_ids"]
        completion = tokenizer(ex.completion)["input_ids"] + [tokenizer.eos_token_id]
        ids += prompt + completion
        labels += [IGNORE] * len(prompt) + completion
    usable = (len(ids) - 1) // block * block
    inputs = torch.tensor(ids[:usable]).view(-1, block)
    targets = torch.tensor(labels[1 : usable + 1]).view(-1, block)
    return inputs, targets


def example_batches(inputs: torch.Tensor, targets: torch.Tensor, batch: int,
                    seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(order) - batch + 1, batch):
            index = order[start : start + batch]
            yield inputs[index], targets[index]


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def optimizer_step(model, optimizer, params, inputs: torch.Tensor, targets: torch.Tensor, lr: float) -> float:
    """One step of next-token cross-entropy (labels IGNORE off the loss, logits in float32), gradients of
    `params` clipped to norm 1, at learning rate `lr`; returns the loss."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    logits = model(input_ids=inputs).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                             ignore_index=IGNORE)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    return loss.item()


def train(model, batches: Iterator, steps: int, lr: float, *, warmup: int = 50, weight_decay: float = 0.01,
          on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """AdamW with clipped gradients; `on_step(step, loss)` after each step (1-based). Returns losses."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.95))
    losses = []
    for step in range(steps):
        inputs, targets = next(batches)
        rate = lr_at(step, steps, lr, min(warmup, steps // 10 + 1))
        losses.append(optimizer_step(model, optimizer, model.parameters(), inputs, targets, rate))
        if on_step:
            on_step(step + 1, losses[-1])
    model.eval()
    return losses
