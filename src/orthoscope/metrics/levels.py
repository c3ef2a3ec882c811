"""The levels and counts the p-values are read at: BH's false discovery rate, p_pair's sign-draw counts.

A leaf (it imports nothing), below every user: the verdicts (`verdicts.thresholds`), p_pair and the note
on its draw cap (`metrics.nulls`), and the CLI's help, which imports neither torch nor numpy.
"""

Q_BH = 0.05
"""False discovery rate of the Benjamini-Hochberg procedure applied to `p_pair` (and `p_gauss`) over
the usable matrices of one post (one family per post); a kind counts the post's discoveries among its
matrices, so the kinds' counts add up to the post's."""

PAIR_DRAWS = 1024
"""p_pair's first round of sign draws (the least a cap may be; `metrics.nulls.pair_tail` has the rule)."""

PAIR_MAX_DRAWS = 2**20
"""The most sign draws p_pair's rule takes (the most a cap may be)."""

MONITOR_PAIR_DRAWS = 4096
"""The Monitor's cap on p_pair's draws (SPEC's count): p_pair >= 1/4097, so BH at Q_BH still flags one
matrix among about 200."""
