"""Verdicts from synthetic tables whose truth is planted: consistent, magnitude-only, unchanged, control."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from orthoscope.errors import OrthoscopeError
from orthoscope.verdicts import compute_verdicts, verdict_html, verdict_lines
from orthoscope.verdicts.stats import bh_count, bootstrap_median_ci, permutation_p

KINDS = ["q", "k", "v", "o", "gate", "up", "down"]


def make_post(post, z_pair, *, p_gauss=None, changed=True, floor=False, disp=0.02, layers=4, seed=0):
    """One row per (layer, kind): z_pair given per row (or a callable of the rng), p_pair its normal tail."""
    rng = np.random.default_rng(seed)
    n = layers * len(KINDS)
    z = z_pair(rng, n) if callable(z_pair) else np.full(n, float(z_pair))
    frame = pd.DataFrame({
        "post": post, "step": pd.array([pd.NA] * n, dtype="Int64"),
        "name": [f"model.layers.{l}.{k}.weight" for l in range(layers) for k in KINDS],
        "layer": [l for l in range(layers) for _ in KINDS], "kind": KINDS * layers,
        "expert": pd.array([pd.NA] * n, dtype="Int64"),
        "a_geo": rng.normal(1.01, 0.002, n), "a_fro": 1.01, "disp": rng.normal(disp, disp / 10, n),
        "fit_resid": rng.normal(disp / 2, disp / 20, n),
        "a_geo_null": 1.01, "disp_null": 0.05, "fit_resid_null": 0.03,
        "sym_frac": 0.55 + 0.01 * z, "sym_frac_null": 0.5, "sym_frac_pair_null": 0.55,
        "z_pair": z, "p_pair": norm.sf(z),
        "p_gauss": p_gauss if p_gauss is not None else norm.sf(z + 3),
        "z_gauss": 3.0, "sym_frac_top": 0.6, "z_pair_top": z,
        "changed": changed, "at_noise_floor": floor, "rel_delta": 0.01,
    })
    if not changed:
        for column in ("sym_frac", "sym_frac_pair_null", "z_pair", "p_pair", "p_gauss", "z_gauss", "z_pair_top"):
            frame[column] = np.nan
    return frame


def numbers_of(text):
    return [float(t) for t in re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", text)]


def dict_numbers(value):
    if isinstance(value, dict):
        return [x for v in value.values() for x in dict_numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in dict_numbers(v)]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    return []


def assert_numbers_in_dict(text, *scopes):
    known = [x for scope in scopes for x in dict_numbers(scope)]
    known += [100 * x for x in known] + [95.0]  # percentages (shares, rel_delta); "95% interval"
    for number in numbers_of(text):
        assert any(abs(number - x) <= 0.006 * abs(x) + 1e-12 for x in known), (number, text)


def test_consistent_plant_is_named_and_only_it():
    table = pd.concat([make_post("plant", 12.0), make_post("isotropic", lambda rng, n: rng.normal(0, 1, n), seed=1)])
    verdicts = compute_verdicts(table)
    plant, iso = verdicts["posts"]["plant"], verdicts["posts"]["isotropic"]
    assert plant["overall"]["rotation"]["verdict"] == "consistent"
    assert plant["overall"]["rotation"]["bh_pair"] == 28 and plant["overall"]["rotation"]["n_p_pair"] == 28
    assert plant["overall"]["rotation"]["z_pair_ci"] == [12.0, 12.0]
    assert plant["sentences"]["rotation"].startswith(
        "Rotations: consistent: all 28 of 28 matrices (100 %) beyond the pairing null")
    assert iso["overall"]["rotation"]["verdict"] not in ("consistent", "partial")
    assert "consistent:" not in iso["sentences"]["rotation"]
    assert all(k["rotation"]["verdict"] == "consistent" for k in plant["kinds"].values())
    assert plant["overall"]["scaling"]["verdict"] == "uniform"
    assert "more uniform than a random update" in plant["sentences"]["scaling"]


def test_magnitude_only_plant_is_not_beyond_the_pairing_null():
    # sym_frac clearly above the Gaussian null (p_gauss tiny) but the signs of D_ij and D_ji independent
    table = make_post("magnitude", lambda rng, n: rng.normal(0, 1, n), p_gauss=1e-8, seed=3)
    verdict = compute_verdicts(table)["posts"]["magnitude"]
    rotation = verdict["overall"]["rotation"]
    assert rotation["verdict"] == "shape-only"
    assert rotation["bh_gauss"] == 28 and rotation["bh_pair"] <= 2  # BH false discoveries stay rare
    lo, hi = rotation["z_pair_ci"]
    assert lo < 0 < hi
    assert "Rotations: above the Gaussian null only: 1 of 28 matrices (3.6 %) beyond the pairing null" in \
        verdict["sentences"]["rotation"]
    assert "above the Gaussian null" in verdict["sentences"]["rotation"]


def test_post_identical_to_base_says_so_in_one_line():
    verdicts = compute_verdicts(make_post("self", 0.0, changed=False))
    entry = verdicts["posts"]["self"]
    assert entry["overall"]["n_changed"] == 0 and entry["overall"]["rotation"]["verdict"] == "unchanged"
    assert entry["sentences"]["rotation"] == "Post identical to base: no matrix changed (n = 28)."
    lines = verdict_lines(verdicts)
    assert lines == ["self: 28 matrices, 0 changed, 0 at the noise floor",
                     "  Post identical to base: no matrix changed (n = 28)."]


def test_noise_floor_matrices_are_left_out():
    table = make_post("post", 12.0)
    table.loc[table.kind != "q", "at_noise_floor"] = True
    table.loc[table.kind != "q", "z_pair"] = -5.0  # would spoil the verdict if counted
    overall = compute_verdicts(table)["posts"]["post"]["overall"]
    assert overall["n_noise_floor"] == 24 and overall["n_used"] == 4
    assert overall["rotation"]["n"] == 4 and overall["rotation"]["z_pair"] == 12.0
    table["at_noise_floor"] = True
    entry = compute_verdicts(table)["posts"]["post"]
    assert entry["sentences"]["rotation"].startswith("No matrix changed beyond the noise floor: 28 of 28")


def test_the_cap_note_counts_the_matrices_bh_runs_over():
    """p_pair's cap note and the verdicts' BH share one family (`bh_family`): 300 matrices with a p_pair, 100
    of them at the noise floor, leave 200 for BH, and BH at a 4096-draw cap flags one matrix at its floor
    among 200 (not among 300). The note counted all 300 before ("2 or more at a time")."""
    from orthoscope.metrics.levels import Q_BH
    from orthoscope.pipeline.summary import p_pair_notes
    from orthoscope.verdicts.compute import bh_family
    from orthoscope.verdicts.stats import bh_reject

    table = make_post("sft", 8.0, layers=43).iloc[:300].copy()
    table["p_pair"] = np.r_[1 / 4097, np.full(299, 0.5)]
    table.loc[200:, "at_noise_floor"] = True
    family = bh_family(table, "p_pair")
    assert family.sum() == 200 and not family[200:].any()
    verdicts = compute_verdicts(table)["posts"]["sft"]["overall"]
    assert verdicts["rotation"]["n_p_pair"] == 200 and verdicts["rotation"]["bh_pair"] == 1
    assert bh_reject(table["p_pair"].to_numpy()[family], Q_BH).sum() == 1  # one at a time: the note says nothing
    assert not bh_reject(table["p_pair"].to_numpy(), Q_BH).any()  # the 300 the note counted before
    assert p_pair_notes(["p_pair"], 4096, table)[1:] == []
    table["at_noise_floor"] = False
    assert p_pair_notes(["p_pair"], 4096, table)[1:] == [
        "sft: p_pair capped at 4096 draws: with 300 changed matrices BH can flag this post's matrices only 2 or "
        "more at a time"]


def test_control_contrast_paired_by_matrix_name():
    strong = make_post("instruct", lambda rng, n: rng.normal(5, 1, n), seed=4)
    weak = make_post("cot", lambda rng, n: rng.normal(0, 1, n), seed=5)
    control = make_post("control", lambda rng, n: rng.normal(0, 1, n), seed=6)
    verdicts = compute_verdicts(pd.concat([control.iloc[::-1], strong, weak]))  # order must not matter
    assert verdicts["control"] == "control"
    instruct = verdicts["posts"]["instruct"]["overall"]["contrast"]
    assert instruct["paired"] and instruct["n"] == 28 and instruct["verdict"] == "more"
    assert instruct["p_z_pair"] < 0.01
    paired = strong.set_index("name").z_pair - control.set_index("name").z_pair
    assert instruct["z_pair_diff"] == pytest.approx(np.median(paired))  # the median paired difference
    assert "more consistent than in control" in verdicts["posts"]["instruct"]["sentences"]["control"]
    cot = verdicts["posts"]["cot"]["overall"]["contrast"]
    assert cot["verdict"] == "same" and cot["p_z_pair"] > 0.05
    assert verdicts["posts"]["control"]["overall"]["contrast"] is None
    # an explicit control; a name that is not a post is one clear error
    explicit = compute_verdicts(pd.concat([strong, weak]), control="cot")
    assert explicit["posts"]["instruct"]["overall"]["contrast"]["verdict"] == "more"
    with pytest.raises(OrthoscopeError, match="--control 'base'.*posts: instruct, cot"):
        compute_verdicts(pd.concat([strong, weak]), control="base")


def test_every_number_in_a_sentence_is_in_the_dict():
    table = pd.concat([make_post("control", lambda rng, n: rng.normal(0, 1, n), seed=7),
                       make_post("instruct", lambda rng, n: rng.normal(3, 2, n), seed=8, disp=0.3),
                       make_post("self", 0.0, changed=False)])
    verdicts = compute_verdicts(table)
    json.dumps(verdicts, allow_nan=False)  # strict JSON: goes into summary.json as is
    for entry in verdicts["posts"].values():
        for sentence in filter(None, entry["sentences"].values()):
            assert numbers_of(sentence)
            assert_numbers_in_dict(sentence, entry["overall"], verdicts["thresholds"])
        for kind in entry["kinds"].values():
            assert_numbers_in_dict(kind["sentence"], kind, verdicts["thresholds"])
    instruct = verdicts["posts"]["instruct"]
    assert instruct["overall"]["scaling"]["verdict"] == "non-uniform"
    assert instruct["sentences"]["scaling"].startswith("Scaling: not near-uniform")
    with pytest.raises(AssertionError):  # the check itself can fail
        assert_numbers_in_dict("median z_pair 123.456", instruct["overall"])


def test_older_runs_and_tiny_groups_degrade_gracefully():
    old = make_post("old", 3.0)[["post", "name", "layer", "kind", "a_geo", "disp", "fit_resid", "sym_frac",
                                 "sym_frac_null"]]
    verdicts = compute_verdicts(old)
    assert any("no `changed` column" in note for note in verdicts["notes"])
    assert verdicts["posts"]["old"]["overall"]["rotation"]["verdict"] == "unavailable"
    assert "has no z_pair, p_pair" in verdicts["posts"]["old"]["sentences"]["rotation"]
    tiny = make_post("tiny", 9.0, layers=1).iloc[:2]
    entry = compute_verdicts(tiny)["posts"]["tiny"]
    assert entry["overall"]["rotation"]["verdict"] == "insufficient"
    assert entry["overall"]["scaling"]["verdict"] == "insufficient"
    assert "too few usable matrices for a verdict (n = 2 < 3)" in entry["sentences"]["rotation"]
    assert compute_verdicts(pd.DataFrame())["posts"] == {}
    assert verdict_html(compute_verdicts(pd.DataFrame())).count("No verdicts") == 1


def test_html_holds_the_sentences_and_a_row_per_kind():
    verdicts = compute_verdicts(pd.concat([make_post("control", 0.5), make_post("instruct", 12.0)]))
    page = verdict_html(verdicts)
    assert page.count("<h3>") == 2 and page.count("<tr") == 3 + 2 * (1 + 1 + len(KINDS))  # overview + per kind
    assert "Rotations: consistent: all 28 of 28 matrices (100 %) beyond the pairing null" in page


def test_bh_count_matches_the_step_up_rule():
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(0, 0.01, 10), rng.uniform(0, 1, 90)])
    ranked = np.sort(p)
    passing = np.nonzero(ranked <= 0.05 * np.arange(1, 101) / 100)[0]
    assert bh_count(p, 0.05) == passing.max() + 1
    assert bh_count(np.array([np.nan, 0.5]), 0.05) == 0


def test_bootstrap_and_permutation_are_calibrated():
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(100):
        lo, hi = bootstrap_median_ci(rng.normal(0, 1, 41), rng, 400)
        covered += lo <= 0 <= hi
    assert 85 <= covered <= 100
    rejections = sum(permutation_p(rng.normal(0, 1, 20), rng.normal(0, 1, 20), paired=True, rng=rng,
                                   permutations=200) < 0.05 for _ in range(200))
    assert rejections <= 22  # about 5 % of 200 under the null


def test_many_significant_but_small_z_is_only_weakly_consistent():
    entry = compute_verdicts(make_post("weak", 1.9))["posts"]["weak"]  # p = 0.029 everywhere: all BH-significant
    rotation = entry["overall"]["rotation"]
    assert rotation["bh_pair"] == 28 and rotation["z_pair_ci"] == [1.9, 1.9]
    assert rotation["verdict"] == "weak"
    assert entry["sentences"]["rotation"].startswith("Rotations: weakly consistent: all 28 of 28")
    assert "minority" not in entry["sentences"]["rotation"]


def test_a_long_series_folds_its_posts_under_the_overview():
    table = pd.concat([make_post(f"step-{s}", 3.0, seed=s).assign(step=s) for s in range(6)])
    page = verdict_html(compute_verdicts(table))
    assert page.count("<details><summary><b>") == 6 and "<h3>" not in page
    assert page.index("verdict-overview") < page.index("<details>")


def test_too_few_pairs_for_a_contrast_or_one_significant_matrix_draw_no_verdict():
    strong = make_post("instruct", lambda rng, n: rng.normal(5, 1, n), seed=4).iloc[:4]
    control = make_post("control", lambda rng, n: rng.normal(0, 1, n), seed=6).iloc[:4]
    contrast = compute_verdicts(pd.concat([control, strong]))["posts"]["instruct"]["overall"]["contrast"]
    assert contrast["n"] == 4 and contrast["verdict"] == "insufficient"  # 2 / 2^4 > 0.05: no test can say more
    one = make_post("single", lambda rng, n: np.r_[8.0, np.zeros(n - 1)], p_gauss=0.5, seed=9).iloc[:4]
    rotation = compute_verdicts(one)["posts"]["single"]["overall"]["rotation"]
    assert rotation["bh_pair"] == 1 and rotation["verdict"] == "none"
