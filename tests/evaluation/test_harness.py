"""lm-evaluation-harness on the shipped lab models, with a local task and no network."""

import json
import sys
from pathlib import Path

import pytest

from orthoscope.errors import OrthoscopeError
from orthoscope.evaluation.harness import lm_eval_scores

pytest.importorskip("lm_eval")
pytest.importorskip("accelerate")  # lm-eval's Hugging Face adapter needs it (lm-eval[hf])

TASK = "orthoscope_colours"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No hub access: env vars for libraries imported later, flags for those imported already."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")


@pytest.fixture(scope="module")
def family():
    from orthoscope.evaluation import load_model
    from orthoscope.lab.shipped import shipped_family

    return {name: load_model(shipped_family()[name]) for name in ("base", "instruct")}


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    """A multiple-choice lm-eval task on 8 facts the instruct model was taught, from a local jsonl."""
    from orthoscope.lab.build import lab_world
    from orthoscope.lab.corpus import COLOURS
    from orthoscope.lab.shipped import shipped_family

    world = lab_world(shipped_family()["instruct"])
    folder = tmp_path_factory.mktemp("lm-eval-tasks")
    data = folder / "colours.jsonl"
    data.write_text("".join(json.dumps({"name": name, "label": COLOURS.index(world.colour[name])}) + "\n"
                            for name in world.entities[:8]))
    (folder / f"{TASK}.yaml").write_text(f"""\
task: {TASK}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {json.dumps(str(data))}
test_split: test
output_type: multiple_choice
doc_to_text: "Q: What is the colour of {{{{name}}}}?\\nA:"
doc_to_choice: {json.dumps(COLOURS)}
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
""")
    return folder


def cache_files(*folders: Path) -> set[Path]:
    """lm-eval request-cache pickles and sqlite response caches under `folders`."""
    found = set()
    for folder in folders:
        if folder.is_dir():
            found |= {p for p in folder.rglob("*") if p.suffix in (".pickle", ".db", ".sqlite")}
    return found


@pytest.mark.slow
def test_local_task_scored_afresh_for_each_model(family, task_dir, tmp_path, monkeypatch):
    from lm_eval.caching import cache

    monkeypatch.chdir(tmp_path)  # a cache written relative to the working folder lands in a watched one
    watched = (tmp_path, task_dir, Path.cwd(), Path(cache.PATH))  # (not the repository's .venv: seconds to scan)
    before = cache_files(*watched)
    calls = {name: 0 for name in family}
    hooks = [model.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
             for name, (model, _) in family.items()]
    try:
        scores = {name: lm_eval_scores(model, tok, [TASK], limit=8, batch_size=4, include_path=task_dir)
                  for name, (model, tok) in family.items()}
    finally:
        for hook in hooks:
            hook.remove()

    for name, result in scores.items():
        assert set(result) == {TASK}
        assert 0.0 <= result[TASK]["acc"] <= 1.0
        assert all(isinstance(v, float) for v in result[TASK].values())
        assert not any("," in metric for metric in result[TASK])  # default ",none" filter suffix dropped
    assert calls["base"] > 0 and calls["instruct"] > 0  # both models ran their own forward passes
    assert scores["instruct"][TASK]["acc"] >= 0.75  # it was taught these facts in this Q/A form
    assert scores["instruct"] != scores["base"]  # the second call did not reuse the first one's answers
    assert cache_files(*watched) == before  # no lm-eval cache written anywhere
    assert any((tmp_path / "hf-datasets").rglob("*.arrow"))  # the local jsonl was loaded by datasets, offline


@pytest.fixture
def built_in_index_stood_in(monkeypatch):
    """lm-eval's TaskManager with its built-in index (seconds of CPU over ~15,000 task files) stood in for by one
    built-in name, `arc_easy`; yields the include_defaults of every index built, in order."""
    import lm_eval.tasks

    from orthoscope.evaluation import harness

    built = []

    class StandIn(lm_eval.tasks.TaskManager):
        def __init__(self, *args, include_defaults=True, **kwargs):
            built.append(include_defaults)
            super().__init__(*args, include_defaults=False, **kwargs)
            self.defaults = include_defaults

        @property
        def all_tasks(self):
            return [*super().all_tasks, *(["arc_easy"] if self.defaults else [])]

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", StandIn)
    harness._task_manager.cache_clear()
    yield built
    harness._task_manager.cache_clear()


def test_unknown_task_is_a_user_error(family, task_dir, built_in_index_stood_in):
    model, tok = family["instruct"]
    with pytest.raises(OrthoscopeError, match="orthoscope_colors") as info:
        lm_eval_scores(model, tok, [TASK, "orthoscope_colors", "arc_easy"], include_path=task_dir)
    assert built_in_index_stood_in == [False, True]  # not all local: the whole index was asked for
    assert "\n" not in str(info.value) and "the built-in tasks or" in str(info.value)
    assert TASK in str(info.value)  # suggested as the close match


def test_bad_arguments_are_user_errors(family, tmp_path):
    model, tok = family["instruct"]
    with pytest.raises(OrthoscopeError, match="no lm-eval task"):
        lm_eval_scores(model, tok, [])
    with pytest.raises(OrthoscopeError, match="limit"):
        lm_eval_scores(model, tok, [TASK], limit=0)
    with pytest.raises(OrthoscopeError, match="not a folder"):
        lm_eval_scores(model, tok, [TASK], include_path=tmp_path / "missing")


def test_missing_lm_eval_says_how_to_install(family, monkeypatch):
    model, tok = family["instruct"]
    for module in [m for m in sys.modules if m == "lm_eval" or m.startswith("lm_eval.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval -> ImportError
    with pytest.raises(OrthoscopeError, match=r"pip install 'lm-eval\[hf\]'.*orthoscope\[lm-eval\]") as info:
        lm_eval_scores(model, tok, [TASK])
    assert "\n" not in str(info.value)


def test_cli_eval_with_a_local_lm_eval_task(task_dir):
    from typer.testing import CliRunner

    from orthoscope.cli import app
    from orthoscope.lab.shipped import shipped_family

    result = CliRunner().invoke(app, ["eval", str(shipped_family()["instruct"]), "--lm-eval", TASK,
                                      "--include-path", str(task_dir), "--limit", "8", "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout[result.stdout.index("{"):])  # lm-eval may print a line before the JSON
    assert scores[f"{TASK}:acc"] == 1.0


def test_tasks_all_in_the_include_path_index_that_folder_alone(task_dir, built_in_index_stood_in):
    """Indexing lm-eval's built-in tasks takes seconds: a run whose tasks are all local skips it; one more
    task that is not local builds the whole index (and the unknown-task error above suggests from it)."""
    from orthoscope.evaluation import harness

    built = built_in_index_stood_in
    try:
        assert set(harness._manager_for([TASK], task_dir).all_tasks) == {TASK} and built == [False]
        assert "arc_easy" in harness._manager_for([TASK, "arc_easy"], task_dir).all_tasks and built == [False, True]
        assert harness._manager_for([TASK], task_dir).all_tasks == [TASK] and len(built) == 2  # kept per process
        (task_dir / "group.yaml").write_text("group: colours_and_more\ntask:\n  - " + TASK + "\n  - arc_easy\n")
        built.clear()  # a local group may name built-in tasks: only the whole index resolves them
        assert harness._manager_for(["colours_and_more"], task_dir) is not None and built == [False, True]
    finally:
        (task_dir / "group.yaml").unlink(missing_ok=True)
