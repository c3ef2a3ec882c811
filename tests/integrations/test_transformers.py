"""OrthoscopeCallback in a real (tiny) transformers Trainer: values beside loss, the series folder, no interruption."""

import logging
import math

import numpy as np
import pytest
import torch

import orthoscope
from orthoscope.monitor import MONITOR_METRICS
from orthoscope.pipeline.runfolder import RunFolder

from ..monitor.conftest import tiny_llama
from ..monitor.test_monitor import numbers

transformers = pytest.importorskip("transformers")
from orthoscope.integrations.transformers import OrthoscopeCallback  # noqa: E402


class Recorder(transformers.TrainerCallback):
    """Stands for a report_to backend: placed before the orthoscope callback, as reporters are."""

    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append({**logs, "step": state.global_step})


class Poison(transformers.TrainerCallback):
    """Writes a NaN into one weight after the optimizer step of `step`."""

    def __init__(self, step):
        self.step = step

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 == self.step:
            with torch.no_grad():
                model.model.layers[0].self_attn.q_proj.weight[0, 0] = math.nan


def data(n=16):
    generator = torch.Generator().manual_seed(0)
    return [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 64, (n, 16), generator=generator)]


def trainer_for(tmp_path, callbacks, steps=4, save_steps=2, logging_steps=3):
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=steps, save_steps=save_steps,
                                          logging_steps=logging_steps, per_device_train_batch_size=4,
                                          learning_rate=1e-2, report_to="none", use_cpu=True,
                                          disable_tqdm=True)
    return transformers.Trainer(model=tiny_llama(), args=args, train_dataset=data(), callbacks=callbacks)


@pytest.fixture(scope="module")
def trained(base_folder, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trainer")
    recorder = Recorder()
    trainer = trainer_for(tmp, [recorder, OrthoscopeCallback(base_folder)])
    trainer.train()
    return trainer, recorder, tmp / "out"


def test_values_are_logged_beside_loss_at_every_save(trained):
    trainer, recorder, _ = trained  # in background: logged when they arrive, orthoscope/step names the step
    logged = {entry["orthoscope/step"]: entry for entry in recorder.logs if "orthoscope/rel_delta" in entry}
    history = {e["orthoscope/step"]: e for e in trainer.state.log_history if "orthoscope/rel_delta" in e}
    assert sorted(history) == [2, 4] and 4 in logged  # the saves (steps 2 and 4), though logging_steps is 3
    assert all(entry["step"] >= measured for measured, entry in logged.items())
    assert all(("loss" in entry or "train_loss" in entry) and "orthoscope/q/z_pair" in entry
               and "orthoscope/bh_gauss" in entry for entry in logged.values())  # the last may ride the summary log
    assert history[4]["orthoscope/rel_delta"] > history[2]["orthoscope/rel_delta"] > 0
    assert history[4]["orthoscope/rel_delta"] == logged[4]["orthoscope/rel_delta"]


def test_in_line_values_are_logged_at_the_measured_step(base_folder, tmp_path):
    recorder = Recorder()
    trainer = trainer_for(tmp_path, [recorder, OrthoscopeCallback(base_folder, background=False, kinds="q")])
    trainer.train()
    logged = {entry["step"]: entry for entry in recorder.logs if "orthoscope/rel_delta" in entry}
    assert sorted(logged) == [2, 4] and all("loss" in entry for entry in logged.values())


def test_the_series_folder_equals_a_compare_of_the_saved_checkpoints(trained, base_folder):
    _, _, out = trained
    live = RunFolder(out / "orthoscope").read_table()
    after = orthoscope.compare(base_folder, {f"step-{s}": out / f"checkpoint-{s}" for s in (2, 4)},
                               metrics=MONITOR_METRICS)
    assert sorted(live.post.unique()) == ["step-2", "step-4"]
    np.testing.assert_allclose(numbers(live).to_numpy(), numbers(after.table).to_numpy(), rtol=1e-6, atol=1e-6,
                               equal_nan=True)


def test_every_n_steps_without_saves(base_folder, tmp_path):
    trainer = trainer_for(tmp_path, [OrthoscopeCallback(base_folder, every_n_steps=1, on_save=False, kinds="q")],
                          steps=3, save_steps=100)
    trainer.args.save_strategy = "no"
    trainer.train()
    assert sorted(RunFolder(tmp_path / "out" / "orthoscope").read_table().step.unique()) == [1, 2, 3]


def test_nan_weights_and_failures_never_stop_training(base_folder, tmp_path, caplog, monkeypatch):
    callback = OrthoscopeCallback(base_folder, every_n_steps=1, on_save=False)
    trainer = trainer_for(tmp_path, [Poison(2), callback], steps=3, save_steps=100)
    trainer.args.save_strategy = "no"
    real = callback.__class__._maybe_measure
    with caplog.at_level(logging.WARNING, logger="orthoscope.monitor"):
        trainer.train()
        assert trainer.state.global_step == 3
        assert "step 2: 1 of 14 matrices skipped (1 NaN/Inf entries in the post matrix)" in caplog.text

        def broken(self, *args, **kwargs):
            raise_in = self.monitor.measure
            self.monitor.measure = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom"))
            try:
                real(self, *args, **kwargs)
            finally:
                self.monitor.measure = raise_in

        monkeypatch.setattr(callback.__class__, "_maybe_measure", broken)
        trainer.args.max_steps = 4
        trainer.train(resume_from_checkpoint=False)
    assert "not measured (RuntimeError: boom); training goes on" in caplog.text


def test_a_model_that_is_not_the_base_stops_at_the_start(tmp_path):
    other = tmp_path / "other"
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=96, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2)).save_pretrained(other)
    trainer = trainer_for(tmp_path, [OrthoscopeCallback(other)])
    with pytest.raises(orthoscope.errors.PairingError, match="differ in 6 matrices"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_base_none_is_the_model_when_training_begins(tmp_path):
    trainer = trainer_for(tmp_path, [OrthoscopeCallback(kinds="q,v")], steps=2, save_steps=2)
    trainer.train()
    table = RunFolder(tmp_path / "out" / "orthoscope").read_table()
    assert list(table.post.unique()) == ["step-2"] and table.rel_delta.min() > 0


def test_a_resumed_training_drops_the_later_steps_of_the_run_before(base_folder, tmp_path, caplog):
    first = trainer_for(tmp_path, [OrthoscopeCallback(base_folder, background=False)], steps=4, save_steps=2)
    first.train()
    folder = tmp_path / "out" / "orthoscope"
    assert sorted(RunFolder(folder).read_table().post.unique()) == ["step-2", "step-4"]
    # resumed from step 2 and stopped before any measure of its own (a crash, say): only its start is measured
    resumed = trainer_for(tmp_path, [OrthoscopeCallback(base_folder, background=False, on_save=False)], steps=3)
    with caplog.at_level(logging.WARNING, logger="orthoscope"):
        resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))
    assert sorted(RunFolder(folder).read_table().post.unique()) == ["step-2"]  # step-4 was the other run's
    assert any("step 2 measured again: step 4 of an earlier run dropped" in m for m in caplog.messages)
