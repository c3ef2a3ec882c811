import pytest

from orthoscope.lab import build_planted_pair


@pytest.fixture(autouse=True)
def private_svd_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty base-SVD cache (never the user's ~/.cache, nor its tmp_path)."""
    folder = tmp_path_factory.mktemp("svd-cache")
    monkeypatch.setenv("ORTHOSCOPE_CACHE_DIR", str(folder))
    monkeypatch.setattr("orthoscope.tuning._ENABLED", None)  # a CLI test's opt-in ends with the test
    return folder


@pytest.fixture(scope="session")
def planted(tmp_path_factory):
    """A tiny Qwen2 base and a post copy following W_p = U_b Q (a S_b) Q^T V_b^T (sharded)."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    return build_planted_pair(tmp_path_factory.mktemp("planted"))
