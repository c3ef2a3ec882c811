"""pipeline.summary's notes: which stored notes `orthoscope summary` makes again (p_pair's cap notes)."""

import pandas as pd
import pytest

from orthoscope.metrics.nulls import cap_note
from orthoscope.pipeline.summary import CAP_NOTE, change_notes, matrix_notes, run_notes


@pytest.mark.parametrize("cap", [1024, 4096, 2**20])
def test_every_line_of_the_cap_note_is_known_as_one_and_no_other_note_is(cap):
    posts = {"sft": 10**7, "a: b": 10**7, "x.y-1": 10**7}
    lines = cap_note(cap, posts)
    assert len(lines) == 4 and all(CAP_NOTE.match(line) for line in lines)
    table = pd.DataFrame({"post": ["p", "p"], "name": ["a", "b"], "kind": ["q", "k"], "changed": [False, True],
                          "note": ["", "base has numerical rank 1"]})
    others = change_notes(table) + matrix_notes(table) + [
        "--workers 8 lowered to 2: 2 working sets of 1.4 GiB fit in 3.1 GiB",
        "post same holds the same bytes as the base in every analysed matrix: expect no change"]
    assert len(others) == 4 and not any(CAP_NOTE.match(note) for note in others)


def test_stored_cap_notes_are_made_again_where_they_stood():
    table = pd.DataFrame({"post": ["p"] * 3, "p_pair": [0.5, 0.01, 0.2], "changed": True,
                          "at_noise_floor": [False, False, True]})
    stored = {"notes": ["first", *cap_note(1024, {"p": 999}), "last"],
              "settings": {"metrics": ["p_pair"], "pair_draws": 1024}}
    assert run_notes(stored, table) == ["first", *cap_note(1024, {"p": 2}), "last"] == ["first", cap_note(1024)[0],
                                                                                         "last"]
    assert run_notes({**stored, "settings": {}}, table) == ["first", "last"]  # a run without a cap: none
    assert run_notes({"notes": ["a"], "settings": {"metrics": ["p_pair"], "pair_draws": 1024}}, table) == [
        "a", cap_note(1024)[0]]  # a folder whose summary.json lost its cap note
