"""p_pair's cap on sign draws (--pair-draws, the Monitor's 4096): the first draws of the uncapped rule, in the
settings and keys of a run, and refused with one line where it is not a count of draws."""

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

import orthoscope
from orthoscope.errors import OrthoscopeError
from orthoscope.metrics import nulls, pairing
from orthoscope.metrics.levels import Q_BH
from orthoscope.metrics.nulls import MONITOR_PAIR_DRAWS, PAIR_DRAWS, pair_tail
from orthoscope.pipeline import CompareOptions
from orthoscope.pipeline.precision import resolve_precision
from orthoscope.pipeline.run import settings_key
from orthoscope.pipeline.runfolder import RunFolder
from orthoscope.pipeline.summary import p_pair_notes
from orthoscope.pipeline.work import Settings
from orthoscope.verdicts.stats import bh_reject
from tests.helpers import orthonormal


@pytest.fixture(scope="module")
def tail_stats():
    """A 64 x 64 D whose T sits near p = 1e-3 under sign flips: the stated-error rule takes far more than 4096 draws."""
    g = torch.Generator().manual_seed(5)
    G = torch.randn(64, 64, generator=g, dtype=torch.float64)
    stats = pairing(G)
    return stats.__class__(T=3.2 * math.sqrt(stats.var), var=stats.var, norm2=stats.norm2, diag2=stats.diag2,
                           A=stats.A)


def replayed_hits(stats, seed: int, rounds: list[int], first: int) -> int:
    """Hits among the first `first` sign draws of generator `seed` read in `rounds` (the sizes of the rule's
    calls: one byte array per call, unpacked to +-1), each e^T A e compared in float64 (independent of _hits)."""
    rng = np.random.default_rng(seed)
    r = stats.A.shape[0]
    bits = np.concatenate([np.unpackbits(rng.integers(0, 256, size=(n, (r + 7) // 8), dtype=np.uint8), axis=1,
                                         count=r) for n in rounds])[:first]
    e = bits.astype(np.float64) * 2 - 1
    values = np.einsum("ni,ij,nj->n", e, stats.A.numpy(), e)
    return int((values >= stats.T - 1e-12 * math.sqrt(stats.var)).sum())


@pytest.mark.parametrize("cap", [4096, 5000])
def test_a_cap_takes_the_first_draws_of_the_uncapped_rule(tail_stats, cap):
    free = pair_tail(tail_stats, np.random.default_rng(3))
    capped = pair_tail(tail_stats, np.random.default_rng(3), cap=cap)
    assert free.draws > 4 * cap and not free.bounded  # the cap binds
    assert capped.draws == cap and not capped.bounded and capped.p == (1 + capped.hits) / (1 + cap)
    # the uncapped rule reads its draws in calls of 1024, 3072, 12288, ... : the cap's are their first `cap`
    assert capped.hits == replayed_hits(tail_stats, 3, [1024, 3072, 12288], cap)
    assert capped.hits <= free.hits


def test_a_cap_keeps_the_rule_where_it_stops_first_and_the_bound():
    D = torch.randn(40, 40, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    for stats in (pairing(D), pairing(D + D.T)):  # stops at 1024 draws (p > 0.05); settled by the bound
        free = pair_tail(stats, np.random.default_rng(0))
        assert pair_tail(stats, np.random.default_rng(0), cap=MONITOR_PAIR_DRAWS) == free
        assert free.draws == PAIR_DRAWS


@pytest.mark.parametrize("cap", [0, -1, 1023, 2**20 + 1, 2048.0, True, "4096"])
def test_a_bad_cap_is_one_line(cap):
    with pytest.raises(OrthoscopeError, match=r"^--pair-draws must be a whole number of sign draws from 1024 "):
        CompareOptions(pair_draws=cap)
    with pytest.raises(OrthoscopeError, match="--pair-draws"):
        orthoscope.Monitor({"model.layers.0.mlp.up_proj.weight": torch.zeros(4, 4)}, None, pair_draws=cap)


def test_a_bad_cap_exits_2_from_the_cli(tmp_path):
    from typer.testing import CliRunner

    from orthoscope.cli import app

    result = CliRunner().invoke(app, ["compare", "base", "post", "-o", str(tmp_path / "r"), "--pair-draws", "100"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --pair-draws must be a whole number"), result.output


NAME = "model.layers.0.self_attn.q_proj.weight"


@pytest.fixture(scope="module")
def planted_pair():
    """A 48 x 48 base and a post whose update sits near p_pair = 1e-3 (the cap binds), plus an isotropic matrix."""
    g = torch.Generator().manual_seed(8)
    S = torch.linspace(3, 0.5, 48, dtype=torch.float64)
    U, V = orthonormal(48, 48, g), orthonormal(48, 48, g)
    W_b = U @ torch.diag(S) @ V.T
    G = torch.randn(48, 48, generator=g, dtype=torch.float64)
    lo, hi = 0.0, 1.0  # the share c of G^T in G + c G^T that puts z_pair at 3.2 (z grows with c)
    for _ in range(40):
        c = (lo + hi) / 2
        lo, hi = (c, hi) if pairing(G + c * G.T).z < 3.2 else (lo, c)
    D = 1e-2 * (G + c * G.T)
    base = {NAME: W_b.float(), "model.layers.0.self_attn.k_proj.weight": W_b.T.contiguous().float()}
    post = {NAME: (W_b + U @ D @ V.T).float(),
            "model.layers.0.self_attn.k_proj.weight": (W_b.T + 1e-2 * torch.randn(48, 48, generator=g,
                                                                                   dtype=torch.float64)).float()}
    return base, post


def test_compare_with_the_monitor_cap_gives_the_monitor_p_pair(planted_pair, tmp_path):
    base, post = planted_pair
    monitor = orthoscope.Monitor(base, None, cache=False)
    watched = monitor.measure(post, step=7).table.set_index("name")
    same = orthoscope.compare(base, {"step-7": post}, tmp_path / "capped", metrics=sorted(monitor.options.metrics),
                              pair_draws=MONITOR_PAIR_DRAWS, cache=False, progress=False)
    free = orthoscope.compare(base, {"step-7": post}, metrics="p_pair", cache=False, progress=False)
    capped_p, free_p = same.table.set_index("name").p_pair, free.table.set_index("name").p_pair
    assert watched.p_pair.to_numpy() == pytest.approx(capped_p[watched.index].to_numpy(), rel=0, abs=0)
    planted_p = watched.p_pair[NAME]
    assert 1e-4 < free_p[NAME] < 0.02 and planted_p != free_p[NAME]  # the cap binds on the planted matrix
    assert round(planted_p * (1 + MONITOR_PAIR_DRAWS)) == pytest.approx(planted_p * (1 + MONITOR_PAIR_DRAWS))
    # the cap is a setting of the run: run.json, summary.json and a note say so
    run = json.loads((tmp_path / "capped" / "run.json").read_text())
    summary = json.loads((tmp_path / "capped" / "summary.json").read_text())
    assert run["settings"]["pair_draws"] == summary["settings"]["pair_draws"] == MONITOR_PAIR_DRAWS
    assert nulls.cap_note(MONITOR_PAIR_DRAWS)[0] in summary["notes"]
    assert monitor.summary["settings"]["pair_draws"] == MONITOR_PAIR_DRAWS
    assert free.summary["settings"]["pair_draws"] is None
    assert not any("sign draws" in note for note in free.summary["notes"])


def test_runs_with_other_caps_share_no_results(planted_pair, tmp_path):
    base, post = planted_pair
    folder = tmp_path / "r"
    orthoscope.compare(base, {"p": post}, folder, metrics="p_pair", pair_draws=4096, cache=False, progress=False)
    with pytest.raises(OrthoscopeError, match="holds a run of other inputs or settings"):
        orthoscope.compare(base, {"p": post}, folder, metrics="p_pair", cache=False, progress=False)
    # a result stored under one cap's key is found under that key only (overwrite=True would clear the folder)
    opts = CompareOptions(metrics="p_pair", pair_draws=4096)
    made = Settings(resolve_precision(opts.precision, opts.metrics), "cpu", 0, opts.metrics, pair_draws=4096)
    stored = RunFolder(folder)
    assert stored.load_part("p", NAME, settings_key(made)) is not None
    for other in (8192, None):
        assert stored.load_part("p", NAME, settings_key(replace(made, pair_draws=other))) is None
    again = orthoscope.compare(base, {"p": post}, folder, metrics="p_pair", pair_draws=4096, cache=False,
                               progress=False)
    assert again.summary["resumed"] == 2  # the same cap reuses its results


@pytest.mark.parametrize("cap", [1024, 4096])
def test_the_cap_note_names_each_post_bh_cannot_reach_one_matrix_at_a_time(cap):
    """The smallest k the note gives is BH's own: k matrices at the floor 1/(N + 1) among m, the rest at 1,
    flag nothing below k and all k from it on (bh_reject at the verdicts' Q_BH)."""
    floor = 1 / (cap + 1)

    def fewest(m: int) -> int:
        return next(k for k in range(1, m + 1) if bh_reject(np.r_[np.full(k, floor), np.ones(m - k)], Q_BH).any())

    limit = math.floor(Q_BH * (cap + 1))  # the most changed matrices of a post BH can flag one at a time
    sizes = {"one": limit, "two": limit + 1, "many": 560, "huge": 3000}
    notes = nulls.cap_note(cap, sizes)
    assert f"(q = {Q_BH:g})" in notes[0] and f"at most {limit} k changed ones" in notes[0]
    assert [note.split(":")[0] for note in notes[1:]] == [p for p, m in sizes.items() if fewest(m) > 1]
    for note in notes[1:]:
        m = sizes[note.split(":")[0]]
        assert f"with {m} changed matrices BH can flag this post's matrices only {fewest(m)} or more" in note


def test_run_notes_count_each_posts_matrices_with_a_p_pair():
    table = pd.DataFrame({"post": ["sft"] * 600 + ["dpo"] * 10,
                          "p_pair": [0.5] * 560 + [float("nan")] * 40 + [0.01] * 10})
    notes = p_pair_notes(["p_pair", "sym_frac"], 4096, table)
    assert notes[1:] == ["sft: p_pair capped at 4096 draws: with 560 changed matrices BH can flag this post's "
                         "matrices only 3 or more at a time"]
    assert p_pair_notes(["sym_frac"], 4096, table) == [] and p_pair_notes(["p_pair"], None, table) == []


def test_no_cap_is_recorded_without_p_pair(planted_pair, tmp_path):
    assert CompareOptions(metrics="sym_frac,a_geo", pair_draws=4096).pair_draws is None
    assert CompareOptions(metrics="p_pair", pair_draws=4096).pair_draws == 4096
    with pytest.raises(OrthoscopeError, match="--pair-draws"):  # still checked where unused
        CompareOptions(metrics="sym_frac", pair_draws=100)
    base, post = planted_pair
    orthoscope.Monitor(base, tmp_path / "m", metrics="sym_frac", cache=False).measure(post, step=1)
    run = json.loads((tmp_path / "m" / "run.json").read_text())
    assert "pair_draws" not in run["settings"]
    # the same folder is not refused by a monitor without p_pair told no cap (compare's rule)
    orthoscope.Monitor(base, tmp_path / "m", metrics="sym_frac", pair_draws=None, cache=False).measure(post, step=2)


def test_summary_prints_the_cap_note_only_where_p_pair_was_computed(planted_pair, tmp_path):
    from typer.testing import CliRunner

    from orthoscope.cli import app

    base, post = planted_pair
    for metrics in ("p_pair", "sym_frac"):
        folder = tmp_path / metrics
        orthoscope.compare(base, {"p": post}, folder, metrics=metrics, pair_draws=4096, cache=False, progress=False)
        stored = json.loads((folder / "summary.json").read_text())
        stored["settings"]["pair_draws"] = 4096  # as a folder written before a cap left runs without p_pair
        (folder / "summary.json").write_text(json.dumps(stored))
        shown = CliRunner().invoke(app, ["summary", str(folder)], env={"COLUMNS": "400"})
        assert shown.exit_code == 0, shown.output
        assert ("note: p_pair capped at 4096 sign draws" in shown.output) == (metrics == "p_pair"), shown.output
