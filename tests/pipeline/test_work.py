"""The per-matrix work: unchanged matrices cost no SVD, small matrices are exact in float64 once,
and process-wide tuning happens only where a process opted in."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import orthoscope
from orthoscope import tuning
from orthoscope.kernels.threads import torch_threads
from orthoscope.lab.shipped import shipped_family
from orthoscope.pipeline import measure as measure_module
from orthoscope.pipeline import operands
from orthoscope.pipeline.precision import SMALL_RANK, sized_dtype
from tests.helpers import count_svds


@pytest.fixture
def untuned(monkeypatch):
    monkeypatch.setattr(tuning, "_ENABLED", None)
    monkeypatch.delenv(tuning.ENV, raising=False)


def test_a_self_compare_runs_no_svd_and_reports_every_matrix_unchanged(monkeypatch):
    base = shipped_family()["base"]
    reference = orthoscope.compare(base, base, metrics="sign-free", cache=False).table
    calls = count_svds(monkeypatch)
    full = []
    real = torch.linalg.svd
    monkeypatch.setattr(torch.linalg, "svd", lambda *a, **k: full.append(1) or real(*a, **k))
    table = orthoscope.compare(base, base, cache=False).table
    assert calls == [] and full == []
    assert len(table) == 21 and not table.changed.any() and (table.rel_delta == 0).all()
    assert (table.a_geo == 1).all() and (table.disp == 0).all()
    # the stable rank from the values-only route: the values of the matrix as stored, to float64 accuracy
    q0 = load_file(str(base / "model.safetensors"))["model.layers.0.self_attn.q_proj.weight"].double()
    s = torch.linalg.svdvals(q0)
    row = table.set_index("name").loc["model.layers.0.self_attn.q_proj.weight"]
    assert row.stable_rank_base == pytest.approx(float((s ** 2).sum() / s[0] ** 2), rel=1e-10)
    assert row.stable_rank_post == row.stable_rank_base
    pd.testing.assert_series_equal(table.stable_rank_base, reference.stable_rank_base)


def test_small_matrices_under_auto_are_exactly_the_float64_numbers():
    family = shipped_family()
    auto = orthoscope.compare(family["base"], family["instruct"], layers="0", cache=False).table
    f64 = orthoscope.compare(family["base"], family["instruct"], layers="0", precision="f64", cache=False).table
    assert (auto[["rows", "cols"]].min(axis=1) <= SMALL_RANK).all()
    pd.testing.assert_frame_equal(auto, f64, rtol=1e-12, atol=1e-14)


def test_sized_dtype_keeps_float32_for_large_matrices_and_explicit_precisions():
    assert sized_dtype((896, 4864), torch.float32, True) == torch.float32
    assert sized_dtype((96, 4864), torch.float32, True) == torch.float64
    assert sized_dtype((96, 96), torch.float32, False) == torch.float32  # --precision f32 is kept


CHECK = """
import ctypes, json, sys, threadpoolctl, torch
import orthoscope
from orthoscope.pipeline import allocator
calls = []
allocator.keep_freed_memory = lambda: calls.append(1)
torch.set_num_threads(2)
def state():
    libs = threadpoolctl.threadpool_info()
    timeouts = []
    for lib in threadpoolctl.ThreadpoolController().select(internal_api="openblas").lib_controllers:
        get = getattr(lib.dynlib, "openblas_thread_timeout", None)
        timeouts.append(get() if get else None)
    return {"torch": torch.get_num_threads(), "pools": [(l["filepath"], l["num_threads"]) for l in libs],
            "timeouts": timeouts}
import scipy.linalg
before = state()
orthoscope.compare(sys.argv[1], sys.argv[2], layers="0", kinds="q,up", cache=False)
orthoscope.spectra(sys.argv[1], kinds="q")
print(json.dumps({"before": before, "after": state(), "allocator": len(calls)}))
"""


def test_compare_from_python_leaves_threads_blas_and_allocator_as_it_found_them():
    family = shipped_family()
    env = {k: v for k, v in __import__("os").environ.items() if k not in (tuning.ENV, "OPENBLAS_THREAD_TIMEOUT")}
    done = subprocess.run([sys.executable, "-c", CHECK, str(family["base"]), str(family["instruct"])],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["after"] == seen["before"] and seen["before"]["torch"] == 2
    assert seen["allocator"] == 0


def test_the_cli_opts_its_process_in_and_env_zero_opts_out(untuned, monkeypatch):
    from typer.testing import CliRunner

    from orthoscope.cli import app

    assert not tuning.process_tuned()
    assert CliRunner().invoke(app, ["metrics", "--json"]).exit_code == 0
    assert tuning.process_tuned()
    monkeypatch.setattr(tuning, "_ENABLED", None)
    monkeypatch.setenv(tuning.ENV, "0")
    assert CliRunner().invoke(app, ["metrics", "--json"]).exit_code == 0
    assert not tuning.process_tuned()


def test_tuned_small_jobs_run_on_one_thread_and_give_the_same_numbers(monkeypatch):
    family = shipped_family()
    with torch_threads(2):  # a process with two threads (the suite runs at one: tests/conftest.py)
        plain = orthoscope.compare(family["base"], family["instruct"], layers="0", kinds="q,up", cache=False).table
        seen = []
        for module in (measure_module, operands):  # the post and null SVDs; the base's
            real = module.svd
            monkeypatch.setattr(module, "svd",
                                lambda W, *a, real=real: seen.append(torch.get_num_threads()) or real(W, *a))
        monkeypatch.setattr(tuning, "_ENABLED", True)
        tuned = orthoscope.compare(family["base"], family["instruct"], layers="0", kinds="q,up", cache=False).table
    assert seen and set(seen) == {1}
    pd.testing.assert_frame_equal(tuned, plain, rtol=1e-10, atol=1e-12)


def test_progress_bar_shows_only_on_long_interactive_runs(capsys):
    from orthoscope.pipeline.progress import AutoProgress, make_progress

    quick = AutoProgress(delay=60, interactive=True)
    quick(1, 21, "q_proj")
    assert not quick.shown
    long = AutoProgress(delay=0, interactive=True)
    long(1, 21, "model.layers.0.self_attn.q_proj.weight")
    long(2, 21, "model.layers.0.self_attn.k_proj.weight")
    assert long.shown and long.bar.tasks[0].completed == 2 and long.bar.tasks[0].total == 21
    long.close()
    assert make_progress(False)[0] is None and make_progress(None)[0] is None
    steps = []
    assert make_progress(lambda *a: steps.append(a))[0](1, 2, "x") is None and steps == [(1, 2, "x")]
