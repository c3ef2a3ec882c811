"""Load a checkpoint folder as a transformers model and tokenizer, for evaluation."""

from __future__ import annotations

import pickle
from pathlib import Path

from orthoscope.errors import SourceError, reason


def load_model(path: str | Path):
    """(model, tokenizer) in eval mode, float32, on CPU; one-line errors for damaged folders.

    >>> from orthoscope.lab.shipped import shipped_family
    >>> model, tok = load_model(shipped_family()["instruct"])
    >>> model.config.model_type, model.training
    ('llama', False)
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()
    path = Path(path)
    if not (path / "config.json").is_file():
        raise SourceError(f"no config.json in {path}: not a model folder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, EOFError, SafetensorError,
            pickle.UnpicklingError) as error:  # damaged or truncated files, unreadable config or tokenizer
        raise SourceError(f"cannot load the model in {path}: {reason(error)}") from None
    model.eval()
    return model, tokenizer
