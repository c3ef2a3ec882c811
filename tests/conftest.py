import dataclasses
import functools
import os

import pytest
import typer.testing

from orthoscope.kernels.threads import torch_threads
from orthoscope.lab import build_planted_pair
from orthoscope.lab.presets import PRESETS

MICRO_LAB = dataclasses.replace(PRESETS["tiny"], hidden=32, layers=2, heads=2, kv_heads=1, intermediate=64, batch=4,
                                pretrain_steps=6, post_steps=4, save_every=2, eval_problems=3, post_examples=64,
                                block=64)
"""The tiny preset's code path on a smaller model and a handful of steps (a lab build in a few seconds)."""


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread_by_default():
    """torch at one thread in every test that does not set its own count (tests/kernels/test_threads does).

    The suite's models are small: a second thread only adds synchronisation (and spins on a core that
    another process wants). It also makes the count a test sees independent of the order tests run in:
    `build_lab` sets the preset's count process-wide, so before this the tests after the first lab build ran
    at one thread and the ones before it at every thread.
    """
    with torch_threads(1):
        yield


@pytest.fixture(scope="session", autouse=True)
def click_command_built_once():
    """typer's CliRunner rebuilds the click command of `app` from its signatures on every `invoke` (milliseconds of
    CPU, hundreds of invokes a session); a process running the CLI builds it once, so the tests do too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(typer.testing, "_get_command", functools.cache(typer.testing._get_command))
        yield


@pytest.fixture(scope="session", autouse=True)
def spare_worker_across_tests():
    """A background monitor's idle worker process serves the next monitor of the same working folder, environment and
    import path; pytest's PYTEST_CURRENT_TEST (a new value in every test phase) would keep each test from the one an
    earlier test let go, so the comparison leaves it out (see `private_svd_cache` for the rest of the environment)."""
    from orthoscope.monitor import worker

    def context(original=worker._context) -> tuple:
        cwd, env, path = original()
        return cwd, tuple(item for item in env if item[0] != "PYTEST_CURRENT_TEST"), path

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(worker, "_context", context)
        yield


def _point_cache_link(tmp_path_factory, folder) -> str:
    link = tmp_path_factory.getbasetemp() / "svd-cache-of-this-test"
    pointer = link.with_name(f"{link.name}.{folder.name}")
    pointer.symlink_to(folder, target_is_directory=True)
    os.replace(pointer, link)  # atomically: never missing
    return str(link)


@pytest.fixture(scope="session", autouse=True)
def session_svd_cache(tmp_path_factory):
    """Session and module fixtures run before a test's own cache (`private_svd_cache`): theirs is this session's,
    through the same link, never the user's ~/.cache."""
    link = _point_cache_link(tmp_path_factory, tmp_path_factory.mktemp("svd-cache-session"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORTHOSCOPE_CACHE_DIR", link)
        yield


@pytest.fixture(autouse=True)
def private_svd_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty base-SVD cache (never the user's ~/.cache, nor its tmp_path).

    $ORTHOSCOPE_CACHE_DIR names the same symbolic link in every test, pointed at the test's own folder: the
    environment stays the same from test to test, so a background monitor may take the idle worker process an
    earlier test let go (a spare serves only the same environment) instead of starting one (~2 s of CPU each).
    """
    folder = tmp_path_factory.mktemp("svd-cache")
    monkeypatch.setenv("ORTHOSCOPE_CACHE_DIR", _point_cache_link(tmp_path_factory, folder))
    monkeypatch.setattr("orthoscope.tuning._ENABLED", None)  # a CLI test's opt-in ends with the test
    return folder


@pytest.fixture(scope="session")
def planted(tmp_path_factory):
    """A tiny Qwen2 base and a post copy following W_p = U_b Q (a S_b) Q^T V_b^T (sharded)."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    return build_planted_pair(tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="session")
def micro_lab(tmp_path_factory):
    """One `MICRO_LAB` build (seed 5) in <folder>/a for the lab's and the monitor's tests: (folder, log lines)."""
    from orthoscope.lab.build import build_lab

    out, lines = tmp_path_factory.mktemp("micro-lab"), []
    build_lab(MICRO_LAB, out / "a", seed=5, log=lines.append)
    return out, lines


@pytest.fixture(scope="module")
def one_torch_thread():
    """A lab-sized model: torch at one thread for the module (a second one only waits on a busy machine)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def finished_run(planted, tmp_path_factory):
    """A finished run of the planted pair's q and k (no report), written once: tests take a copy (`run`)."""
    import orthoscope

    out = tmp_path_factory.mktemp("finished") / "r"
    orthoscope.compare(planted[0], {"post": planted[1]}, out, kinds="q,k")
    return out
