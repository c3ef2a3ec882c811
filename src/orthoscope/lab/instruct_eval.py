"""Evaluation of an instruction-tuned model: held-out instructions (Wilson intervals) and perplexity.

Two held-out sets, scored separately and together: held-out instances of the trained
families, and every instance of the held-out families (lab/instructions.py). A reply
is generated greedily from the chat prompt, cut at the end of the turn or the first
newline (`Answer:` lines included), and checked by its family's checker; a hit is a
score of 1.0. Perplexity is measured on held-out general text: by default the
project's own docs/method.md, which no arm trains on.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import torch

from orthoscope.evaluation.options import read_text
from orthoscope.evaluation.perplexity import perplexity
from orthoscope.evaluation.stats import Accuracy
from orthoscope.lab.instructions import HELD_OUT, Instruction
from orthoscope.lab.tuning import chat_text, prompt_ids

END_TOKENS = ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|endoftext|>")


def stop_ids(tokenizer) -> list[int]:
    """Token ids that end a reply: eos, the chat templates' end-of-turn tokens, and newlines."""
    ids = {tokenizer.eos_token_id}
    vocab = tokenizer.get_vocab()
    ids |= {vocab[t] for t in END_TOKENS if t in vocab}
    for text in ("\n", "\n\n"):
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(encoded) == 1:
            ids.add(encoded[0])
    return sorted(i for i in ids if i is not None)


@torch.no_grad()
def replies(model, tokenizer, prompts: list[str], max_new_tokens: int, batch: int = 16) -> list[str]:
    """Greedy replies to chat prompts (left-padded batches), decoded without special tokens."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = stop_ids(tokenizer)
    out: list[str] = []
    for start in range(0, len(prompts), batch):
        rows = [prompt_ids(tokenizer, p) for p in prompts[start : start + batch]]
        width = max(map(len, rows))
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        ids, mask = ids.to(model.device), mask.to(model.device)
        generated = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                   do_sample=False, pad_token_id=pad, eos_token_id=stops)
        out += tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
    return out


def score(model, tokenizer, items: list[Instruction], max_new_tokens: int = 48, batch: int = 16) -> dict:
    """{split: Accuracy fields} for `held_in` (held-out instances), `held_out_families` and `all`,
    the mean checker score, hits per family, and a few replies to read."""
    prompts = [chat_text(tokenizer, item, "instruct")[0] for item in items]
    started, cpu_started = time.time(), time.process_time()
    texts = replies(model, tokenizer, prompts, max_new_tokens, batch)
    seconds, cpu = time.time() - started, time.process_time() - cpu_started
    scores = [item.check(text) for item, text in zip(items, texts)]
    result: dict = {"seconds": round(seconds, 2), "seconds_per_item": round(seconds / max(1, len(items)), 4),
                    "cpu_seconds_per_item": round(cpu / max(1, len(items)), 4),
                    "mean_score": round(sum(scores) / max(1, len(scores)), 4), "per_family": {}}
    splits = {"held_in": lambda i: i.family not in HELD_OUT, "held_out_families": lambda i: i.family in HELD_OUT,
              "all": lambda i: True}
    for split, keep in splits.items():
        chosen = [s for item, s in zip(items, scores) if keep(item)]
        result.update(Accuracy(sum(s == 1.0 for s in chosen), len(chosen)).fields(split))
    for item, s in zip(items, scores):
        hits, n = result["per_family"].get(item.family, (0, 0))
        result["per_family"][item.family] = (hits + int(s == 1.0), n + 1)
    result["examples"] = [{"family": i.family, "reply": t[:120], "answer": i.answer} for i, t in
                          list(zip(items, texts))[:: max(1, len(items) // 8)]]
    return result


def general_text(path: Path, chars: int | None = None) -> tuple[str, dict]:
    """(text, its record: path, sha256, characters) of the held-out general text for perplexity."""
    text = read_text(path, "--ppl-text")[:chars]
    return text, {"path": str(path), "sha256": hashlib.sha256(text.encode()).hexdigest()[:16], "chars": len(text)}


def evaluate(model, tokenizer, items: list[Instruction], text: str, max_new_tokens: int = 48,
             ppl_block: int = 128) -> dict:
    """Held-out instruction scores (see `score`) and perplexity on `text`, with their timings."""
    result = score(model, tokenizer, items, max_new_tokens)
    started, cpu_started = time.time(), time.process_time()
    result["ppl"] = perplexity(model, tokenizer, text, block=ppl_block)
    result["ppl_seconds"] = round(time.time() - started, 2)
    result["ppl_cpu_seconds"] = round(time.process_time() - cpu_started, 2)
    return result
