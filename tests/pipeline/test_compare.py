"""compare end to end on a planted checkpoint pair: outputs, values, filters, resume."""

import json

import numpy as np
import pandas as pd
import pytest

import orthoscope
from orthoscope.lab.planted import KIND_SCALE
from orthoscope.pipeline import work
from orthoscope.pipeline.summary import TABLE_COLUMNS


def test_outputs_and_planted_values(planted, tmp_path):
    base, post = planted
    result = orthoscope.compare(base, post, tmp_path / "run")
    table = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert list(table.columns) == list(TABLE_COLUMNS) and (table.note == "").all()  # every rank full
    assert len(table) == 14 and set(table.kind) == set(KIND_SCALE)
    for kind, a in KIND_SCALE.items():
        assert table[table.kind == kind].a_geo.to_numpy() == pytest.approx(a, abs=1e-5)
    assert (table.incons < 1e-4).all() and (table.sym_frac > 0.999).all()
    assert table.sym_frac_null.between(0.4, 0.6).all()
    csv = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert np.allclose(csv.a_geo, table.a_geo)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["per_kind"]["post"]["o"]["a_geo"] == pytest.approx(1.2, abs=1e-5)
    assert summary["per_layer"]["post"]["1"]["matrices"] == 7
    assert summary["base"]["model_type"] == "qwen2" and len(summary["base"]["fingerprint"]) == 16
    spectra = np.load(tmp_path / "run" / "spectra" / "post" / "model.layers.0.self_attn.o_proj.weight.npz")
    assert spectra["s_post"] == pytest.approx(1.2 * spectra["s_base"], rel=1e-5)
    assert result.table.equals(table)


def test_python_api_without_output_writes_nothing(planted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = orthoscope.compare(str(planted[0]), [str(planted[1]), str(planted[1])])
    assert result.out is None and list(tmp_path.iterdir()) == []
    assert sorted(set(result.table.post)) == ["post", "post-2"] and len(result.table) == 28


def test_filters(planted):
    table = orthoscope.compare(*planted, layers={1}, kinds={"q", "o"}).table
    assert sorted(zip(table.layer, table.kind)) == [(1, "o"), (1, "q")]


def counting(monkeypatch, fail_at: int | None = None) -> list:
    calls = []
    real = work.measure

    def wrapped(*args, **kwargs):
        calls.append(args[2])
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt  # the run is killed here
        return real(*args, **kwargs)

    monkeypatch.setattr(work, "measure", wrapped)
    return calls


def test_killed_run_resumes_without_recomputing(planted, tmp_path, monkeypatch):
    out = tmp_path / "run"
    reference = orthoscope.compare(*planted).table
    counting(monkeypatch, fail_at=6)
    with pytest.raises(KeyboardInterrupt):
        orthoscope.compare(*planted, out)
    assert not (out / "metrics.parquet").exists()
    calls = counting(monkeypatch)
    table = orthoscope.compare(*planted, out).table
    assert len(calls) == 14 - 5
    pd.testing.assert_frame_equal(table, reference)
    calls = counting(monkeypatch)
    orthoscope.compare(*planted, out)
    assert calls == []


def test_half_written_or_stale_results_are_recomputed(planted, tmp_path, monkeypatch):
    out = tmp_path / "run"
    orthoscope.compare(*planted, out)
    part = out / "parts" / "post" / "model.layers.0.mlp.up_proj.weight.json"
    part.write_text(part.read_text()[:40])
    calls = counting(monkeypatch)
    orthoscope.compare(*planted, out)
    assert calls == ["model.layers.0.mlp.up_proj.weight"]
    calls = counting(monkeypatch)
    orthoscope.compare(*planted, out, seed=1, overwrite=True)  # other settings: nothing is reused
    assert len(calls) == 14


def test_local_executor_asks_for_each_matrix_before_reading_it(planted, monkeypatch):
    from orthoscope.sources import store

    events = []
    monkeypatch.setattr(store, "advise_willneed", lambda path, offset, length: events.append(("ahead", path, offset)))
    from orthoscope.sources.safetensors_files import SafetensorsFiles

    original = SafetensorsFiles.read

    def reading(self, name):
        events.append(("read", self.location[name], self.byte_range(name)[0]))
        return original(self, name)

    monkeypatch.setattr(SafetensorsFiles, "read", reading)
    orthoscope.compare(planted[0], planted[1], metrics="quick")
    reads = [(path, offset) for kind, path, offset in events if kind == "read"]
    assert len(reads) == 28  # 14 matrices, base and post
    for i, (kind, path, offset) in enumerate(events):
        if kind == "read":
            ahead = [k for k, e in enumerate(events) if e == ("ahead", path, offset)]
            assert ahead and ahead[0] < i  # asked for before it was read
    first_read = next(i for i, e in enumerate(events) if e[0] == "read")
    # before the first read: the first job and the two after it (PREFETCH_JOBS), base and post each
    assert sum(e[0] == "ahead" for e in events[:first_read]) == 3 * 2
