"""docs/method.md states every exclusion rule and cut-off the code applies, with the code's own constants."""

import math
from pathlib import Path

import pytest
import torch

from orthoscope.metrics import nulls, ratios, separated_pairs
from orthoscope.metrics.columns import INTRUDER_EPS, INTRUDER_K, TOP_K
from orthoscope.metrics.delta import NOISE_FLOOR
from orthoscope.metrics.rotations import GAP_MIN, GAUGE_RTOL, RANK_RTOL, numerical_rank, undefined_vectors
from orthoscope.metrics.scaling import RHO_FLOOR
from orthoscope.pipeline.measure import RATIO_BINS

METHOD = (Path(__file__).parents[2] / "docs" / "method.md").read_text()


def num(x: float) -> str:
    """A constant as method.md writes it: 1e-6, 1e-5, 0.05, 1000."""
    if x < 1e-3:
        mantissa, exponent = f"{x:.0e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{x:g}"


PHRASES = {
    "scaling keeps base indices": f"`s_b,i > {num(RHO_FLOOR)} s_b,1`",
    "scaling keeps post indices": f"`s_p,i > {num(RHO_FLOOR)} s_p,1`",
    "ratio curve bins": f"binned into {RATIO_BINS} index quantiles",
    "gauge blocks (rot, interventions)": f"within `{num(GAUGE_RTOL)} s_p,1`",
    "numerical rank": f"the number of `s_i > {num(RANK_RTOL)} s_1`",
    "gap-aware pairs": f"exceeds {num(GAP_MIN)} (where vectors are well defined",
    "noise floor": f"`‖dW‖_F < {num(NOISE_FLOOR)} · eps · ‖W_b‖_F`",
    "top block": f"`k = min(r, {TOP_K})`",
    "intruders": f"among the top {INTRUDER_K} post left vectors",
    "intruder cosine": f"is below {num(INTRUDER_EPS)}",
    "p_pair first draws": f"the first {nulls.PAIR_DRAWS} draws",
    "p_pair hits": f"until {nulls.PAIR_HITS} draws at or beyond `T`",
    "p_pair interval": f"a {nulls.PAIR_CONFIDENCE:.0%} Clopper-Pearson interval",
    "p_pair range": f"surely above {num(nulls.PAIR_P_HIGH)} or surely below {num(nulls.PAIR_P_LOW)}",
    "p_pair cap": f"or 2^{int(math.log2(nulls.PAIR_MAX_DRAWS))} draws",
    "p_pair bound": f"surely below {num(nulls.PAIR_P_LOW)} and `p_pair` is that bound",
}


@pytest.mark.parametrize("rule", PHRASES)
def test_method_states_the_rule_with_the_codes_constant(rule):
    assert PHRASES[rule] in METHOD, f"docs/method.md does not say {PHRASES[rule]!r} ({rule})"


def test_the_constants_are_the_ones_the_code_applies():
    s_b = torch.tensor([1.0, 0.5, 0.9 * RHO_FLOOR, 0.2], dtype=torch.float64)
    s_p = torch.tensor([2.0, 1.0, 1.0, 0.9 * RHO_FLOOR * 2], dtype=torch.float64)
    assert ratios(s_b, s_p).tolist() == [2.0, 2.0]  # index 2 fails the base rule, index 3 the post rule
    s1 = 10.0 * (1 - 1.1 * GAP_MIN)
    s = torch.tensor([10.0, s1, s1 * (1 - 0.9 * GAP_MIN), 1.0, 0.0])
    # 0: one neighbour, far enough; 1 and 2: 0.9 GAP_MIN apart; 3: far from both; 4: s = 0 never counts
    assert separated_pairs(s).tolist() == [0, 3]


def test_the_numerical_rank_rule_is_the_one_the_code_applies():
    s = torch.tensor([1.0, 1.1 * RANK_RTOL, 0.9 * RANK_RTOL], dtype=torch.float64)
    assert numerical_rank(s) == 2 and numerical_rank(s[:2]) == 2
    families, note = undefined_vectors(s, s[[0, 0, 0]])  # the base is rank-deficient: every vector column goes
    assert families == {"rotation", "angles", "symmetry", "nulls"} and "numerical rank 2 < r = 3" in note
    families, note = undefined_vectors(s[[0, 0, 0]], s)  # only the post: its rotations and angles
    assert families == {"rotation", "angles"} and note.startswith("post has numerical rank 2")
    assert undefined_vectors(s[:2], s[:2]) == (frozenset(), "")
