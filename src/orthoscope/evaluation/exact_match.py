"""Exact-match accuracy of greedy answers: the score of every task that asks a question and knows its answer."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from orthoscope.evaluation.stats import Accuracy
from orthoscope.evaluation.tasks import Example


def extract_answer(text: str) -> str:
    """The answer in a completion: after `Answer:` if present, else the first line.

    >>> extract_answer("12 + 30 = 42. Answer: 42.\\nmore")
    '42'
    """
    line = text.split("\n")[0]
    if "Answer:" in line:
        line = line.rsplit("Answer:", 1)[1]
    return line.strip().rstrip(".")


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch: int = 64) -> list[str]:
    """Greedy completions of `prompts`, each stopped at its first newline."""
    tokenizer.padding_side = "left"
    newline = tokenizer.convert_tokens_to_ids("\n")
    outputs: list[str] = []
    for start in range(0, len(prompts), batch):
        enc = tokenizer(prompts[start : start + batch], return_tensors="pt", padding=True)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=newline)
        outputs += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return outputs


def score_answers(model, tokenizer, examples: Sequence[Example], max_new_tokens: int) -> Accuracy:
    """Correct answers (exact match of the generated answer) out of the examples."""
    completions = generate(model, tokenizer, [ex.prompt for ex in examples], max_new_tokens)
    return Accuracy(sum(extract_answer(text) == ex.answer for text, ex in zip(completions, examples)), len(examples))


def answer_accuracy(model, tokenizer, examples: Sequence[Example], max_new_tokens: int) -> float:
    """Fraction of examples whose generated answer equals the reference exactly (0 for none)."""
    score = score_answers(model, tokenizer, examples, max_new_tokens)
    return score.value if score.n else 0.0
