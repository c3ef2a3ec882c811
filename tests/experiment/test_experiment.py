"""The paper's intervention table on the shipped family: every registered condition, controls, intervals, resume."""

import pandas as pd
import pytest
from scipy.stats import binomtest

from orthoscope.experiment import run as run_module
from orthoscope.experiment import run_experiment
from orthoscope.lab.shipped import shipped_family

TEXT = "The colour of Zorvin is red.\n12 + 30 = 42.\nThe small cat sees a dog.\n"
CONDITIONS = [
    "post", "swap-sigma@1", "swap-sigma@auto", "swap-sigma@0.9", "swap-sigma@1.1", "base-vectors", "break-left",
    "break-right", "break-random", "reconstruct", "interpolate@0", "interpolate@0.25", "interpolate@0.5",
    "interpolate@0.75", "interpolate@1", "noise", "rotate-random"]


def test_experiment_table_controls_intervals_plot_and_resume(tmp_path, monkeypatch):
    family = shipped_family()
    # one layer, a square (o), a GQA (k: 48 x 96) and a tall (gate: 288 x 96) matrix
    lines = []
    kwargs = dict(grid=(0.9, 1.1), tasks=["lab-facts"], limit=4, text=TEXT, layers={0}, kinds={"o", "k", "gate"},
                  log=lines.append)
    table = run_experiment(family["base"], family["instruct"], tmp_path / "exp", **kwargs)
    assert list(table.condition) == CONDITIONS
    # the one condition whose weights are another's says so in its log line
    assert [line.split()[0] for line in lines if "scores reused" in line] == ["interpolate@1"]
    assert next(line for line in lines if "scores reused" in line).endswith("(same weights as post: scores reused)")
    by = table.set_index("condition")
    # the geodesic ends at the post model on every shape
    assert by.loc["interpolate@1", "ppl"] == pytest.approx(by.loc["post", "ppl"], rel=1e-5)
    assert by.loc["interpolate@1", "cka_vs_post"] == pytest.approx(1.0, abs=1e-6)
    assert by.loc["interpolate@0", "ppl"] != pytest.approx(by.loc["post", "ppl"], rel=1e-3)
    assert by.loc["post", "cka_vs_post"] == pytest.approx(1.0, abs=1e-9)
    # each claim's condition names its size-matched controls
    assert by.loc["break-left", "control"] == "noise,rotate-random"
    assert by.loc["swap-sigma@0.9", "control"] == "noise" and by.loc["reconstruct", "control"] == "rotate-random"
    assert by.loc["noise", "claim"].startswith("control") and by.loc["post", "control"] == ""
    # n and the Wilson 95 % interval of every accuracy
    for _, row in table.iterrows():
        n = row["lab-facts:n"]
        ci = binomtest(round(row["lab-facts"] * n), n).proportion_ci(method="wilson")
        assert n == 4 and (row["lab-facts:lo"], row["lab-facts:hi"]) == pytest.approx((ci.low, ci.high))
    # the post row is what `orthoscope eval` reports for the same model, task and limit: same n, same interval
    from orthoscope.evaluation import evaluate_model
    from orthoscope.lab.tasks import LAB_SUITE

    evaluated = evaluate_model(family["instruct"], tasks=["lab-facts"], limit=4, suite=LAB_SUITE)
    assert {k: by.loc["post", k] for k in evaluated} == evaluated
    # reconstruct drops what leaves the base subspaces of the rectangular matrices
    assert 0.01 < by.loc["reconstruct", "dropped_share"] < 0.5
    assert by["dropped_share"].drop("reconstruct").isna().all()
    claims = pd.read_csv(tmp_path / "exp" / "claims.csv")
    pair = claims[(claims.condition == "break-left") & (claims.control == "noise") & (claims.score == "lab-facts")]
    assert len(pair) == 1 and pair.n.item() == pair.control_n.item() == 4
    assert pair.control_value.item() == by.loc["noise", "lab-facts"]
    assert (tmp_path / "exp" / "experiment.png").stat().st_size > 10_000
    assert pd.read_csv(tmp_path / "exp" / "experiment.csv").shape[0] == len(CONDITIONS)

    calls = []
    monkeypatch.setattr(run_module, "_evaluate", lambda *a: calls.append(1) or {})
    again = run_experiment(family["base"], family["instruct"], tmp_path / "exp", **kwargs)
    assert calls == [] and again.equals(table)
    run_experiment(family["base"], family["instruct"], tmp_path / "exp", **{**kwargs, "limit": 5})
    assert len(calls) == len(CONDITIONS) - 1  # another option: nothing reused (interpolate@1 = post: scored once)
    run_experiment(family["base"], family["instruct"], tmp_path / "exp", **{**kwargs, "limit": 5, "layers": {1}})
    assert len(calls) == 2 * (len(CONDITIONS) - 1)  # the same count of matrices, other ones: nothing reused


def test_condition_records_of_another_selection_are_not_served(tmp_path, monkeypatch):
    """A resume key names the matrices and every option: changing any one of them recomputes."""
    family = shipped_family()
    plan_a = run_module.plan_for(family["base"], family["instruct"], {0}, {"q"})
    plan_b = run_module.plan_for(family["base"], family["instruct"], {1}, {"q"})
    base = dict(grid=(1.0,), tasks=[], limit=3, text=None, seed=0, layers={0}, kinds={"q"})
    key = run_module.run_key(plan_a, **base)
    assert key != run_module.run_key(plan_b, **{**base, "layers": {1}})
    for option, value in [("grid", (1.0, 2.0)), ("tasks", ["lab-arith"]), ("limit", 4), ("text", "x"),
                          ("seed", 1), ("kinds", {"q", "k"}), ("layers", {0, 1})]:
        assert run_module.run_key(plan_a, **{**base, option: value}) != key, option


def test_the_weights_digest_tells_apart_exactly_the_plans_weights_that_differ():
    """Conditions share scores iff the plan's tensors hold the same bytes (torch.equal, the reference): a
    change of 1e-6 or of sign tells apart, a restored value or a parameter outside the plan does not;
    bfloat16 weights are read too."""
    import itertools
    from types import SimpleNamespace

    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.Linear(6, 4)).to(torch.bfloat16)
    plan = SimpleNamespace(refs=[SimpleNamespace(tensor=name) for name in ("0.weight", "1.weight", "0.weight")])
    params = dict(model.named_parameters())
    saved = params["0.weight"].detach().clone()
    states = []
    with torch.no_grad():
        for change in (lambda: None, lambda: params["0.weight"][0, 0].add_(0.25),
                       lambda: params["0.weight"].copy_(saved), lambda: params["1.weight"].mul_(-1),
                       lambda: params["1.weight"].mul_(-1), lambda: params["0.bias"].add_(1),
                       lambda: params["1.weight"][1, 2].fill_(0.0)):
            change()
            states.append((run_module._weights_digest(model, plan),
                           [params[n].detach().clone() for n in ("0.weight", "1.weight")]))
    for (d1, w1), (d2, w2) in itertools.combinations(states, 2):
        assert (d1 == d2) == all(torch.equal(a, b) for a, b in zip(w1, w2))
    assert len({d for d, _ in states}) == 4
