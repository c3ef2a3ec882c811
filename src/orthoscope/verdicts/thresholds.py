"""The documented thresholds every verdict sentence is written from.

Each constant is reported in `verdicts["thresholds"]` so a reader can see what a
sentence rested on. Changing one changes the words, never the numbers.
"""

from __future__ import annotations

# False discovery rate of Benjamini-Hochberg over one post's usable matrices (defined in the leaf
# `metrics.levels`, so the note on p_pair's draw cap uses the same level)
from orthoscope.metrics.levels import Q_BH

CONSISTENT_SHARE = 0.5
"""'Consistent rotations' needs at least this share of the usable matrices BH-significant under the
pairing null..."""

Z_CI_LOW = 2.0
"""... and the lower end of the bootstrap 95 % interval of the median `z_pair` above this value
(the typical matrix, not a few outliers, sits 2 sd above the pairing null). With the share met but
the interval's lower end at or below this value the verdict is 'weakly consistent'."""

PARTIAL_SHARE = 0.1
"""With fewer than `MIN_SIGNIFICANT` matrices beyond the pairing null, at least this share BH-significant
under the Gaussian null reads 'above the Gaussian null only' (the update's shape, not agreeing
rotations)."""

MIN_MATRICES = 3
"""Fewer usable matrices than this in a group: the numbers are shown, no verdict is drawn."""

MIN_SIGNIFICANT = 2
"""Below `CONSISTENT_SHARE`, at least this many matrices BH-significant under the pairing null read
'consistent in a minority of matrices' whatever their share (the sentence gives the share: 'a minority:
11 of 210 matrices (5.2 %)'); one matrix is not a pattern. 'Above the Gaussian null only' needs as many
under the Gaussian null."""

MIN_CONTRAST = 6
"""Fewer paired matrices than this: no verdict against the control. With n pairs the smallest
two-sided sign-flip p-value is 2 / 2^n, which reaches `ALPHA_CONTRAST` only from n = 6 on."""

DISP_UNIFORM = 0.1
"""'Near-uniform scaling' needs the median `disp` (std of log s_p,i / s_b,i) below this (about a
+-10 % spread of the ratios around one factor)..."""

FIT_RESID_UNIFORM = 0.05
"""... and the median `fit_resid` (||s_p - a_geo s_b|| / ||s_p||) below this."""

ALPHA_CONTRAST = 0.05
"""A post differs from the control when the permutation p-value of the difference of medians is below
this (two-sided)."""

BOOTSTRAP_RESAMPLES = 2000
"""Resamples (over matrices, with replacement) for the 95 % interval of the median `z_pair`."""

PERMUTATIONS = 2000
"""Random relabellings (paired by matrix name: swaps within pairs) for the contrast with the control."""

SEED = 0
"""Seed of the bootstrap and of the permutations: verdicts are reproducible."""

THRESHOLDS = {
    "q_bh": Q_BH, "consistent_share": CONSISTENT_SHARE, "z_ci_low": Z_CI_LOW, "partial_share": PARTIAL_SHARE,
    "min_matrices": MIN_MATRICES, "min_significant": MIN_SIGNIFICANT, "min_contrast": MIN_CONTRAST,
    "disp_uniform": DISP_UNIFORM, "fit_resid_uniform": FIT_RESID_UNIFORM,
    "alpha_contrast": ALPHA_CONTRAST, "bootstrap_resamples": BOOTSTRAP_RESAMPLES, "permutations": PERMUTATIONS,
    "seed": SEED,
}
"""All of the above, as written into summary.json."""
