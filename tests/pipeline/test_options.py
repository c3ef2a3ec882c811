"""One options object for the CLI and the API; executors behind one interface; the run folder's layout."""

import dataclasses
import json

import pytest
from typer.testing import CliRunner

import orthoscope
from orthoscope.cli import app
from orthoscope.errors import OrthoscopeError
from orthoscope.pipeline import CompareOptions, Executor, LocalExecutor, RayExecutor, RunFolder, make_executor
from orthoscope.pipeline import run as run_module
from orthoscope.pipeline.work import Job, JobResult

runner = CliRunner()


def test_strings_and_sets_give_the_same_options():
    assert CompareOptions(layers="0-2,5", kinds="q,k") == CompareOptions(layers={0, 1, 2, 5}, kinds=["k", "q"])
    options = CompareOptions(metrics="sign-free", executor="ray")
    assert isinstance(options.executor, RayExecutor) and "incons" not in options.metrics


@pytest.mark.parametrize("field, value, message", [
    ("device", "bogus", "unknown --device 'bogus'"),
    ("device", "cuda:x", "unknown --device"),
    ("cache_limit_gib", float("inf"), "--cache-limit must be a finite number"),
    ("cache_limit_gib", -1, "--cache-limit must be a finite number"),
    ("seed", 2**64, "--seed must be an integer"),
    ("seed", -5, "--seed must be an integer"),
    ("seed", True, "--seed must be an integer"),
    ("layers", [-1], "bad --layers item -1"),
    ("kinds", "q,nope", "unknown --kinds nope"),
    ("metrics", "a_geo,banana", "unknown metric 'banana'"),
    ("precision", "half", "unknown precision"),
    ("control", "", "--control must name a post"),
])
def test_each_bad_value_is_refused_by_the_object(field, value, message):
    with pytest.raises(OrthoscopeError, match=message.replace("(", r"\(").replace("+", r"\+")):
        CompareOptions(**{field: value})


def test_fallback_kind_names_are_accepted():
    assert CompareOptions(kinds="mlp.fc_in").kinds == frozenset({"mlp.fc_in"})


def test_executors_own_their_options():
    assert make_executor("ray", address="ray://head:10001", workers=3) == RayExecutor("ray://head:10001", 3)
    assert make_executor("local", address=None, workers=None) == LocalExecutor()
    with pytest.raises(OrthoscopeError, match="--address applies to --executor ray only"):
        make_executor("local", address="ray://head:10001")
    for executor in (LocalExecutor(), RayExecutor()):
        assert isinstance(executor, Executor)
    assert LocalExecutor().device("cpu") == "cpu" and RayExecutor().device("cuda") == "cuda"


def test_a_new_executor_is_one_class(planted):
    """Any object with device/run/describe runs compare: here one that runs jobs in reverse order."""

    @dataclasses.dataclass(frozen=True)
    class Reversed(LocalExecutor):
        name = "reversed"

        def run(self, plan, jobs, settings, on_result):
            LocalExecutor.run(self, plan, list(reversed(jobs)), settings, on_result)

    result = orthoscope.compare(*planted, executor=Reversed(), kinds="q,o", cache=False)
    reference = orthoscope.compare(*planted, kinds="q,o", cache=False)
    assert result.summary["settings"]["executor"] == "reversed"
    assert result.table.equals(reference.table)


def test_cli_and_api_build_the_same_options(planted, tmp_path, monkeypatch):
    seen = []
    real = run_module.compare

    def spy(base, posts, out=None, options=None, **kwargs):
        seen.append((posts, options))
        return real(base, posts, out, options, **kwargs)

    monkeypatch.setattr("orthoscope.pipeline.compare", spy)
    args = ["compare", str(planted[0]), f"mine={planted[1]}", "-o", str(tmp_path / "r"), "-q", "--no-report",
            "--layers", "0-1", "--kinds", "q,o", "--seed", "7", "--metrics", "sign-free", "--cache-limit", "1.5",
            "--executor", "local", "--control", "mine"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    posts, options = seen[0]
    assert posts == [("mine", str(planted[1]))]
    assert options == CompareOptions(layers="0-1", kinds="q,o", seed=7, metrics="sign-free", cache_limit_gib=1.5,
                                     control="mine")
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["settings"]["control"] == "mine" and list(summary["posts"]) == ["mine"]


def test_name_equals_path_only_for_plain_names_and_missing_paths(planted, tmp_path):
    from orthoscope.cli import _named_post

    odd = tmp_path / "a=b"
    odd.mkdir()
    assert _named_post(f"mine={planted[1]}") == ("mine", str(planted[1]))
    assert _named_post(str(odd)) == str(odd)  # an existing path with "=" stays a path
    assert _named_post("my model=x") == "my model=x"
    assert _named_post("org/model") == "org/model"


def test_run_folder_layout(tmp_path):
    folder = RunFolder(tmp_path / "r")
    assert folder.metrics_parquet == tmp_path / "r" / "metrics.parquet"
    assert folder.update_cos_parquet.name == "update_cos.parquet" and folder.report_html.name == "report.html"
    assert folder.part_path("a b", "x.w").parent.name != folder.part_path("a_b", "x.w").parent.name
    with folder.open({"base": "b", "posts": {}, "settings": {"seed": 0}}):
        assert folder.identity() == {"base": "b", "posts": {}, "settings": {"seed": 0}}
    with pytest.raises(OrthoscopeError, match="other inputs or settings \\(settings.seed: 0 there, 1 now\\)"):
        with folder.open({"base": "b", "posts": {}, "settings": {"seed": 1}}):
            pass


def test_job_result_shapes():
    assert Job.__dataclass_fields__.keys() >= {"ref", "posts", "known", "pairs", "known_pairs"}
    assert JobResult([]).pairs == [] and JobResult([]).cache == {}
