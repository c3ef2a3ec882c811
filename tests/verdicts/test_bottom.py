"""The bottom line: each claim per post as holds / does not hold / can't tell, from planted tables."""

import pandas as pd

from orthoscope.verdicts import compute_verdicts
from orthoscope.verdicts.bottom import (
    GLOSSARY,
    PAPER,
    ROTATION_CLAIM,
    SCALING_CLAIM,
    STATUSES,
    Claim,
    bottom_line,
    bottom_line_text,
)
from tests.verdicts.test_grammar import minority
from tests.verdicts.test_verdicts import make_post


def by_claim(verdicts):
    return {(c.post, c.claim): c for c in bottom_line(verdicts)}


def test_planted_truths_get_their_status():
    control = make_post("control", lambda rng, n: rng.normal(0, 1, n), p_gauss=0.5, seed=6)
    table = pd.concat([control, make_post("plant", 12.0), make_post("wide", 0.0, disp=0.3, seed=2),
                       make_post("self", 0.0, changed=False)])
    claims = by_claim(compute_verdicts(table))
    plant = claims[("plant", ROTATION_CLAIM)]
    assert plant.status == "holds" and plant.todo is None
    assert plant.sentence.startswith("all 28 of 28 matrices (100 %) beyond the pairing null")
    assert "more consistent than control" in plant.sentence and "one training run each" in plant.sentence
    assert claims[("plant", SCALING_CLAIM)].status == "holds"
    wide = claims[("wide", SCALING_CLAIM)]
    assert wide.status == "does not hold" and wide.sentence.startswith("median disp 0.3")
    assert "not both below the near-uniform thresholds 0.1 and 0.05" in wide.sentence
    assert claims[("control", ROTATION_CLAIM)].status == "does not hold"
    assert "this is the control run" in claims[("control", ROTATION_CLAIM)].sentence
    for claim in (SCALING_CLAIM, ROTATION_CLAIM):
        self_claim = claims[("self", claim)]
        assert self_claim.status == "can't tell" and "identical to the base" in self_claim.sentence
        assert self_claim.todo
    assert all(c.status in STATUSES for c in claims.values())
    assert [c.post for c in bottom_line(compute_verdicts(table))][::2] == ["control", "plant", "wide", "self"]


def test_a_minority_does_not_hold_and_says_where():
    claim = by_claim(compute_verdicts(minority()))[("instruct", ROTATION_CLAIM)]
    assert claim.status == "does not hold"
    assert claim.sentence.startswith("only a minority: 11 of 210 matrices (5.2 %) beyond the "
                                     "pairing null, in q (4 of 30)")
    assert "no control run to compare with" in claim.sentence


def test_the_runs_that_cannot_decide_say_what_to_run():
    quick = make_post("post", 3.0)[["post", "name", "layer", "kind", "changed", "at_noise_floor", "rel_delta"]]
    claims = by_claim(compute_verdicts(quick, metrics="quick"))
    for claim in (SCALING_CLAIM, ROTATION_CLAIM):
        assert claims[("post", claim)].status == "can't tell"
        assert claims[("post", claim)].todo.startswith("this run used --metrics quick, which does not compute")
        assert "--metrics all" in claims[("post", claim)].todo
    tiny = by_claim(compute_verdicts(make_post("tiny", 9.0, layers=1).iloc[:2]))[("tiny", ROTATION_CLAIM)]
    assert tiny.status == "can't tell" and "n = 2" in tiny.sentence and "--layers" in tiny.todo


def test_scaling_no_more_uniform_than_a_random_update_cannot_tell():
    table = make_post("post", 3.0, disp=0.02).assign(disp_null=0.015, rel_delta=0.0015)
    claim = by_claim(compute_verdicts(table))[("post", SCALING_CLAIM)]
    assert claim.status == "can't tell"
    assert "a random update of the same size is as uniform (disp 0.015)" in claim.sentence
    assert "update 0.15 % (median rel_delta)" in claim.sentence
    held = by_claim(compute_verdicts(table.assign(disp_null=0.05)))[("post", SCALING_CLAIM)]
    assert held.status == "holds" and "a random update of the same size: disp 0.05" in held.sentence


def test_terminal_lines_name_the_paper_first_and_fit_the_width():
    control = make_post("control", lambda rng, n: rng.normal(0, 1, n), seed=6)
    verdicts = compute_verdicts(pd.concat([control, minority()]))
    for width in (60, 80, 120):
        lines = bottom_line_text(verdicts, width)
        assert PAPER in lines[0]
        assert max(map(len, lines)) <= width
        # nothing lost to wrapping: every claim's sentence is in the text
        flat = " ".join(line.strip() for line in lines)
        for claim in bottom_line(verdicts):
            assert claim.sentence in flat
    assert lines[1] == "control (the control run)"


def test_glossary_explains_every_term_the_bottom_line_uses():
    for term in ("pairing null", "z_pair", "BH", "Gaussian null", "sym_frac", "a_geo", "rel_delta", "control"):
        assert len(GLOSSARY[term].split()) >= 8
    assert Claim("p", "c", "holds", "s").todo is None
    assert bottom_line({}) == [] and bottom_line_text({})[1] == "  no post to judge"
