"""Monitor: live measurements equal an after-the-fact compare, the folder reads as a series, bad input."""

import copy
import errno
import logging
import math

import numpy as np
import pytest
import torch

import orthoscope
from orthoscope.errors import PairingError
from orthoscope.metrics.nulls import MONITOR_PAIR_DRAWS
from orthoscope.monitor import MONITOR_METRICS, Monitor, MonitorError
from orthoscope.monitor import live as live_module
from orthoscope.monitor import monitor as monitor_module
from orthoscope.pipeline.runfolder import RunFolder

from .conftest import numbers, tiny_llama, train_steps

STEPS = (2, 4)


@pytest.fixture(scope="module")
def trained(base_folder, tmp_path_factory):
    """A run folder written by the monitor while training, and the checkpoints saved at the same steps."""
    root = tmp_path_factory.mktemp("monitored")
    model = tiny_llama()
    monitor = Monitor(base_folder, root / "run")
    saved, results = {}, {}
    for step in range(1, max(STEPS) + 1):
        train_steps(model, 1, seed=step)
        if step in STEPS:
            results[step] = monitor.measure(model, step)
            model.save_pretrained(root / f"step-{step}")
            saved[f"step-{step}"] = root / f"step-{step}"
    return root / "run", saved, results


def test_numbers_equal_an_after_the_fact_compare(base_folder, trained):
    run, saved, _ = trained
    after = orthoscope.compare(base_folder, saved, metrics=MONITOR_METRICS, pair_draws=MONITOR_PAIR_DRAWS)
    live = RunFolder(run).read_table()
    assert len(live) == len(after.table) == 2 * 14  # 2 layers x 7 projections, two steps
    a, b = numbers(live), numbers(after.table)
    assert list(a.columns) == list(b.columns)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-6, atol=1e-6, equal_nan=True)
    assert a["rel_delta"].min() > 1e-3 and a["z_pair"].notna().all() and a["intruders"].notna().all()


def test_the_folder_is_a_series_for_summary_and_report(trained):
    from typer.testing import CliRunner

    from orthoscope.cli import app
    from orthoscope.report.build import write_report

    run, _, results = trained
    summary = RunFolder(run).read_summary()
    assert {p: v["step"] for p, v in summary["verdicts"]["posts"].items()} == {"step-2": 2, "step-4": 4}
    assert summary["posts"]["step-4"]["step"] == 4 and summary["settings"]["metrics"] == sorted(MONITOR_METRICS)
    printed = CliRunner().invoke(app, ["summary", str(run)], env={"COLUMNS": "80"})
    assert printed.exit_code == 0 and "the series: 2 steps" in printed.output  # a row per step
    assert "step-4: medians per kind" in printed.output  # then the last step's table
    write_report(run)
    assert "Checkpoint series" in (run / "report.html").read_text()
    assert (run / "figures" / "trajectory.png").stat().st_size > 10_000
    logs = results[4].logs()
    table = results[4].table
    assert logs["orthoscope/rel_delta"] == pytest.approx(table.rel_delta.median())
    assert logs["orthoscope/q/z_pair"] == pytest.approx(table[table.kind == "q"].z_pair.median())
    rotation = summary["verdicts"]["posts"]["step-4"]["overall"]["rotation"]
    assert logs["orthoscope/bh_gauss"] == rotation["bh_gauss"] and rotation["n_p_gauss"] == 14
    assert "orthoscope/bh_pair" not in logs or logs["orthoscope/bh_pair"] == rotation["bh_pair"]
    assert results[4].logs()["orthoscope/rel_delta"] > results[2].logs()["orthoscope/rel_delta"]


def test_a_restarted_monitor_appends_to_its_folder(base_folder, tmp_path):
    model = tiny_llama()
    train_steps(model, 1)
    Monitor(base_folder, tmp_path / "run").measure(model, 1)
    train_steps(model, 1)
    Monitor(base_folder, tmp_path / "run").measure(model, 2)
    assert sorted(RunFolder(tmp_path / "run").read_table().post.unique()) == ["step-1", "step-2"]


def test_a_folder_of_another_run_is_refused_before_training(base_folder, tmp_path):
    orthoscope.compare(base_folder, base_folder, tmp_path / "run", kinds="q")
    with pytest.raises(orthoscope.errors.OrthoscopeError, match="holds a run of other inputs"):
        Monitor(base_folder, tmp_path / "run")


def test_a_module_base_is_copied_and_a_plain_state_dict_is_measured(tmp_path):
    model = tiny_llama()
    monitor = Monitor(model, kinds="q,o")  # the model itself, before training: copied
    train_steps(model, 2)
    live = monitor.measure(model.state_dict(), 2)
    assert set(live.table.kind) == {"q", "o"} and live.table.rel_delta.min() > 1e-3


@pytest.mark.parametrize("disk", [True, False])
def test_a_fresh_cache_counts_a_miss_per_matrix_then_a_hit_per_matrix(base_folder, tmp_path, disk):
    """The base's factors computed at the first step (and written, or only held), taken at the next."""
    model, monitor = tiny_llama(), Monitor(base_folder, None, cache=disk, cache_dir=tmp_path / "cache")
    train_steps(model, 1, seed=1)
    matrices = len(monitor.measure(model, 1).table)
    assert matrices == 14 and monitor.counts == {"hits": 0, "misses": matrices, "not_stored": 0}
    train_steps(model, 1, seed=2)
    monitor.measure(model, 2)
    assert monitor.counts == {"hits": matrices, "misses": matrices, "not_stored": 0}
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == (matrices if disk else 0)


# ---------------------------------------------------------------------------------------------- bad input
def test_matrices_not_matching_the_base_are_refused(base_folder):
    monitor = Monitor(base_folder)
    other = tiny_llama()
    state = other.state_dict()
    state["model.layers.0.mlp.up_proj.weight"] = torch.zeros(65, 32)
    with pytest.raises(PairingError, match=r"up_proj.weight shape \(64, 32\) vs \(65, 32\)"):
        monitor.measure(state, 1)
    del state["model.layers.0.mlp.up_proj.weight"]
    with pytest.raises(PairingError, match="up_proj.weight missing in post"):
        monitor.check(state)


def test_another_dtype_is_measured_with_a_warning_and_a_note(base_folder, caplog):
    monitor = Monitor(base_folder)
    model = tiny_llama(dtype=torch.bfloat16)  # the same weights, rounded: dW is the rounding
    with caplog.at_level(logging.WARNING, logger="orthoscope.monitor"):
        result = monitor.measure(model, 1)
    assert "the model is bfloat16, the base float32" in caplog.text
    assert any("bfloat16" in note for note in result.summary["notes"])
    assert 1e-4 < result.table.rel_delta.median() < 2 ** -8  # bfloat16's rounding, nothing else
    assert not result.skipped


def test_a_parameter_without_values_is_a_clear_error(base_folder):
    with torch.device("meta"):
        model = tiny_llama()
    with pytest.raises(MonitorError, match="on the meta device"):
        Monitor(base_folder).measure(model, 1)


def test_nan_weights_are_skipped_rows_with_a_warning(base_folder, tmp_path, caplog):
    model = tiny_llama()
    monitor = Monitor(base_folder, tmp_path / "run")
    train_steps(model, 1)
    with torch.no_grad():
        model.model.layers[1].self_attn.q_proj.weight[0, 0] = math.nan
    with caplog.at_level(logging.WARNING, logger="orthoscope.monitor"):
        result = monitor.measure(model, 1)
    assert result.skipped == [{"post": "step-1", "name": "model.layers.1.self_attn.q_proj.weight",
                               "reason": "1 NaN/Inf entries in the post matrix"}]
    assert "step 1: 1 of 14 matrices skipped (1 NaN/Inf entries in the post matrix)" in caplog.text
    assert len(result.table) == 13 and result.logs()["orthoscope/skipped"] == 1
    assert RunFolder(tmp_path / "run").read_summary()["skipped"] == result.skipped


def test_a_full_disk_warns_and_the_next_step_writes_everything(base_folder, tmp_path, monkeypatch, caplog):
    model = tiny_llama()
    monitor = Monitor(base_folder, tmp_path / "run")

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    train_steps(model, 1)
    with monkeypatch.context() as patch, caplog.at_level(logging.WARNING, logger="orthoscope.monitor"):
        patch.setattr("orthoscope.pipeline.runfolder.atomic_write", full)
        result = monitor.measure(model, 1)
    assert len(result.table) == 14 and "No space left on device" in caplog.text
    assert "training goes on" in caplog.text
    train_steps(model, 1)
    monitor.measure(model, 2)
    assert sorted(RunFolder(tmp_path / "run").read_table().post.unique()) == ["step-1", "step-2"]


def test_bad_steps_and_devices_are_one_line_errors(base_folder):
    with pytest.raises(MonitorError, match="step must be a non-negative integer"):
        Monitor(base_folder).measure(tiny_llama(), -1)
    if not torch.cuda.is_available():
        with pytest.raises(orthoscope.errors.OrthoscopeError, match="no CUDA device"):
            Monitor(base_folder, device="cuda")


# ---------------------------------------------------------------------------------------------- PEFT, shards, ranks
def test_a_lora_model_is_measured_merged_as_its_saved_adapter(base_folder, tmp_path):
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(tiny_llama(), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    train_steps(model, 3, lr=5e-2)
    live = Monitor(base_folder, kinds="q,v,k").measure(model, 3)
    model.save_pretrained(tmp_path / "adapter")
    after = orthoscope.compare(base_folder, {"step-3": tmp_path / "adapter"}, metrics=MONITOR_METRICS, kinds="q,v,k",
                               pair_draws=MONITOR_PAIR_DRAWS)
    np.testing.assert_allclose(numbers(live.table).to_numpy(), numbers(after.table).to_numpy(), rtol=1e-6,
                               atol=1e-6, equal_nan=True)
    moved = live.table.groupby("kind").rel_delta.median()
    assert moved["q"] > 1e-3 and moved["v"] > 1e-3 and moved["k"] == 0  # k_proj is not adapted


def test_dtensor_parameters_are_gathered_one_at_a_time(base_folder, monkeypatch):
    dist = pytest.importorskip("torch.distributed")
    from torch.distributed.tensor import DeviceMesh, Shard, distribute_tensor

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)  # no port: tests run side by side
    try:
        model = tiny_llama()
        train_steps(model, 1)
        mesh = DeviceMesh("cpu", [0])
        sharded = {name: distribute_tensor(t, mesh, [Shard(0)]) for name, t in model.state_dict().items()}
        plain = Monitor(base_folder).measure(model, 1).table
        gathered = Monitor(base_folder).measure(sharded, 1).table
    finally:
        dist.destroy_process_group()
    assert len(gathered) == 14
    np.testing.assert_array_equal(numbers(plain).to_numpy(), numbers(gathered).to_numpy())


def test_zero3_parameters_are_gathered_through_deepspeed(base_folder, monkeypatch):
    import sys
    import types

    model = tiny_llama()
    full = {name: t.clone() for name, t in model.state_dict().items()}
    gathered = []

    class GatheredParameters:
        def __init__(self, params, modifier_rank=None):
            self.params = params

        def __enter__(self):
            for p in self.params:
                gathered.append(p.ds_name)
                p.data = full[p.ds_name]

        def __exit__(self, *exc):
            for p in self.params:
                p.data = torch.empty(0)

    state = {}
    for name, t in full.items():
        p = torch.nn.Parameter(torch.empty(0), requires_grad=False)
        p.ds_id, p.ds_shape, p.ds_name = len(state), t.shape, name
        state[name] = p
    fake = types.SimpleNamespace(zero=types.SimpleNamespace(GatheredParameters=GatheredParameters))
    monkeypatch.setitem(sys.modules, "deepspeed", fake)
    result = Monitor(base_folder).measure(state, 1)
    assert len(result.table) == 14 and result.table.rel_delta.max() == 0  # the untrained weights: unchanged
    assert len(gathered) == 14 and all(state[n].numel() == 0 for n in gathered)  # one at a time, released


def test_only_rank_0_measures(base_folder, tmp_path, monkeypatch):
    model = tiny_llama()
    reads = []
    monkeypatch.setattr(monitor_module, "_rank", lambda: 1)
    monitor = Monitor(base_folder, tmp_path / "run")
    monkeypatch.setattr(live_module, "read_matrix", lambda ckpt, ref: reads.append(ref.name))
    assert monitor.measure(model, 1) is None
    assert len(reads) == 14 and not (tmp_path / "run").exists()  # the same reads (gathers), nothing written
    background = Monitor(base_folder, tmp_path / "run", background=True)
    assert background.measure(model, 2) is None and len(reads) == 28  # gathers stay synchronous on every rank
    background.close()
    assert not (tmp_path / "run").exists() and background.worker is None  # no worker process on other ranks


def test_wrapped_models_read_as_their_inner_model(base_folder):
    model = tiny_llama()
    train_steps(model, 1)
    plain = Monitor(base_folder).measure(model, 1).table
    wrapped = Monitor(base_folder).measure(torch.nn.DataParallel(copy.deepcopy(model)), 1).table
    np.testing.assert_array_equal(numbers(plain).to_numpy(), numbers(wrapped).to_numpy())


def test_the_step_by_step_summary_equals_one_made_from_the_whole_table(trained):
    from orthoscope.pipeline import run as run_module
    from orthoscope.pipeline.summary import aggregate
    from orthoscope.verdicts import compute_verdicts
    from orthoscope.verdicts.compute import jsonable

    run, _, _ = trained
    folder = RunFolder(run)
    table, summary = folder.read_table(), folder.read_summary()
    label = run_module.metrics_label(MONITOR_METRICS) if hasattr(run_module, "metrics_label") else None
    whole = compute_verdicts(table, None, label) if label else compute_verdicts(table)
    assert summary["verdicts"]["posts"] == jsonable(whole)["posts"]
    assert summary["per_kind"] == jsonable(aggregate(table, "kind"))
    assert list(summary["posts"]) == ["step-2", "step-4"]


def test_fsdp1_flat_shards_are_read_unit_by_unit_and_summoned_parameters_as_they_are(base_folder, monkeypatch):
    dist = pytest.importorskip("torch.distributed")
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)  # no port: tests run side by side
    try:
        model = tiny_llama()
        train_steps(model, 1)
        plain = Monitor(base_folder).measure(model, 1).table
        wrapped = FSDP(copy.deepcopy(model), device_id=torch.device("cpu"),
                       auto_wrap_policy=ModuleWrapPolicy({LlamaDecoderLayer}))
        summons = []
        original = FSDP.summon_full_params
        monkeypatch.setattr(FSDP, "summon_full_params", lambda unit, **kw: summons.append(unit) or original(unit, **kw))
        flat = Monitor(base_folder).measure(wrapped, 1).table
        monkeypatch.setattr(FSDP, "summon_full_params", original)
        with FSDP.summon_full_params(wrapped, writeback=False):
            summoned = Monitor(base_folder).measure(wrapped, 1).table
    finally:
        dist.destroy_process_group()
    layers = {id(wrapped.model.layers[0]), id(wrapped.model.layers[1])}  # the root (embeddings, norm) holds no matrix
    assert {id(unit) for unit in summons} == layers and len(summons) <= 14  # one unit at a time, not the model
    np.testing.assert_array_equal(numbers(plain).to_numpy(), numbers(flat).to_numpy())
    np.testing.assert_array_equal(numbers(plain).to_numpy(), numbers(summoned).to_numpy())


def test_records_on_disk_only_when_asked(base_folder, tmp_path):
    model = tiny_llama()
    train_steps(model, 1)
    Monitor(base_folder, tmp_path / "lean", kinds="q").measure(model, 1)
    Monitor(base_folder, tmp_path / "full", kinds="q", records=True).measure(model, 1)
    assert not (tmp_path / "lean" / "parts").exists() and not (tmp_path / "lean" / "spectra").exists()
    folder = RunFolder(tmp_path / "full")
    assert len(list((tmp_path / "full" / "parts" / "step-1").iterdir())) == 2
    assert folder.read_spectra("step-1", "model.layers.0.self_attn.q_proj.weight")["s_post"].shape == (32,)


def test_the_default_gives_the_pairing_null_bh_count_and_leaving_p_pair_out_gives_the_gaussian_one(base_folder):
    model = tiny_llama()
    train_steps(model, 1)
    logs = Monitor(base_folder, kinds="q").measure(model, 1).logs()
    assert "p_pair" in MONITOR_METRICS and "orthoscope/bh_pair" in logs and "orthoscope/q/bh_gauss" in logs
    lean = Monitor(base_folder, kinds="q", metrics=MONITOR_METRICS - {"p_pair"}).measure(model, 1).logs()
    assert "orthoscope/bh_pair" not in lean and "orthoscope/q/bh_gauss" in lean
