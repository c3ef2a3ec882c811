"""`orthoscope lab --base SOURCE`: controlled post-training of a real pretrained base.

Layout of OUT:
    <recipe>/                            final checkpoint (config, tokenizer, safetensors) or,
                                         with --lora, a PEFT adapter folder
    trajectories/<recipe>/step-N/        the same every `save_every` steps (and at the end),
                                         with optimizer.pt (plain tensors) to resume from
    orthoscope/<recipe>/                 the monitor's series run folder: the recipe measured against
                                         the base at every save while it trains (`orthoscope report`)
    lab.json                             settings, per-recipe losses, token counts, rel_delta, seconds

Every recipe of a run uses the same steps, learning rate, batch and token budget;
a rerun skips finished recipes and restarts an unfinished one from its last step.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from orthoscope.errors import OrthoscopeError
from orthoscope.evaluation.models import load_model
from orthoscope.lab.build import wrapped
from orthoscope.lab.corpus import make_world
from orthoscope.lab.recipes import RECIPES, Packed, pack
from orthoscope.lab.train import lr_at, optimizer_step
from orthoscope.monitor import Monitor
from orthoscope.monitor.monitor import AUTO
from orthoscope.pipeline.store import write_text

Log = Callable[[str], None]
PROJECTIONS = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o",
               "gate_proj": "gate", "up_proj": "up", "down_proj": "down"}
MARKER = "orthoscope_lab.json"
OPTIMIZER = "optimizer.pt"
MONITORED = "orthoscope"  # OUT/orthoscope/<recipe>/: the monitor's series run folder of each recipe


@dataclass(frozen=True)
class RealLabOptions:
    """Settings of one --base run (what `LabOptions` becomes with a base); invalid values raise OrthoscopeError.

    >>> RealLabOptions("some/base", steps=10).save_every
    1
    >>> RealLabOptions("some/base", lora=0)
    Traceback (most recent call last):
    ...
    orthoscope.errors.OrthoscopeError: bad --lora 0: the adapter rank must be a positive integer
    """

    base: str
    recipes: tuple[str, ...] = RECIPES
    steps: int = 200
    save_every: int | None = None
    lr: float = 1e-4
    batch: int = 4
    block: int = 64
    freeze_embeddings: bool = False
    lora: int | None = None
    seed: int = 0
    threads: int = 1
    world: dict | None = None

    def __post_init__(self) -> None:
        for name, value in (("--steps", self.steps), ("--batch", self.batch), ("--block", self.block),
                            ("--threads", self.threads)):
            if value <= 0:
                raise OrthoscopeError(f"bad {name} {value}: must be a positive integer")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise OrthoscopeError(f"bad --lr {self.lr}: must be a positive finite number")
        if self.lora is not None and self.lora <= 0:
            raise OrthoscopeError(f"bad --lora {self.lora}: the adapter rank must be a positive integer")
        if self.save_every is None:
            object.__setattr__(self, "save_every", max(1, self.steps // 10))
        if self.save_every <= 0:
            raise OrthoscopeError(f"bad --save-every {self.save_every}: must be a positive integer")
        unknown = [r for r in self.recipes if r not in RECIPES]
        if unknown or not self.recipes:
            raise OrthoscopeError(f"bad --recipe {', '.join(unknown) or '(none)'} (use {', '.join(RECIPES)})")
        object.__setattr__(self, "recipes", tuple(dict.fromkeys(self.recipes)))
        if self.world is None:  # a lab base records the world it was pretrained in; else the default world
            marker = Path(self.base) / MARKER
            spec = json.loads(marker.read_text()).get("world", {}) if marker.is_file() else {}
            object.__setattr__(self, "world", {"seed": spec.get("seed", 0), "max_operand": spec.get("max_operand", 99)})

    def settings(self) -> dict:
        """What must match for a rerun to resume (everything but the thread count)."""
        record = asdict(self)
        record.pop("threads")
        record["recipes"] = list(self.recipes)
        return record


def projections(model) -> dict[str, torch.Tensor]:
    """{name: weight} of the attention and MLP projection matrices (2-D) of a plain model.

    >>> from orthoscope.lab.shipped import shipped_family
    >>> len(projections(load_model(shipped_family()["base"])[0]))
    21
    """
    return {name: p for name, p in model.named_parameters()
            if p.ndim == 2 and name.endswith(".weight") and name.split(".")[-2] in PROJECTIONS}


def rel_delta(base: dict[str, torch.Tensor], post: dict[str, torch.Tensor]) -> dict:
    """Median over matrices (and per kind) of ||W_post - W_base||_F / ||W_base||_F.

    >>> w = {"l.q_proj.weight": torch.ones(2, 2)}
    >>> rel_delta(w, {"l.q_proj.weight": 1.5 * torch.ones(2, 2)})["median"]
    0.5
    """
    by_kind: dict[str, list[float]] = {}
    for name, w in base.items():
        value = float((post[name].double() - w.double()).norm() / w.double().norm())
        by_kind.setdefault(PROJECTIONS[name.split(".")[-2]], []).append(value)
    values = [v for vs in by_kind.values() for v in vs]
    return {"median": _sig(statistics.median(values)),
            "per_kind": {k: _sig(statistics.median(v)) for k, v in by_kind.items()}}


def _deltas_by_step(table) -> dict[str, float]:
    """{step: median rel_delta} of a monitor's series (`StepResult.logs`' overall median), steps in order."""
    import pandas as pd

    out = {}
    if "rel_delta" not in table:
        return out
    for label, rows in table.groupby("post", sort=False):
        values = pd.to_numeric(rows["rel_delta"], errors="coerce").dropna()
        if len(values):
            out[str(label).removeprefix("step-")] = _sig(float(values.median()))
    return dict(sorted(out.items(), key=lambda item: int(item[0]) if item[0].isdigit() else -1))


def _sig(value: float) -> float:
    return float(f"{value:.6g}")


def _post_weights(model, lora: bool) -> dict[str, torch.Tensor]:
    """Current projection weights of the trained model (LoRA deltas merged in, in a copy)."""
    if not lora:
        return {k: v.detach() for k, v in projections(model).items()}
    merged = copy.deepcopy(model).merge_and_unload()
    return {k: v.detach() for k, v in projections(merged).items()}


def _prepare(base, options: RealLabOptions):
    model = copy.deepcopy(base)
    if options.freeze_embeddings:
        for module in (model.get_input_embeddings(), model.get_output_embeddings()):
            if module is not None:
                module.weight.requires_grad_(False)
    if options.lora:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise OrthoscopeError("--lora needs peft: pip install 'orthoscope[lora]'") from None

        targets = sorted({n.split(".")[-1] for n, m in model.named_modules()
                          if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in PROJECTIONS})
        if not targets:
            raise OrthoscopeError("--lora: the base has no q/k/v/o/gate/up/down_proj linear layers to adapt")
        config = LoraConfig(r=options.lora, lora_alpha=2 * options.lora, lora_dropout=0.0, target_modules=targets)
        model = get_peft_model(model, config)
    return model


def _save(model, tokenizer, folder: Path, meta: dict, optimizer=None, base_source: str | None = None) -> None:
    """Write a checkpoint (or adapter) folder under a temporary name, then rename it into place."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if base_source is not None:  # an adapter: name the base it applies to
        config = json.loads((tmp / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = base_source
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2))
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER)
    (tmp / MARKER).write_text(json.dumps(meta, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def _latest_step(trajectory: Path) -> Path | None:
    steps = [p for p in trajectory.glob("step-*") if (p / MARKER).is_file() and (p / OPTIMIZER).is_file()]
    return max(steps, key=lambda p: int(p.name.split("-")[1]), default=None)


def _restore(model, optimizer, folder: Path, lora: bool) -> None:
    from safetensors.torch import load_file

    if lora:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(folder / "adapter_model.safetensors"))
    else:
        model.load_state_dict(load_model(folder)[0].state_dict())
    optimizer.load_state_dict(torch.load(folder / OPTIMIZER, weights_only=True))


def train_recipe(base, tokenizer, data: Packed, options: RealLabOptions, recipe: str, out: Path,
                 base_weights: dict, progress=None) -> dict:
    """Post-train a copy of `base` on `data`; writes out/<recipe> and its trajectory; returns its record.

    Resumes from the latest `trajectories/<recipe>/step-N` holding optimizer state (see build_real_lab).
    """
    torch.manual_seed(options.seed + RECIPES.index(recipe) + 1)
    model = _prepare(base, options)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=options.lr, weight_decay=0.0, betas=(0.9, 0.95))
    trajectory = out / "trajectories" / recipe
    adapter_base = str(Path(options.base).resolve()) if Path(options.base).exists() else options.base
    start, losses, resumed = 0, [], None
    latest = _latest_step(trajectory)
    if latest is not None:
        meta = json.loads((latest / MARKER).read_text())
        _restore(model, optimizer, latest, bool(options.lora))
        start, losses, resumed = meta["step"], meta["loss"], meta["step"]
    monitor = Monitor(base, out / MONITORED / recipe, background=AUTO)

    def arrived(done: int, measured) -> None:  # in line, or on the monitor's receiving thread; steps in order
        if measured is not None and progress and not progress.disable:
            for line in wrapped(f"  {recipe} {done}: {measured.brief()}"):
                progress.console.print(line, highlight=False, soft_wrap=True)

    started, step_seconds = time.time(), []
    task = progress.add_task(recipe, total=options.steps, completed=start) if progress else None
    warmup = min(50, options.steps // 10 + 1)
    model.train()
    with monitor:  # leaving (an interruption too) drains the queue: the last steps' analysis
        for step in range(start, options.steps):
            tick = time.time()
            inputs, targets = data.batch(step, options.batch)
            rate = lr_at(step, options.steps, options.lr, warmup)
            losses.append(round(optimizer_step(model, optimizer, trained, inputs, targets, rate), 5))
            step_seconds.append(time.time() - tick)
            done = step + 1
            if progress:
                progress.update(task, completed=done, description=f"{recipe} loss {losses[-1]:.3f}")
            if done % options.save_every == 0 or done == options.steps:  # measured in memory, as it trains
                monitor.observe(model, done, functools.partial(arrived, done))
                meta = {"stage": recipe, "step": done, "loss": losses, "world": options.world}
                _save(model, tokenizer, trajectory / f"step-{done}", meta, optimizer,
                      adapter_base if options.lora else None)
                for older in trajectory.glob(f"step-*/{OPTIMIZER}"):  # only the latest step is resumed from
                    if older.parent.name != f"step-{done}":
                        older.unlink()
    model.eval()
    trajectory_delta = _deltas_by_step(monitor.table)  # the series as the monitor holds it (a resume included)
    delta = rel_delta(base_weights, _post_weights(model, bool(options.lora)))
    record = {"steps": options.steps, "lr": options.lr, "tokens": data.tokens, "supervised_tokens": data.supervised,
              "loss": losses, "first_loss": losses[0], "final_loss": losses[-1], "rel_delta": delta["median"],
              "rel_delta_per_kind": delta["per_kind"], "rel_delta_by_step": trajectory_delta,
              "trained_parameters": sum(p.numel() for p in trained),
              "seconds": round(time.time() - started, 2), "resumed_from": resumed,
              "seconds_per_step": round(statistics.median(step_seconds), 3) if step_seconds else None}
    _save(model, tokenizer, out / recipe, {"stage": recipe, "world": options.world, **record}, None,
          adapter_base if options.lora else None)
    return record


def build_real_lab(options: RealLabOptions, out: str | Path, log: Log = print, show_progress: bool = True) -> dict:
    """Post-train every recipe of `options` from its base into `out` (or finish doing so); returns lab.json.

    >>> import tempfile
    >>> from orthoscope.lab.shipped import shipped_family
    >>> options = RealLabOptions(str(shipped_family()["base"]), ("control",), steps=1, batch=2, block=32)
    >>> record = build_real_lab(options, tempfile.mkdtemp(), log=lambda m: None, show_progress=False)
    >>> record["recipes"]["control"]["tokens"]
    64
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    torch.set_num_threads(options.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record_path = out / "lab.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if record and record.get("settings", {}) | {"recipes": []} != options.settings() | {"recipes": []}:
        raise OrthoscopeError(f"{record_path} was written with other settings; use another -o folder")
    record = {"settings": options.settings(), "torch": torch.__version__, "recipes": record.get("recipes", {})}
    todo = [r for r in options.recipes if not (out / r / MARKER).is_file() or r not in record["recipes"]]
    if not todo:
        log(f"all recipes already in {out}")
        return record
    loaded = time.time()
    base, tokenizer = load_model(options.base, "--base")
    log(f"base {options.base}: {sum(p.numel() for p in base.parameters()):,} parameters, "
        f"loaded in {time.time() - loaded:.1f} s")
    context = next((getattr(base.config, key) for key in ("max_position_embeddings", "n_positions", "n_ctx")
                    if isinstance(getattr(base.config, key, None), int)), None)
    if context is not None and options.block > context:
        raise OrthoscopeError(f"bad --block {options.block}: longer than the context of {options.base} "
                              f"({context} tokens); use --block {context} or less")
    base_weights = {k: v.detach().clone() for k, v in projections(base).items()}
    if not base_weights:
        raise OrthoscopeError(f"--base {options.base}: no attention/MLP projection matrices found")
    world = make_world(options.world["seed"], max_operand=options.world["max_operand"])
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not show_progress) as progress:
        for recipe in todo:
            data = pack(world, recipe, tokenizer, options.steps, options.batch, options.block, options.seed)
            for line in wrapped(f"{recipe}: {options.steps} steps x {options.batch} x {options.block} tokens "
                                f"({data.supervised:,} supervised), lr {options.lr}"
                                + (f", LoRA r={options.lora}" if options.lora else "")
                                + (", embeddings frozen" if options.freeze_embeddings else "")):
                log(line)
            record["recipes"][recipe] = train_recipe(base, tokenizer, data, options, recipe, out, base_weights,
                                                     progress)
            write_text(record_path, json.dumps(record, indent=2))
            log(f"  {recipe}: loss {record['recipes'][recipe]['first_loss']:.3f} -> "
                f"{record['recipes'][recipe]['final_loss']:.3f}, "
                f"rel_delta {record['recipes'][recipe]['rel_delta']:.4g}")
    return record
