"""What a measured step logs: medians over the matrices training changed (a LoRA leaves the rest bit-identical), the
count they rest on, and each BH count beside its family."""

import pandas as pd
import pytest

from orthoscope.monitor.step import StepResult


def lora_step() -> StepResult:
    """q and v moved (two layers), k and o bit-identical; the verdicts' BH family: the 4 changed matrices."""
    table = pd.DataFrame({"kind": ["q", "k", "v", "o"] * 2,
                          "rel_delta": [0.02, 0.0, 0.04, 0.0, 0.03, 0.0, 0.05, 0.0],
                          "z_pair": [1.0, float("nan"), 3.0, float("nan"), 2.0, float("nan"), 4.0, float("nan")],
                          "changed": [True, False, True, False] * 2})
    rotation = {"bh_pair": 1, "n_p_pair": 4}
    summary = {"verdicts": {"posts": {"step-5": {"overall": {"rotation": rotation},
                                                 "kinds": {"q": {"rotation": {"bh_pair": 0, "n_p_pair": 2}}}}}}}
    return StepResult(5, "step-5", table, [], summary, 0.5)


def test_a_lora_step_logs_the_medians_of_the_changed_matrices_and_their_count():
    logs = lora_step().logs()
    assert logs["orthoscope/rel_delta"] == pytest.approx(0.035)  # over all 8 it would be 0.01
    assert logs["orthoscope/changed"] == 4 and logs["orthoscope/z_pair"] == pytest.approx(2.5)
    assert logs["orthoscope/q/rel_delta"] == pytest.approx(0.025)
    assert logs["orthoscope/k/rel_delta"] == 0.0  # a kind nothing changed: its true zero


def test_bh_counts_come_with_their_family_and_brief_shows_it():
    step = lora_step()
    logs = step.logs()
    assert (logs["orthoscope/bh_pair"], logs["orthoscope/n_pair"]) == (1, 4)
    assert (logs["orthoscope/q/bh_pair"], logs["orthoscope/q/n_pair"]) == (0, 2)
    assert step.brief() == "rel_delta 0.035 z_pair 2.5 bh_pair 1/4 (0.50 s)"


def test_a_step_where_nothing_changed_logs_zero_changed_and_the_true_zeros():
    step = lora_step()
    step.table = step.table.assign(rel_delta=0.0, changed=False, z_pair=float("nan"))
    logs = step.logs()
    assert logs["orthoscope/changed"] == 0 and logs["orthoscope/rel_delta"] == 0.0 and "orthoscope/z_pair" not in logs


def test_the_logged_medians_count_the_matrices_the_verdicts_count():
    """A matrix at the noise floor is left out as the verdicts leave it out; a table without `changed` (an older
    folder) counts every row, as the verdicts do."""
    step = lora_step()
    step.table["at_noise_floor"] = [False, False, True, False, False, False, False, False]  # the 0.04 v
    logs = step.logs()
    assert logs["orthoscope/changed"] == 3 and logs["orthoscope/rel_delta"] == pytest.approx(0.03)
    bare = StepResult(5, "step-5", step.table.drop(columns=["changed", "at_noise_floor"]), [], {}, 0.5).logs()
    assert bare["orthoscope/changed"] == 8 and bare["orthoscope/rel_delta"] == pytest.approx(0.01)
