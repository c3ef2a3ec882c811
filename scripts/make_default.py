"""Regenerate the shipped default family (src/orthoscope/data/lab-tiny) from its seed.

    .venv/bin/python scripts/make_default.py            # about 2 minutes on 2 CPU cores

It runs the tiny lab preset, copies base/instruct/cot/control (config, safetensors,
tokenizer) into the package, and records the command, seed, versions and each file's
sha256 in manifest.json. Same seed, same torch build, same CPU kind -> same bytes.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from orthoscope.lab.build import build_lab
from orthoscope.lab.presets import PRESETS
from orthoscope.lab.shipped import FAMILY, sha256, shipped_root

KEEP = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
        "orthoscope_lab.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    target = shipped_root()
    with tempfile.TemporaryDirectory() as tmp:
        evaluation = build_lab(PRESETS["tiny"], Path(tmp), seed=args.seed)
        shutil.rmtree(target, ignore_errors=True)
        for name in FAMILY:
            (target / name).mkdir(parents=True)
            for file in KEEP:
                if (Path(tmp) / name / file).is_file():
                    shutil.copy(Path(tmp) / name / file, target / name / file)
        shutil.copy(Path(tmp) / "lab.json", target / "lab.json")
    files = {str(p.relative_to(target)): sha256(p) for p in sorted(target.rglob("*")) if p.is_file()}
    record = {
        "command": f"python scripts/make_default.py --seed {args.seed:d}",
        "preset": "tiny",
        "seed": args.seed,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "threads": PRESETS["tiny"].threads,
        "eval": evaluation,
        "files": files,
    }
    (target / "manifest.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {len(files)} files to {target}")


if __name__ == "__main__":
    main()
