"""Load a checkpoint folder as a transformers model and tokenizer, for evaluation."""

from __future__ import annotations

from pathlib import Path

from orthoscope.errors import SourceError


def load_model(path: str | Path):
    """(model, tokenizer) in eval mode, float32, on CPU.

    >>> model, tok = load_model("lab/tiny/instruct")   # doctest: +SKIP
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()
    path = Path(path)
    if not (path / "config.json").is_file():
        raise SourceError(f"no config.json in {path}: not a model folder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    except (OSError, ValueError) as err:
        raise SourceError(f"cannot load model from {path}: {str(err).splitlines()[0]}") from None
    model.eval()
    return model, tokenizer
