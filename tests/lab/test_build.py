"""A cut-down lab end to end: same code path as the presets, a handful of steps."""

import hashlib
import json
from concurrent.futures import Future

import orthoscope
import orthoscope.lab.build as build
from orthoscope.lab.build import VARIANTS, build_lab
from tests.conftest import MICRO_LAB as MICRO


def digest(folder) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_lab_writes_loadable_models_trajectories_and_evaluation(micro_lab):
    lab = micro_lab[0] / "a"
    for name in ("base",) + VARIANTS:
        assert (lab / name / "model.safetensors").is_file() and (lab / name / "tokenizer.json").is_file()
    for variant in VARIANTS:
        assert sorted(p.name for p in (lab / "trajectories" / variant).iterdir()) == ["step-0002"]
    evaluation = json.loads((lab / "eval.json").read_text())
    assert set(evaluation) == {"base", *VARIANTS}
    assert set(evaluation["base"]) == {"lab-arith", "lab-cot", "lab-facts", "ppl"}
    record = json.loads((lab / "lab.json").read_text())
    assert record["seed"] == 5 and record["preset"]["post_steps"] == 4
    posts = [lab / v for v in VARIANTS] + [lab / "trajectories" / "cot" / "step-0002"]
    result = orthoscope.compare(lab / "base", posts)
    assert sorted(set(result.table.post)) == ["control", "cot", "instruct", "step-0002"]
    assert len(result.table) == 4 * MICRO.layers * 7


class Unmonitored:
    """Stands for the post-training's Monitor: measures nothing (no worker process, no analysis)."""

    seconds = 0.0
    mode = "not at all"

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def measure(self, model, step) -> Future:
        done = Future()
        done.set_result(None)
        return done

    def observe(self, model, step, callback=None) -> None:
        if callback is not None:
            callback(None)


def test_same_seed_same_weights(micro_lab, tmp_path, monkeypatch):
    # the weights only: no monitor and no evaluation in the second build (had either touched the training, its
    # weights would differ from the monitored, evaluated first build's)
    monkeypatch.setattr(build, "Monitor", Unmonitored)
    monkeypatch.setattr(build, "evaluate_lab", lambda *args, **kwargs: {})
    build_lab(MICRO, tmp_path / "b", seed=5, log=lambda m: None)
    for name in ("base",) + VARIANTS:
        assert digest(micro_lab[0] / "a" / name) == digest(tmp_path / "b" / name), name


def test_rerun_skips_finished_models(micro_lab, monkeypatch):
    lab = micro_lab[0] / "a"
    before = (lab / "cot" / "model.safetensors").stat().st_mtime_ns
    first = json.loads((lab / "lab.json").read_text())

    def evaluate(*args, **kwargs):
        raise AssertionError("nothing was trained: the models are as the last evaluation saw them")

    monkeypatch.setattr(build, "evaluate_lab", evaluate)
    lines = []
    assert build_lab(MICRO, lab, seed=5, log=lines.append) == first["eval"]
    assert (lab / "cot" / "model.safetensors").stat().st_mtime_ns == before
    assert not any("pretraining" in line or "post-training" in line for line in lines)
    again = json.loads((lab / "lab.json").read_text())  # the stages' records are kept, not emptied
    assert again["stages"] == first["stages"] and set(first["stages"]) == {"base", *VARIANTS}


def test_an_evaluation_is_reused_only_for_the_same_preset_seed_and_world(tmp_path):
    record = {"preset": MICRO.as_dict(), "seed": 5, "world": {"seed": 5, "max_operand": MICRO.max_operand}}
    previous = tmp_path / "lab.json"
    assert not build._same_settings(previous, record)  # no run before
    previous.write_text(json.dumps({**record, "stages": {}, "eval": {}}))
    assert build._same_settings(previous, record)
    assert not build._same_settings(previous, {**record, "seed": 6})
    assert not build._same_settings(previous, {**record, "preset": {**record["preset"], "post_steps": 1}})
