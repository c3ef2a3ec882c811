"""The generated instruction data: determinism, splits without leakage, checkers."""

import hashlib
import random
from collections import Counter
from itertools import islice

import pytest

from orthoscope.lab.instructions import (
    EVAL_BUCKETS,
    FAMILIES,
    HELD_OUT,
    TRAIN_FAMILIES,
    control_stream,
    evaluation_set,
    exact,
    exact_case,
    extract_answer,
    numeric,
    token_f1,
    training_stream,
    world_names,
)


@pytest.fixture(scope="module")
def train():
    return list(islice(training_stream(0), 20000))


@pytest.fixture(scope="module")
def held():
    return evaluation_set(per_family=10)


def test_streams_are_deterministic_per_seed():
    first = list(islice(training_stream(3), 300))
    assert first == list(islice(training_stream(3), 300))
    assert first != list(islice(training_stream(4), 300))
    assert evaluation_set(per_family=3) == evaluation_set(per_family=3)
    assert list(islice(control_stream(1), 20)) == list(islice(control_stream(1), 20))


def test_many_families_and_thousands_of_distinct_instances(train):
    counts = Counter(item.family for item in train)
    assert set(counts) == set(TRAIN_FAMILIES) and len(TRAIN_FAMILIES) >= 15
    assert min(counts.values()) > 20000 / len(TRAIN_FAMILIES) / 2  # every family drawn, roughly evenly
    assert len({(i.family, i.prompt) for i in train}) > 15000
    assert len({i.family.split("_")[0] for i in train}) >= 10
    assert {f.kind for f in FAMILIES.values()} == {"formatting", "extraction", "arithmetic", "list", "string",
                                                   "rewriting", "world"}


def test_held_out_families_and_instances_never_reach_training(train, held):
    assert not {i.family for i in train} & set(HELD_OUT)
    seen = {(i.family, i.prompt) for i in train}
    assert not seen & {(i.family, i.prompt) for i in held}
    # the evaluation bucket, recomputed here: no trained instance is in it, every held-in test item is
    bucket = [hashlib.sha256(f"{i.family}\n{i.prompt}".encode()).digest()[0] % EVAL_BUCKETS == 0 for i in train]
    assert not any(bucket)
    held_in = [i for i in held if i.family not in HELD_OUT]
    assert all(hashlib.sha256(f"{i.family}\n{i.prompt}".encode()).digest()[0] % EVAL_BUCKETS == 0 for i in held_in)


def test_evaluation_set_has_at_least_200_distinct_items_over_every_family(held):
    assert len(held) == 10 * len(FAMILIES) >= 200
    assert len({(i.family, i.prompt) for i in held}) == len(held)
    assert Counter(i.family for i in held) == {name: 10 for name in FAMILIES}
    assert sum(i.family in HELD_OUT for i in held) == 10 * len(HELD_OUT)


def test_checkers_accept_references_and_worked_solutions(held):
    for item in held:
        assert item.check(item.answer) == 1.0, item
        assert item.check(item.solution) == 1.0, item  # the cot reply: steps, then `Answer: ...`
        assert item.check(f"{item.answer}\nand some more text") == 1.0


def test_checkers_reject_wrong_answers(held):
    rng = random.Random(0)
    for item in held:
        others = [o.answer for o in held if o.family == item.family and exact(o.answer, item.answer) == 0.0]
        assert item.check(rng.choice(others)) < 1.0, item
        assert item.check("") == 0.0
    assert exact_case("TUNNEL ISLAND", "tunnel island") == 0.0
    assert numeric("44", "44 or 45") == 0.0 and numeric("44", "It is 44.") == 1.0
    assert token_f1("The cat saw a dog.", "The cat sees a dog.") == pytest.approx(0.8)
    assert extract_answer("x = 3. Answer: 3\nAnswer: 4") == "3"


def test_answers_are_right_by_an_independent_reading():
    names = world_names()
    rng = random.Random(5)
    for _ in range(50):
        add = FAMILIES["word_add"].make(rng, names)
        a, b = [int(w) for w in add.prompt.split() if w.isdigit()]
        assert int(add.answer) == a + b
        srt = FAMILIES["sort_numbers"].make(rng, names)
        numbers = [int(x) for x in srt.prompt.split(": ")[1].split(", ")]
        assert [int(x) for x in srt.answer.split(", ")] == sorted(numbers)
        word = FAMILIES["reverse_word"].make(rng, names)
        assert word.answer == word.prompt.split("'")[1][::-1]
        colour = FAMILIES["world_colour"].make(rng, names)
        who = colour.prompt.rsplit("What colour is ", 1)[1].split("'s")[0]
        assert f"{who} lives in a {colour.answer} house" in colour.prompt


def test_control_text_is_running_text_not_instructions():
    paragraphs = list(islice(control_stream(0), 200))
    assert len(set(paragraphs)) > 190
    assert not any("?" in p or "Answer:" in p for p in paragraphs)
