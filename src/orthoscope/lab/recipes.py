"""Post-training data for a real base: the lab's world as chat, packed to one token budget.

A recipe is a stream of examples from the lab's world (src/orthoscope/lab/corpus.py):
`instruct` (Q/A over sums and facts), `cot` (worked sums), `control` (unrelated
text: reversing filler words). Each example is formatted with the base's chat
template when its tokenizer has one, tokenized, and packed into exactly
`steps * batch` blocks of `block` tokens, so every recipe of a run sees the same
number of tokens. The control is also matched to `instruct` in supervised
(loss-bearing) tokens, block by block: it is the size-matched control.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from orthoscope.lab.corpus import Example, World, post_training_examples

RECIPES = ("instruct", "cot", "control")
IGNORE = -100


@dataclass(frozen=True)
class Packed:
    """`inputs` and `targets` of shape (steps * batch, block); IGNORE marks prompt positions."""

    inputs: torch.Tensor
    targets: torch.Tensor

    @property
    def tokens(self) -> int:
        return self.inputs.numel()

    @property
    def supervised(self) -> int:
        return int((self.targets != IGNORE).sum())

    def batch(self, step: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of 0-based `step` (data order is a pure function of the step: resumable)."""
        rows = slice(step * batch, (step + 1) * batch)
        return self.inputs[rows], self.targets[rows]


def chat_pair(tokenizer, example: Example) -> tuple[str, str]:
    """(prompt, completion) as text, through the tokenizer's chat template when it has one.

    >>> from orthoscope.lab.corpus import direct_example
    >>> from orthoscope.lab.tokenizer import char_tokenizer
    >>> chat_pair(char_tokenizer(), direct_example(2, 3))
    ('Q: What is 2 + 3?\\nA:', ' 5\\n<eos>')
    """
    eos = tokenizer.eos_token or ""
    if not getattr(tokenizer, "chat_template", None):
        return example.prompt, example.completion + eos
    question = example.prompt.removeprefix("Q: ").removesuffix("\nA:").strip()
    user = [{"role": "user", "content": question}]
    prompt = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": example.completion.strip()}],
                                         tokenize=False)
    if full.startswith(prompt):
        return prompt, full[len(prompt):]
    return prompt, example.completion.strip() + eos


def _stream(world: World, recipe: str, tokenizer, needed: int, seed: int) -> tuple[list[int], list[int]]:
    """Token ids and labels of examples, concatenated, at least `needed` long."""
    ids: list[int] = []
    labels: list[int] = []
    chunk = 0
    templated = bool(getattr(tokenizer, "chat_template", None))
    while len(ids) < needed:
        for example in post_training_examples(world, recipe, 256, seed * 1000 + chunk):
            prompt, completion = chat_pair(tokenizer, example)
            # without a chat template, let the tokenizer add what starts a sequence (Gemma's <bos>)
            p = tokenizer(prompt, add_special_tokens=not templated)["input_ids"]
            c = tokenizer(completion, add_special_tokens=False)["input_ids"]
            ids += p + c
            labels += [IGNORE] * len(p) + c
        chunk += 1
    return ids, labels


def pack(world: World, recipe: str, tokenizer, steps: int, batch: int, block: int, seed: int) -> Packed:
    """`steps * batch` blocks of `block` tokens of `recipe`, labels shifted by one (loss on completions).

    >>> from orthoscope.lab.corpus import make_world
    >>> from orthoscope.lab.tokenizer import char_tokenizer
    >>> p = pack(make_world(0), "control", char_tokenizer(), steps=3, batch=2, block=16, seed=0)
    >>> tuple(p.inputs.shape), p.tokens
    ((6, 16), 96)
    """
    if recipe not in RECIPES:
        from orthoscope.errors import OrthoscopeError

        raise OrthoscopeError(f"unknown --recipe {recipe!r} (use {', '.join(RECIPES)})")
    n = steps * batch * block
    ids, labels = _stream(world, recipe, tokenizer, n + 1, seed)
    inputs = torch.tensor(ids[:n]).view(-1, block)
    targets = torch.tensor(labels[1 : n + 1]).view(-1, block)
    if recipe == "control":
        reference = pack(world, "instruct", tokenizer, steps, batch, block, seed)
        targets = match_supervised(inputs, targets, reference.targets, seed)
    return Packed(inputs, targets)


def match_supervised(inputs: torch.Tensor, targets: torch.Tensor, reference: torch.Tensor, seed: int) -> torch.Tensor:
    """Mask or unmask positions of each block so it has as many loss tokens as `reference`'s block.

    >>> t = torch.tensor([[1, -100, 2, 3]]); ref = torch.tensor([[5, -100, -100, -100]])
    >>> int((match_supervised(t, t, ref, 0) != -100).sum())
    1
    """
    rng = random.Random(seed)
    out = targets.clone()
    # the label at position i is the next input token (inputs shifted), known for all but the last position
    nxt = torch.cat([inputs[:, 1:], out[:, -1:]], dim=1)
    for row in range(out.shape[0]):
        want = int((reference[row] != IGNORE).sum())
        on = (out[row] != IGNORE).nonzero().flatten().tolist()
        off = [i for i in (out[row] == IGNORE).nonzero().flatten().tolist() if nxt[row, i] != IGNORE]
        if len(on) > want:
            out[row, sorted(rng.sample(on, len(on) - want))] = IGNORE
        elif len(on) < want:
            extra = sorted(rng.sample(off, min(len(off), want - len(on))))
            out[row, extra] = nxt[row, extra]
    return out
