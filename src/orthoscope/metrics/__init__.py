"""Metrics of docs/method.md (SPEC): pure functions on tensors, each docstring states its formula.

All arithmetic is float64 unless the inputs were computed in a documented
faster mode; every function works on CPU or CUDA tensors alike. What each
table column is, and which route computes it, is in `orthoscope.metrics.registry`.
"""

from __future__ import annotations

from orthoscope._lazy import lazy_exports

# name -> submodule; loaded on first use, so `orthoscope.metrics.registry` (the CLI's
# column lists) is importable without torch or scipy
_WHERE = {
    "delta": ("a_fro_minus_one_from", "difference_dtype", "exact_difference", "noise_floor", "norms",
              "rank90",
              "rel_delta", "top_energy", "unchanged_mask"),
    "nulls": ("Pairing", "gauss_mean", "gauss_tail", "p_pair", "pairing", "pairing_and_sym_frac"),
    "rotations": ("coherence", "fix_gauge", "inconsistency", "inconsistency_gap", "intruders", "leak", "overlaps",
                  "rotation_size", "separated_pairs"),
    "scaling": ("a_fro", "a_geo", "binned_ratios", "dispersion", "fit_resid", "ratios", "scaling_fit"),
    "spectra": ("coordinate_angles", "effective_rank", "principal_angles", "stable_rank"),
    "symmetry": ("asym", "one_svd_form", "sym_frac"),
}

__getattr__, __dir__, __all__ = lazy_exports("orthoscope.metrics", _WHERE)
