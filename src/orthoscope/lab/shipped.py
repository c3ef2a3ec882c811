"""The shipped default: the tiny lab family (base, instruct, cot, control) as package data.

Made by `scripts/make_default.py`, which records its seed, command and every file's
sha256 in `manifest.json`, so anyone can regenerate it and check it bit for bit.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

from orthoscope.errors import OrthoscopeError

FAMILY = ("base", "instruct", "cot", "control")


def shipped_root() -> Path:
    return Path(str(resources.files("orthoscope") / "data" / "lab-tiny"))


def manifest() -> dict:
    path = shipped_root() / "manifest.json"
    if not path.is_file():
        raise OrthoscopeError(f"the shipped default family is missing ({path}); run scripts/make_default.py")
    return json.loads(path.read_text())


def shipped_family() -> dict[str, Path]:
    """{name: folder} of the shipped models.

    >>> sorted(shipped_family())
    ['base', 'control', 'cot', 'instruct']
    """
    manifest()
    return {name: shipped_root() / name for name in FAMILY}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify_shipped() -> list[str]:
    """Files whose bytes differ from the manifest (empty when all match)."""
    root = shipped_root()
    return [name for name, digest in manifest()["files"].items() if sha256(root / name) != digest]


def shipped_evaluation() -> dict:
    """The shipped family's evaluation (eval.json) with what each number was measured on.

    Per model: each accuracy with its n and Wilson 95 % interval (`task`, `task:n`, `task:lo`,
    `task:hi`), `ppl` with `ppl:block` (tokens per scored block: the preset's training length) and
    `ppl:text` (`text_digest` of the held-out text).

    >>> row = shipped_evaluation()["instruct"]
    >>> row["lab-facts"], row["lab-facts:n"], row["ppl:block"]
    (0.4, 100, 64)
    """
    from orthoscope.evaluation.stats import Accuracy
    from orthoscope.lab.build import lab_world
    from orthoscope.lab.corpus import held_out_text
    from orthoscope.lab.presets import get_preset

    record = manifest()
    preset = get_preset(record["preset"])
    text = text_digest(held_out_text(lab_world(shipped_root() / "base", record["seed"]), record["seed"]))
    out = {}
    for model, scores in record["eval"].items():
        row = {}
        for task, value in scores.items():
            if task == "ppl":
                row.update({"ppl": value, "ppl:block": preset.block, "ppl:text": text})
            else:
                row.update(Accuracy(round(value * preset.eval_problems), preset.eval_problems).fields(task))
        out[model] = row
    return out


def text_digest(text: str) -> str:
    """sha256 of `text`, first 16 hex digits (the experiment's key records its text the same way).

    >>> text_digest("abc")
    'ba7816bf8f01cfea'
    """
    return hashlib.sha256(text.encode()).hexdigest()[:16]
