"""Issue 23 item 3: verdict sentences that say no more and no less than the numbers."""

import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from orthoscope.verdicts import compute_verdicts
from orthoscope.verdicts.stats import holm
from orthoscope.verdicts.text import apart, share_words
from tests.verdicts.test_verdicts import KINDS, make_post

STRONG = ("q", "k", "v")  # the kinds holding the planted consistent matrices


def minority(seed=0, layers=30, hits=(4, 4, 3)):
    """210 matrices (30 layers x 7 kinds), 11 of them far beyond the pairing null, all in q, k and v."""
    def z(rng, n):
        values = rng.normal(0, 1, n)
        kinds = np.array(KINDS * layers)
        for kind, count in zip(STRONG, hits):
            values[np.flatnonzero(kinds == kind)[:count]] = rng.uniform(5, 7.8, count)
        return values
    return make_post("instruct", z, p_gauss=0.5, seed=seed, layers=layers)


def test_a_minority_is_named_the_same_way_overall_and_per_kind():
    entry = compute_verdicts(minority())["posts"]["instruct"]
    overall = entry["overall"]["rotation"]
    kinds = {kind: g["rotation"] for kind, g in entry["kinds"].items()}
    # one BH family per post: the kinds' discoveries add up to the post's
    assert overall["bh_pair"] == sum(r["bh_pair"] for r in kinds.values()) == 11
    assert overall["n_p_pair"] == 210
    assert overall["verdict"] == "partial"
    sentence = entry["sentences"]["rotation"]
    assert "a minority: 11 of 210 matrices (5.2 %) beyond the pairing null" in sentence
    assert "in q (4 of 30), k (4 of 30), v (3 of 30)" in sentence
    assert "no sign" not in sentence
    for kind in STRONG:
        assert kinds[kind]["verdict"] == "partial"
        assert "consistent in a minority" in entry["kinds"][kind]["sentence"]
    assert all(kinds[k]["verdict"] in ("none", "shape-only") for k in KINDS if k not in STRONG)


@pytest.mark.parametrize("seed", range(6))
def test_no_kind_claims_more_than_the_post(seed):
    rng = np.random.default_rng(seed)
    table = minority(seed=seed, layers=int(rng.integers(3, 12)), hits=tuple(rng.integers(0, 3, 3)))
    entry = compute_verdicts(table)["posts"]["instruct"]
    rotations = [g["rotation"]["verdict"] for g in entry["kinds"].values()]
    if any(v in ("partial", "consistent", "weak") for v in rotations):
        assert entry["overall"]["rotation"]["verdict"] in ("partial", "consistent", "weak")
    else:
        assert entry["overall"]["rotation"]["verdict"] in ("none", "shape-only", "partial")


def test_every_scaling_sentence_has_the_update_size_and_its_reference():
    table = make_post("post", 12.0).assign(rel_delta=0.0015)
    entry = compute_verdicts(table)["posts"]["post"]
    assert "update size: median rel_delta 0.15 %" in entry["sentences"]["scaling"]
    assert "a random update of the same size gives disp 0.05" in entry["sentences"]["scaling"]
    assert all("rel_delta 0.15 %" in g["sentence"] for g in entry["kinds"].values())
    bare = table.drop(columns=["a_geo_null", "disp_null", "fit_resid_null"])
    sentence = compute_verdicts(bare)["posts"]["post"]["sentences"]["scaling"]
    assert "update size: median rel_delta 0.15 %" in sentence
    assert "no random-update null in this run: the reference is the thresholds" in sentence


def test_compared_numbers_get_the_digits_their_difference_needs():
    assert apart(0.5012, 0.5009, 0.5009) == ["0.5012", "0.5009", "0.5009"]
    assert apart(0.50123, 0.50121) == ["0.50123", "0.50121"]
    assert apart(0.52, 0.49) == ["0.52", "0.49"]
    table = make_post("post", 3.0)
    table["sym_frac"], table["sym_frac_pair_null"], table["sym_frac_null"] = 0.5012, 0.5009, 0.50091
    sentence = compute_verdicts(table)["posts"]["post"]["sentences"]["rotation"]
    assert "median sym_frac 0.5012 vs pairing null 0.5009 and Gaussian null 0.50091" in sentence


def test_share_words_follow_one_rule():
    assert share_words(11, 210) == "a minority: 11 of 210 matrices (5.2 %)"
    assert share_words(1, 21) == "1 of 21 matrices (4.8 %)"
    assert share_words(0, 21) == "none of 21 matrices"
    assert share_words(11, 21).startswith("a majority: 11 of 21")
    assert share_words(21, 21) == "all 21 of 21 matrices (100 %)"


def test_holm_matches_the_step_down_rule():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    m = p.size
    order = np.argsort(p)
    expected = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):  # independent loop form of Holm's adjustment
        running = max(running, min(1.0, (m - rank) * p[i]))
        expected[i] = running
    assert holm(p) == pytest.approx(expected)
    assert holm(np.array([])).size == 0


def test_control_contrasts_are_holm_adjusted_and_name_one_training_run():
    control = make_post("control", lambda rng, n: rng.normal(0, 1, n), seed=6)
    posts = [make_post(f"p{i}", lambda rng, n: rng.normal(0.6, 1, n), seed=10 + i) for i in range(4)]
    verdicts = compute_verdicts(pd.concat([control, *posts]))
    assert verdicts["multiplicity"]["tests"]["post"] == 8  # 4 posts x (z_pair, sym_frac)
    raw, adjusted = [], []
    for post in ("p0", "p1", "p2", "p3"):
        c = verdicts["posts"][post]["overall"]["contrast"]
        raw += [c["p_z_pair"], c["p_sym_frac"]]
        adjusted += [c["p_z_pair_holm"], c["p_sym_frac_holm"]]
        assert c["verdict"] == ("same" if c["p_z_pair_holm"] >= 0.05 else "more" if c["z_pair_diff"] > 0 else "less")
        sentence = verdicts["posts"][post]["sentences"]["control"]
        assert "one training run each" in sentence
        assert re.search(r"p = [\d.e-]+, Holm [\d.e-]+", sentence)
    assert adjusted == pytest.approx(holm(np.array(raw)).tolist())
    p3 = verdicts["posts"]["p3"]["overall"]["contrast"]  # raw p 0.016 alone would say "more"; Holm over 8 does not
    assert p3["p_z_pair"] < 0.05 <= p3["p_z_pair_holm"] and p3["verdict"] == "same"


def test_a_metric_set_without_the_null_names_the_option():
    quick = make_post("post", 3.0)[["post", "name", "layer", "kind", "changed", "at_noise_floor", "rel_delta"]]
    entry = compute_verdicts(quick, metrics="quick")["posts"]["post"]
    assert entry["sentences"]["rotation"].startswith(
        "Rotations: no verdict: this run used --metrics quick, which does not compute z_pair, p_pair: "
        "rerun compare with --metrics all")
    assert "--metrics quick" in entry["sentences"]["scaling"]
    assert "older orthoscope" not in entry["sentences"]["rotation"]


def test_p_values_of_the_pairing_null_drive_bh_per_post_not_per_kind():
    # all q matrices at p = 0.01: BH per kind would reject all 4; over the post's 28 it rejects none
    table = make_post("post", 0.0)
    table["p_pair"] = np.where(table.kind == "q", 0.01, 0.9)
    table["z_pair"] = norm.isf(table["p_pair"])
    rotation = compute_verdicts(table)["posts"]["post"]["kinds"]["q"]["rotation"]
    assert rotation["bh_pair"] == 0
