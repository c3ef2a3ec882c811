"""The lab's generated world: exact formats and a clean train/test split."""

from orthoscope.evaluation.exact_match import extract_answer
from orthoscope.lab.corpus import (
    direct_example,
    held_out_problems,
    make_world,
    number_words,
    post_training_examples,
    worked_example,
)
from orthoscope.lab.tokenizer import char_tokenizer


def test_number_words():
    assert number_words(0) == "zero"
    assert number_words(47) == "forty-seven"
    assert number_words(90) == "ninety"
    assert number_words(147) == "one hundred and forty-seven"


def test_worked_solution_writes_out_the_carries():
    ex = worked_example(47, 85)
    assert ex.completion == " 7 + 5 = 12, write 2 carry 1; 4 + 8 + 1 = 13, write 3 carry 1. Answer: 132\n"
    assert extract_answer(ex.completion) == "132"
    assert worked_example(3, 4).completion == " 3 + 4 = 7, write 7. Answer: 7\n"
    assert extract_answer(direct_example(12, 35).completion) == "47"


def test_held_out_sums_are_never_trained_on():
    world = make_world(0)
    assert not set(world.test_pairs) & set(world.train_pairs)
    assert len(world.test_pairs) == 1000 and len(world.train_pairs) == 9000
    trained = {ex.prompt for v in ("instruct", "cot") for ex in post_training_examples(world, v, 2000, 1)}
    tested = {ex.prompt for t in ("lab-arith", "lab-cot", "lab-facts") for ex in held_out_problems(world, t, 1000)}
    assert not trained & tested


def test_world_is_a_function_of_the_seed():
    assert make_world(3) == make_world(3)
    assert make_world(3).entities != make_world(4).entities


def test_tokenizer_round_trips_every_format():
    tok = char_tokenizer()
    world = make_world(0)
    for variant in ("instruct", "cot", "control"):
        for ex in post_training_examples(world, variant, 20, 0):
            text = ex.prompt + ex.completion
            assert tok.decode(tok(text)["input_ids"]) == text
            assert tok.unk_token_id not in tok(text)["input_ids"]
