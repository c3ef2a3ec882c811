"""Posts as users give them: named, in series, several at once (update_cos), in memory."""

import json
import math
import shutil

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import orthoscope
from orthoscope.pipeline.run import UPDATE_COS_COLUMNS
from tests.helpers import Q0, copy_with, shard_of


def tensors(folder):
    out = {}
    for shard in sorted(folder.glob("*.safetensors")):
        out.update(load_file(shard))
    return out


@pytest.fixture(scope="module")
def three_posts(planted, tmp_path_factory):
    """The planted post, its update reversed in q of layer 0 ("flip"), and an unchanged copy of the base ("same")."""
    base, post = planted
    folder = tmp_path_factory.mktemp("three")
    W_b, W_p = load_file(shard_of(base, Q0))[Q0], load_file(shard_of(post, Q0))[Q0]
    flip = copy_with(post, folder / "flip", Q0, W_b - (W_p - W_b))
    same = folder / "same"
    shutil.copytree(base, same)
    return base, post, flip, same


def test_update_cos_of_every_pair_equals_an_independent_reference(three_posts, tmp_path):
    base, post, flip, same = three_posts
    result = orthoscope.compare(base, {"post": post, "flip": flip, "same": same}, tmp_path / "r", kinds="q,o")
    pairs = pd.read_parquet(tmp_path / "r" / "update_cos.parquet")
    assert list(pairs.columns) == list(UPDATE_COS_COLUMNS)
    assert sorted({(a, b) for a, b in zip(pairs.post_a, pairs.post_b)}) == [
        ("flip", "same"), ("post", "flip"), ("post", "same")]
    B, P, F = tensors(base), tensors(post), tensors(flip)
    for row in pairs[(pairs.post_a == "post") & (pairs.post_b == "flip")].itertuples():
        d1, d2 = (P[row.name].double() - B[row.name].double()), (F[row.name].double() - B[row.name].double())
        expected = float((d1 * d2).sum() / (d1.norm() * d2.norm()))
        assert row.update_cos == pytest.approx(expected, abs=1e-9)
        assert row.update_cos == pytest.approx(-1.0 if row.name == Q0 else 1.0, abs=1e-5)
    assert pairs[pairs.post_b == "same"].update_cos.isna().all()  # no update: undefined, not 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    entry = next(e for e in summary["update_cos"] if (e["post_a"], e["post_b"], e["kind"]) == ("post", "flip", "q"))
    assert entry["n"] == 2 and entry["median"] == pytest.approx(0.0, abs=1e-5)  # -1 and 1
    same_entry = next(e for e in summary["update_cos"] if e["post_b"] == "same")
    assert same_entry["n"] == 0 and same_entry["median"] is None
    assert any("post same holds the same bytes as the base in every analysed matrix" in n for n in summary["notes"])
    assert not any("post flip" in n and "same bytes" in n for n in summary["notes"])
    pd.testing.assert_frame_equal(result.update_cos, pairs)


def test_one_post_writes_no_pairs(planted, tmp_path):
    result = orthoscope.compare(*planted, tmp_path / "r", kinds="q")
    assert result.update_cos.empty and not (tmp_path / "r" / "update_cos.parquet").exists()
    assert result.summary["update_cos"] == []


def test_series_gets_steps_sorted_numerically(planted, tmp_path):
    base, post = planted
    series = tmp_path / "cot"
    for step in ("step-1000", "step-150", "step-20"):
        shutil.copytree(post, series / step)
    table = orthoscope.compare(base, sorted(series.iterdir()), kinds="q").table  # glob order: 1000, 150, 20
    assert list(dict.fromkeys(table.post)) == ["step-20", "step-150", "step-1000"]
    assert str(table.step.dtype) == "Int64" and list(dict.fromkeys(table.step)) == [20, 150, 1000]
    plain = orthoscope.compare(*planted, kinds="q").table
    assert plain.step.isna().all()


def test_named_posts_and_default_control(planted, tmp_path):
    base, post = planted
    result = orthoscope.compare(base, {"mine": post, "control": post}, kinds="q")
    assert list(dict.fromkeys(result.table.post)) == ["mine", "control"]
    assert result.summary["settings"]["control"] == "control" and "verdicts" in result.summary
    mixed = orthoscope.compare(base, [post, ("theirs", post)], kinds="q", control="theirs")
    assert list(dict.fromkeys(mixed.table.post)) == ["post", "theirs"]
    assert mixed.summary["settings"]["control"] == "theirs"
    with pytest.raises(orthoscope.errors.OrthoscopeError, match="--control 'nobody' is not one of the posts"):
        orthoscope.compare(base, post, kinds="q", control="nobody")


def test_api_validates_layers_and_kinds_like_the_cli(planted):
    table = orthoscope.compare(*planted, layers="0-0", kinds="up,down").table
    assert sorted(set(table.kind)) == ["down", "up"] and set(table.layer) == {0}
    with pytest.raises(orthoscope.errors.OrthoscopeError, match="unknown --kinds qq"):
        orthoscope.compare(*planted, kinds="qq")
    with pytest.raises(orthoscope.errors.OrthoscopeError, match="unknown compare option 'colour'"):
        orthoscope.compare(*planted, colour="red")


def test_in_memory_module_and_state_dict_equal_the_path_run(planted):
    from transformers import AutoModelForCausalLM

    base, post = planted
    module = AutoModelForCausalLM.from_pretrained(base)
    state = tensors(post)
    by_path = orthoscope.compare(base, {"mine": post}).table
    in_memory = orthoscope.compare(module, {"mine": state}).table
    pd.testing.assert_frame_equal(in_memory, by_path, rtol=1e-12, atol=1e-12)
    unnamed = orthoscope.compare(module, [state, state]).table
    assert list(dict.fromkeys(unnamed.post)) == ["post", "post-2"]
    assert not math.isnan(unnamed.a_geo.iloc[0]) and torch.is_tensor(next(iter(state.values())))
