"""--layers / --kinds: one parser for the CLI and the API, exact kind names, bounded layer ranges."""

from __future__ import annotations

import numpy as np
import pytest

import orthoscope
from orthoscope.architectures import KINDS
from orthoscope.errors import OrthoscopeError
from orthoscope.pipeline.filters import MAX_LAYERS, parse_kinds, parse_layers
from orthoscope.pipeline.pairing import make_plan
from orthoscope.sources import open_checkpoint


@pytest.mark.parametrize("given, expected", [
    ("0-1", {0, 1}), ("3", {3}), (" 0 - 2 , 7 ", {0, 1, 2, 7}), ("1,1,0-1", {0, 1}),
    ([0, 1], {0, 1}), ((2,), {2}), (np.array([3, 1]), {1, 3}), (np.int64(2), {2}), (range(3), {0, 1, 2}),
    ({4, 5}, {4, 5}), (6, {6}),
    (None, None), ("", None), ([], None),
])
def test_parse_layers_accepts_text_and_iterables(given, expected):
    assert parse_layers(given) == expected


@pytest.mark.parametrize("given, words", [
    ("0-99999999999", ["'0-99999999999'", f"stop at {MAX_LAYERS - 1}"]),
    (str(MAX_LAYERS), [f"'{MAX_LAYERS}'", "stop at"]),
    ("3-1", ["'3-1'", "end before start"]),
    ("a", ["'a'", "expected e.g. 0-3,10"]),
    ("-1", ["'-1'"]),
    ([0, "1"], ["'1'", "integer"]),
    ([True], ["True"]),
    ([-1], ["-1"]),
    ([MAX_LAYERS], [str(MAX_LAYERS)]),
    (1.5, ["1.5"]),
])
def test_parse_layers_rejects_with_one_line(given, words):
    with pytest.raises(OrthoscopeError) as caught:
        parse_layers(given)
    message = str(caught.value)
    assert "\n" not in message and "--layers" in message
    for word in words:
        assert word in message


def test_huge_layer_range_is_refused_before_allocating():
    # a set of 1e11 ints would need terabytes; the bound is checked before range() is expanded
    with pytest.raises(OrthoscopeError, match="stop at"):
        parse_layers("5,0-99999999999")


@pytest.mark.parametrize("given, expected", [
    ("up,down", {"up", "down"}), (" q , k ", {"q", "k"}), (["kv_a", "router"], {"kv_a", "router"}),
    (("o",), {"o"}), ({"gate"}, {"gate"}), (None, None), ("", None), (" , ", None),
])
def test_parse_kinds_accepts_text_and_iterables(given, expected):
    assert parse_kinds(given) == expected


@pytest.mark.parametrize("given", ["qq", "q,qq", ["q", "qq"], "Q", "up down"])
def test_parse_kinds_rejects_unknown_names_with_one_line(given):
    with pytest.raises(OrthoscopeError) as caught:
        parse_kinds(given)
    message = str(caught.value)
    assert message.startswith("unknown --kinds ") and "\n" not in message
    assert ", ".join(KINDS) in message  # the list of known kinds, in the one KINDS order


def test_parse_kinds_rejects_non_names():
    with pytest.raises(OrthoscopeError, match="bad --kinds"):
        parse_kinds([1, 2])
    with pytest.raises(OrthoscopeError, match="bad --kinds"):
        parse_kinds(3)


def test_known_extends_the_accepted_names():
    assert parse_kinds("self_attn.q_proj", known={"self_attn.q_proj"}) == {"self_attn.q_proj"}


@pytest.fixture(scope="module")
def planted_pair(planted):
    return open_checkpoint(planted[0]), open_checkpoint(planted[1])


@pytest.mark.parametrize("kinds", ["up,down", ["up", "down"], {"up", "down"}])
def test_plan_kinds_match_whole_names_whatever_the_form(planted_pair, kinds):
    base, post = planted_pair
    plan = make_plan(base, [post], kinds=kinds)
    assert {r.kind for r in plan.refs} == {"up", "down"}  # "o" is a substring of "down": not selected


@pytest.mark.parametrize("layers", ["1", [1], {1}, 1, range(1, 2)])
def test_plan_layers_from_text_or_ints(planted_pair, layers):
    base, post = planted_pair
    plan = make_plan(base, [post], layers=layers)
    assert {r.layer for r in plan.refs} == {1} and len(plan.refs) == 7


def test_plan_rejects_unknown_kind(planted_pair):
    base, post = planted_pair
    with pytest.raises(OrthoscopeError, match="unknown --kinds qq"):
        make_plan(base, [post], kinds="qq")


def test_compare_api_filters_exactly(planted):
    result = orthoscope.compare(*planted, kinds="up,down", layers="0-1", metrics="sign-free")
    assert sorted(result.table.kind) == ["down", "down", "up", "up"]
    assert sorted(set(result.table.layer)) == [0, 1]


def test_layers_beyond_the_model_warn_with_its_range_or_stop_when_none_exists(planted):
    from orthoscope.pipeline import compare

    result = compare(planted[0], planted[1], layers="0-7", metrics="quick", cache=False)
    assert "--layers 0-7 goes beyond the model's layers 0-1: analysing 0-1 only (2-7 do not exist)" \
        in result.summary["notes"]
    assert sorted(result.table.layer.unique()) == [0, 1]
    with pytest.raises(OrthoscopeError, match=r"^--layers 5-9: the model has layers 0-1 only$"):
        compare(planted[0], planted[1], layers="5-9", metrics="quick", cache=False)
    inside = compare(planted[0], planted[1], layers="1", metrics="quick", cache=False)
    assert not any("--layers" in note for note in inside.summary["notes"])


def test_filters_and_options_are_recorded_and_explain_missing_verdicts(planted, tmp_path):
    import json

    from typer.testing import CliRunner

    from orthoscope.cli import app

    folder = tmp_path / "run"
    result = CliRunner().invoke(app, ["compare", str(planted[0]), str(planted[1]), "-o", str(folder), "--layers",
                                      "0-7", "--kinds", "q,o", "--metrics", "quick", "--no-cache", "--no-report"],
                                env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "note: --layers 0-7 goes beyond the model's layers 0-1" in result.output
    summary = json.loads((folder / "summary.json").read_text())
    settings = summary["settings"]
    assert (settings["layers"], settings["kinds"], settings["metrics_option"]) == ("0-7", "o,q", "quick")
    assert settings["include_embeddings"] is False and summary["verdicts"]["metrics"] == "quick"
    rotation = summary["verdicts"]["posts"]["post"]["sentences"]["rotation"]
    assert "this run used --metrics quick, which does not compute z_pair, p_pair: rerun compare with " \
           "--metrics all" in rotation
    assert "older orthoscope" not in result.output
    assert "to decide: this run used --metrics quick" in result.stdout
    # an older run (run.json without `schema`, no metrics_option, verdicts without `metrics`): named from its
    # column list by the schema upgrade
    summary["verdicts"].pop("metrics")
    settings.pop("metrics_option")
    (folder / "summary.json").write_text(json.dumps(summary))
    manifest = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "schema"}))
    older = CliRunner().invoke(app, ["summary", str(folder)], env={"COLUMNS": "80"})
    assert older.exit_code == 0 and "to decide: this run used --metrics quick" in older.stdout
    wholly = CliRunner().invoke(app, ["compare", str(planted[0]), str(planted[1]), "-o", str(tmp_path / "r2"),
                                      "--layers", "5-9", "--metrics", "quick", "--no-cache", "--no-report"])
    assert wholly.exit_code == 2 and "--layers 5-9: the model has layers 0-1 only" in wholly.output
