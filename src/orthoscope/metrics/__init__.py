"""Metrics of SPEC.md: pure functions on tensors, each docstring states its formula.

All arithmetic is float64 unless the inputs were computed in a documented
faster mode; every function works on CPU or CUDA tensors alike.
"""

from orthoscope.metrics.rotations import (
    coherence,
    fix_gauge,
    inconsistency,
    intruders,
    leak,
    overlaps,
    rotation_size,
)
from orthoscope.metrics.scaling import a_fro, a_geo, binned_ratios, dispersion, fit_resid, ratios
from orthoscope.metrics.spectra import effective_rank, principal_angles, stable_rank
from orthoscope.metrics.symmetry import asym, one_svd_form, sym_frac

__all__ = [
    "a_fro", "a_geo", "asym", "binned_ratios", "coherence", "dispersion", "effective_rank",
    "fit_resid", "fix_gauge", "inconsistency", "intruders", "leak", "one_svd_form", "overlaps",
    "principal_angles", "ratios", "rotation_size", "stable_rank", "sym_frac",
]
