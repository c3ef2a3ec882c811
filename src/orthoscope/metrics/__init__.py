"""Metrics of docs/method.md (SPEC): pure functions on tensors, each docstring states its formula.

All arithmetic is float64 unless the inputs were computed in a documented
faster mode; every function works on CPU or CUDA tensors alike. What each
table column is, and which route computes it, is in `orthoscope.metrics.registry`.
"""

from orthoscope.metrics.delta import a_fro_minus_one, exact_difference, noise_floor, rank90, rel_delta, unchanged_mask
from orthoscope.metrics.nulls import Pairing, gauss_mean, gauss_tail, p_pair, pairing
from orthoscope.metrics.rotations import (
    coherence,
    fix_gauge,
    inconsistency,
    inconsistency_gap,
    intruders,
    leak,
    overlaps,
    rotation_size,
    separated_pairs,
)
from orthoscope.metrics.scaling import a_fro, a_geo, binned_ratios, dispersion, fit_resid, ratios
from orthoscope.metrics.spectra import effective_rank, principal_angles, stable_rank
from orthoscope.metrics.symmetry import asym, one_svd_form, sym_frac

__all__ = [
    "Pairing", "a_fro", "a_fro_minus_one", "a_geo", "asym", "binned_ratios", "coherence", "dispersion",
    "effective_rank", "exact_difference", "fit_resid", "fix_gauge", "gauss_mean", "gauss_tail", "inconsistency",
    "inconsistency_gap", "intruders", "leak", "noise_floor", "one_svd_form", "overlaps", "p_pair", "pairing",
    "principal_angles", "rank90", "ratios", "rel_delta", "rotation_size", "separated_pairs", "stable_rank",
    "sym_frac", "unchanged_mask",
]
