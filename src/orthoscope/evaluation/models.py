"""Model loading: a checkpoint folder, a weights file, a GGUF file or a hub id as a transformers model.

`load_model` is the transformers loader (`orthoscope eval`, `lab --base`, the interventions and
scripts/recipes/* load through it); `load_for_scoring` (the intervention experiment) reads a small
plain-Llama folder without transformers and anything else through `load_model`.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from orthoscope.errors import SourceError, reason


def load_model(source: str | Path, option: str | None = None):
    """(model, tokenizer) in eval mode, float32, on CPU; one-line errors (naming `option`) for bad sources.

    A folder needs config.json, or exactly one .gguf file; a .gguf file is dequantized
    to float32 (and loses its quantization marker, so the model saves as safetensors);
    anything else that is not a path but looks like `owner/name` is a hub id. A
    tokenizer without a padding token pads with its end-of-text token.

    >>> from orthoscope.lab.shipped import shipped_family
    >>> model, tok = load_model(shipped_family()["instruct"])
    >>> model.config.model_type, model.training
    ('llama', False)
    >>> load_model("/nonexistent/model", "--base")
    Traceback (most recent call last):
    ...
    orthoscope.errors.SourceError: --base /nonexistent/model: no such file or folder (nor a hub id owner/name)
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()
    target, kwargs = _locate(source, f"{option} " if option else "")
    try:
        tokenizer = AutoTokenizer.from_pretrained(target, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(target, dtype="float32", **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, EOFError, SafetensorError,
            pickle.UnpicklingError) as error:  # damaged or truncated files, unreadable config or tokenizer
        where = f"{option} " if option else ""
        raise SourceError(f"{where}cannot load the model in {source}: {reason(error)}") from None
    if kwargs:  # GGUF: weights are dequantized to float32 already; drop the marker so they can be saved
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def load_for_scoring(source: str | Path, option: str | None = None):
    """`load_model`, or for a small plain-Llama checkpoint folder (the lab's) a `SmallLlama` and its tokenizer.

    Both give the same logits, greedy answers, attentions and hidden states bit for bit;
    the small path does not import transformers, whose import costs more CPU than scoring
    a lab model (docs/benchmarks.md). Used where a model is only scored, under
    `torch.no_grad()` (the intervention experiment).

    >>> from orthoscope.lab.shipped import shipped_family
    >>> type(load_for_scoring(shipped_family()["instruct"])[0]).__name__
    'SmallLlama'
    """
    from orthoscope.evaluation.small_llama import load_small_llama

    small = load_small_llama(source) if Path(source).is_dir() else None
    return small if small is not None else load_model(source, option)


def _locate(source: str | Path, prefix: str) -> tuple[str, dict]:
    """What transformers loads for `source`: (folder or hub id, {"gguf_file": name} for a GGUF)."""
    path = Path(source)
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), {"gguf_file": path.name}
    if path.is_file():
        return str(path.parent), {}
    if path.is_dir():
        if (path / "config.json").is_file():
            return str(path), {}
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) != 1:
            raise SourceError(f"{prefix}no config.json in {source} and {len(ggufs)} .gguf files: not a model folder")
        return str(path), {"gguf_file": ggufs[0].name}
    if path.exists():
        raise SourceError(f"{prefix}{source} is neither a file nor a folder")
    if str(source).startswith((".", "/", "~")) or str(source).count("/") != 1:
        raise SourceError(f"{prefix}{source}: no such file or folder (nor a hub id owner/name)")
    return str(source), {}
