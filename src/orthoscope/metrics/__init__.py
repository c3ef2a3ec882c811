"""Metrics of docs/method.md (SPEC): pure functions on tensors, each docstring states its formula.

All arithmetic is float64 unless the inputs were computed in a documented
faster mode; every function works on CPU or CUDA tensors alike. What each
table column is, and which route computes it, is in `orthoscope.metrics.registry`.
"""

from __future__ import annotations

import importlib

# name -> submodule; loaded on first use, so `orthoscope.metrics.registry` (the CLI's
# column lists) is importable without torch or scipy
_WHERE = {
    "delta": ("a_fro_minus_one", "a_fro_minus_one_from", "exact_difference", "noise_floor", "norms", "rank90",
              "rel_delta", "top_energy", "unchanged_mask"),
    "nulls": ("Pairing", "gauss_mean", "gauss_tail", "p_pair", "pairing"),
    "rotations": ("coherence", "fix_gauge", "inconsistency", "inconsistency_gap", "intruders", "leak", "overlaps",
                  "rotation_size", "separated_pairs"),
    "scaling": ("a_fro", "a_geo", "binned_ratios", "dispersion", "fit_resid", "ratios"),
    "spectra": ("effective_rank", "principal_angles", "stable_rank"),
    "symmetry": ("asym", "one_svd_form", "sym_frac"),
}
_MODULE = {name: module for module, names in _WHERE.items() for name in names}
__all__ = sorted(_MODULE)


def __getattr__(name: str):
    if name not in _MODULE:
        raise AttributeError(f"module 'orthoscope.metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"orthoscope.metrics.{_MODULE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
