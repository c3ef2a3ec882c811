"""The singular values of every linear matrix of one checkpoint (no pair needed)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from orthoscope.architectures import find_matrices, read_matrix
from orthoscope.errors import PairingError, SourceError
from orthoscope.kernels import resolve_device, singular_values
from orthoscope.kernels.threads import light
from orthoscope.pipeline.checks import nonfinite_count
from orthoscope.pipeline.pairing import select
from orthoscope.sources import open_checkpoint
from orthoscope.tuning import process_tuned


def spectra(
    model: str | Path,
    *,
    layers: set[int] | str | None = None,
    kinds: set[str] | str | None = None,
    include_embeddings: bool = False,
    device: str = "cpu",
    revision: str | None = None,
) -> dict[str, torch.Tensor]:
    """Matrix name -> singular values (float64, descending, on CPU), read one matrix at a time.

    Uses the cheapest exact route (`orthoscope.kernels.singular_values`): the
    float64 Gram eigenvalues where they are accurate, svdvals elsewhere.

    >>> s = spectra("./base", kinds={"q", "o"})     # doctest: +SKIP
    >>> s["model.layers.0.self_attn.q_proj"][:3]    # doctest: +SKIP
    """
    from orthoscope.pipeline.options import CompareOptions

    chosen = CompareOptions(layers=layers, kinds=kinds, device=device)  # the same checks as compare
    ckpt = open_checkpoint(model, revision)
    refs, _ = find_matrices(ckpt, include_embeddings)
    refs = select(refs, None if chosen.layers is None else set(chosen.layers),
                  None if chosen.kinds is None else set(chosen.kinds))
    if not refs:
        raise PairingError(f"no matrices to analyse in {ckpt.spec} with these filters")
    dev = resolve_device(device)
    # tuned: torch at one thread between the eigensolves, which get every thread (kernels.threads)
    with light() if process_tuned() else contextlib.nullcontext():
        return {ref.name: _values(read_matrix(ckpt, ref), ref.name, dev) for ref in refs}


def _values(W: torch.Tensor, name: str, device: torch.device) -> torch.Tensor:
    bad = nonfinite_count(W)
    if bad:
        raise SourceError(f"{name}: {bad} NaN/Inf entries")
    return singular_values(W, device).cpu()
