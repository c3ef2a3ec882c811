"""The base-SVD cache: keyed by tensor bytes, reused across posts and runs, bounded, listable."""

import os

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import orthoscope
from orthoscope.cli import app
from orthoscope.errors import OrthoscopeError
from orthoscope.kernels import svd
from orthoscope.pipeline import cache as cache_module
from orthoscope.pipeline.cache import SVDCache, tensor_digest
from tests.helpers import count_svds


def test_key_is_the_bytes_not_the_name():
    W = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    assert tensor_digest(W) == tensor_digest(W.clone())
    changed = W.clone()
    changed[5, 3] += 1e-6
    assert tensor_digest(changed) != tensor_digest(W)
    assert tensor_digest(W.to(torch.bfloat16)) != tensor_digest(W)
    assert tensor_digest(W.reshape(4, 6)) != tensor_digest(W)


def test_a_second_run_reuses_every_base_svd(planted, tmp_path, monkeypatch):
    cold = orthoscope.compare(*planted, tmp_path / "cold")
    assert cold.summary["cache"] == {"hits": 0, "misses": 14, "not_stored": 0}
    calls = count_svds(monkeypatch)
    warm = orthoscope.compare(*planted, tmp_path / "warm")
    assert warm.summary["cache"] == {"hits": 14, "misses": 0, "not_stored": 0}
    assert len(calls) == 28  # post and null SVDs only
    # same factors; only the memory layout of V differs (contiguous on load), so rounding may
    pd.testing.assert_frame_equal(warm.table, cold.table, rtol=1e-10, atol=1e-12)


def test_a_warm_sign_free_run_does_no_svd_at_all(planted, tmp_path, monkeypatch):
    orthoscope.compare(*planted, metrics="sign-free")
    calls = count_svds(monkeypatch)
    result = orthoscope.compare(*planted, metrics="sign-free")
    assert calls == [] and result.summary["cache"]["hits"] == 14


def test_no_cache_writes_nothing(planted, private_svd_cache):
    result = orthoscope.compare(*planted, kinds={"q"}, cache=False)
    assert result.summary["cache"] is None and list(private_svd_cache.rglob("*.safetensors")) == []


def test_a_torn_entry_is_recomputed(planted, private_svd_cache, monkeypatch):
    reference = orthoscope.compare(*planted, kinds={"q"}).table
    entry = sorted(private_svd_cache.rglob("*.safetensors"))[0]
    entry.write_bytes(entry.read_bytes()[:100])
    result = orthoscope.compare(*planted, kinds={"q"})
    assert result.summary["cache"] == {"hits": 1, "misses": 1, "not_stored": 0}
    pd.testing.assert_frame_equal(result.table, reference, rtol=1e-10, atol=1e-12)
    assert len(SVDCache(private_svd_cache).entries()) == 2


def key(letter: str) -> str:
    """An entry name as SVDCache.key makes them (the cache removes only files named so)."""
    return f"{letter * 32}-float64-{cache_module.FORMAT}"


def test_the_limit_evicts_only_entries_this_process_did_not_use(tmp_path):
    factors = svd(torch.randn(64, 32, dtype=torch.float64))
    size_mib = sum(t.numel() * 8 for t in (factors.U, factors.S, factors.V)) / 2**20
    old = SVDCache(tmp_path, limit_gib=2.5 * size_mib / 1024)
    assert old.put(key("a"), factors) and old.put(key("b"), factors)
    assert not old.put(key("c"), factors)  # full, and both entries were used by this process
    past = old.entries()[0].last_used - 3600
    for entry in old.entries():
        os.utime(entry.path, (past, past))
    new = SVDCache(tmp_path, limit_gib=2.5 * size_mib / 1024)
    assert new.put(key("c"), factors)  # evicts one stale entry
    assert new.put(key("d"), factors)  # and the other
    assert not new.put(key("e"), factors)
    assert sorted(e.path.stem[0] for e in new.entries()) == ["c", "d"]
    assert new.stats()["not_stored"] == 1
    assert torch.equal(new.get(key("c")).U, factors.U)


def test_full_cache_is_noted_in_the_summary(planted, monkeypatch):
    monkeypatch.setenv("ORTHOSCOPE_CACHE_LIMIT", "0")
    result = orthoscope.compare(*planted, kinds={"q", "o"})
    assert result.summary["cache"]["not_stored"] == 4
    assert any("cache full or not writable: 4 factorisations not stored" in note for note in result.summary["notes"])


def test_bad_limit_is_a_clear_error(planted, monkeypatch):
    monkeypatch.setenv("ORTHOSCOPE_CACHE_LIMIT", "lots")
    with pytest.raises(OrthoscopeError, match="ORTHOSCOPE_CACHE_LIMIT='lots' is not a number"):
        orthoscope.compare(*planted, kinds={"q"})
    assert len(orthoscope.compare(*planted, kinds={"q"}, cache=False).table) == 2  # no cache, no limit


def test_an_unwritable_cache_does_not_stop_the_run(planted, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(cache_module, "atomic_write", refuse)
    result = orthoscope.compare(*planted, kinds={"q"})
    assert len(result.table) == 2
    assert result.summary["cache"] == {"hits": 0, "misses": 2, "not_stored": 2}
    assert any("not writable: 2 factorisations" in note for note in result.summary["notes"])


def test_cli_ls_and_clear(planted, private_svd_cache):
    orthoscope.compare(*planted, kinds={"q", "k"})
    runner = CliRunner()
    listing = runner.invoke(app, ["cache", "ls"])
    assert listing.exit_code == 0 and "4 entries" in listing.output, listing.output
    cleared = runner.invoke(app, ["cache", "clear", "--cache-dir", str(private_svd_cache)])
    assert cleared.exit_code == 0 and "removed 4 entries" in cleared.output
    assert SVDCache(private_svd_cache).entries() == []


def test_each_matrix_is_hashed_once_per_model(planted, monkeypatch):
    """The content hash that keys resume also keys the cache: base and post bytes are hashed once each."""
    from orthoscope.pipeline import work

    calls = []
    real = cache_module.tensor_digest

    def counted(W):
        calls.append(tuple(W.shape))
        return real(W)

    monkeypatch.setattr(cache_module, "tensor_digest", counted)
    monkeypatch.setattr(work, "tensor_digest", counted)
    orthoscope.compare(*planted, kinds="q,o")
    assert len(calls) == 4 * 2
