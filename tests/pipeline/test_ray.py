"""The Ray executor on a real local cluster: same table as the local executor, resumable."""

import pandas as pd
import pytest

import orthoscope
from orthoscope.errors import OrthoscopeError

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_fills_the_same_table_as_local(planted, tmp_path, cluster):
    local = orthoscope.compare(*planted, precision="f64", cache=False).table
    result = orthoscope.compare(*planted, tmp_path / "r", executor="ray", precision="f64", cache=False)
    assert result.summary["settings"]["executor"] == "ray"
    pd.testing.assert_frame_equal(result.table, local, rtol=1e-9, atol=1e-12)


def test_ray_resumes_a_local_run_and_shares_the_cache(planted, tmp_path, cluster, private_svd_cache):
    out = tmp_path / "r"
    orthoscope.compare(*planted, out, kinds={"q", "k"})
    result = orthoscope.compare(*planted, out, executor="ray")
    assert len(result.table) == 14
    # the 4 q/k matrices were resumed; the other 10 ran on workers, which filled the same cache
    assert result.summary["cache"] == {"hits": 0, "misses": 10, "not_stored": 0}
    assert len(list(private_svd_cache.rglob("*.safetensors"))) == 14
    again = orthoscope.compare(*planted, tmp_path / "again", executor="ray")
    assert again.summary["cache"]["hits"] == 14
    pd.testing.assert_frame_equal(again.table, result.table)


def test_unknown_executor(planted):
    with pytest.raises(OrthoscopeError, match="unknown executor 'dask'"):
        orthoscope.compare(*planted, executor="dask")


def test_ray_executor_object_with_its_options(planted, tmp_path, cluster):
    from orthoscope.pipeline import RayExecutor

    result = orthoscope.compare(*planted, tmp_path / "r", executor=RayExecutor(workers=2), kinds="q", cache=False)
    assert result.summary["settings"]["executor_options"] == {"executor": "ray", "address": None, "workers": 2}
    local = orthoscope.compare(*planted, kinds="q", cache=False).table
    pd.testing.assert_frame_equal(result.table, local, rtol=1e-9, atol=1e-12)
