"""In line or in the background: `background="auto"` takes the worker where the training leaves it a core and
measures in line otherwise; in line a step's matrices run on one thread per core with the numbers of one."""

from concurrent.futures import Future

import pytest
import torch

from orthoscope.monitor import Monitor
from orthoscope.monitor import monitor as monitor_module
from orthoscope.monitor.lanes import LANES_ENV
from orthoscope.monitor.monitor import AUTO, choose_mode, on_result

from .conftest import numbers, tiny_llama, train_steps


@pytest.mark.parametrize(("cores", "threads", "cuda", "background"), [
    (2, 1, False, True),  # the lab's tiny preset: one core spare
    (2, 2, False, False),  # the small preset: every core trains
    (4, 8, False, False),  # more threads than cores
    (2, 2, True, True),  # a GPU trains: the CPU is free
    (1, 1, False, False),  # one core: nowhere for a worker to run
])
def test_auto_takes_the_worker_only_where_the_training_leaves_it_a_core(cores, threads, cuda, background,
                                                                         monkeypatch):
    monkeypatch.setattr(monitor_module, "physical_cores", lambda: cores)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    chosen, mode = choose_mode(AUTO, "cpu")
    assert chosen is background
    assert mode.startswith("in the background (auto" if background else "in line on every core (auto")


def test_true_and_false_are_taken_as_said_and_anything_else_is_refused():
    assert choose_mode(True, "cpu") == (True, "in the background")
    assert choose_mode(False, "cuda:0") == (False, "in line")
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="background must be True, False or 'auto'"):
            Monitor({"model.layers.0.mlp.up_proj.weight": torch.eye(4)}, background=bad)


def test_in_line_runs_a_step_on_every_lane_with_the_numbers_of_one(base_folder, monkeypatch):
    model = tiny_llama()
    train_steps(model, 3)
    tables, used = {}, {}
    for lanes in (1, 2):
        monkeypatch.setenv(LANES_ENV, str(lanes))
        threads = torch.get_num_threads()
        with Monitor(base_folder, cache=False) as monitor:
            result = monitor.measure(model, 3)
            used[lanes] = monitor.series.lanes.used
        assert torch.get_num_threads() == threads  # the caller's torch is left as it was
        tables[lanes] = numbers(result.table)
    assert used == {1: 1, 2: 2}
    assert tables[1].equals(tables[2])


def test_on_result_hands_over_an_in_line_result_now_and_a_background_one_when_done(base_folder):
    model = tiny_llama()
    train_steps(model, 2)
    seen = []
    with Monitor(base_folder, cache=False, metrics={"rel_delta"}) as in_line:
        result = in_line.measure(model, 2)
        on_result(result, seen.append)
    assert seen == [result]
    later = Future()  # what a background measure gives
    on_result(later, seen.append)
    assert seen == [result]
    later.set_result(None)  # a step the worker could not measure
    assert seen == [result, None]


def test_observe_turns_a_failed_measure_into_the_one_warning_and_a_none(base_folder, caplog):
    seen = []
    with Monitor(base_folder, cache=False, metrics={"rel_delta"}) as monitor:
        with caplog.at_level("WARNING", logger="orthoscope.monitor"):
            monitor.observe({"model.layers.0.mlp.up_proj.weight": torch.eye(3)}, 7, seen.append)  # not the base
        model = tiny_llama()
        train_steps(model, 1)
        monitor.observe(model, 8, seen.append)
    assert seen[0] is None and seen[1].step == 8
    assert len(caplog.messages) == 1 and caplog.messages[0].startswith("orthoscope: step 7 not measured (")
