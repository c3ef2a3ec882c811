"""The family maps are validated data; KINDS is the one order of kinds."""

from __future__ import annotations

import pytest

from orthoscope.architectures import KINDS
from orthoscope.architectures.maps import FAMILIES, Family, Fused, kind_order, sort_kinds
from orthoscope.pipeline.filters import parse_kinds


@pytest.mark.parametrize("make, words", [
    (lambda: Family(r"layers\.(\d+)\.", {"mlp.w.weight": "mlp"}), "unknown kinds ['mlp']"),
    (lambda: Family(r"layers\.\d+\.", {"q.weight": "q"}), "exactly one group"),
    (lambda: Family(r"(a)(b)", {"q.weight": "q"}), "exactly one group"),
    (lambda: Family(r"layers\.(\d+)\.", {}, shared={"e.{expert}.w": "up"}), "{expert} may appear once"),
    (lambda: Family(r"layers\.(\d+)\.", {"e.{expert}.{expert}.w": "up"}), "{expert} may appear once"),
    (lambda: Fused(("gate", "up"), "thirds"), "unknown split 'thirds'"),
    (lambda: Fused(("q", "v"), "qkv"), "needs kinds ('q', 'k', 'v')"),
    (lambda: Fused(("gate", "upp")), "unknown kinds ['upp']"),
])
def test_bad_maps_are_refused_when_defined(make, words):
    with pytest.raises(ValueError) as caught:
        make()
    assert words in str(caught.value)


def test_maps_are_read_only():
    with pytest.raises(TypeError):
        FAMILIES["llama"].matrices["self_attn.q_proj.weight"] = "k"


def test_every_kind_a_map_gives_is_a_known_kind_and_parses():
    given = {k for f in FAMILIES.values() for table in (f.matrices, f.shared, f.embeddings) for k in table.values()}
    given |= {k for f in FAMILIES.values() for fused in f.fused.values() for k in fused.kinds}
    assert given == set(KINDS)  # and no kind in KINDS that no map gives
    assert parse_kinds(",".join(given)) == given


def test_one_order_of_kinds():
    assert [kind_order(k) for k in KINDS] == list(range(len(KINDS)))
    assert sort_kinds(["lm_head", "self_attn.x", "down", "router", "q", "down", "mlp.y"]) == \
        ["q", "router", "down", "lm_head", "self_attn.x", "mlp.y"]
