"""Inputs that fit together only partly (issue 26, the weak cases): each gives the right numbers with a note
saying what was done, or one line and exit 2, never a silent guess.

An adapter trained on another base model, a base that ties its lm_head to its embedding against a post
that unties them (and the reverse), and a rank-deficient base matrix whose singular vectors are not all
defined.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

import orthoscope
from tests.helpers import Q0, copy_with, shard_of
from tests.reliability.in_process import cli, one_line
from tests.sources.conftest import save_lora, tiny_llama

EMBED, HEAD = "model.embed_tokens.weight", "lm_head.weight"


# ----------------------------------------------------------------- an adapter made for another base model


@pytest.fixture(scope="module")
def lora(tmp_path_factory):
    """A tiny llama base (saved as `models/tiny-base`, its config naming `lab/tiny-base`) and a LoRA of it."""
    pytest.importorskip("peft")
    root = tmp_path_factory.mktemp("lora")
    tiny_llama().save_pretrained(root / "tiny-base")
    config = json.loads((root / "tiny-base" / "config.json").read_text())
    (root / "tiny-base" / "config.json").write_text(json.dumps({**config, "_name_or_path": "lab/tiny-base"}))
    adapter, merged = save_lora(root, "adapter", tiny_llama, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    return root / "tiny-base", adapter, merged


def made_for(adapter: Path, folder: Path, name: str | None) -> Path:
    """A copy of `adapter` whose adapter_config.json names `name` as its base_model_name_or_path."""
    copy = shutil.copytree(adapter, folder)
    config = json.loads((copy / "adapter_config.json").read_text())
    (copy / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": name}))
    return copy


def test_an_adapter_made_for_another_base_whose_shapes_fit_is_read_with_a_note(lora, tmp_path):
    base, adapter, merged = lora
    other = made_for(adapter, tmp_path / "adapter", "meta-llama/Llama-2-7b-hf")
    code, output = cli("compare", base, other, "-o", tmp_path / "r", "--no-report")
    assert code == 0, output
    notes = json.loads((tmp_path / "r" / "summary.json").read_text())["notes"]
    said = [n for n in notes if "base_model_name_or_path" in n]
    assert len(said) == 1 and "\n" not in said[0]
    for needle in (str(other / "adapter_config.json"), "'meta-llama/Llama-2-7b-hf'", f"the base given is {base}"):
        assert needle in said[0], (needle, said[0])
    assert "note: " in output and "meta-llama/Llama-2-7b-hf" in output
    # the numbers are the merged model's: the note changes nothing that is measured
    table = pd.read_parquet(tmp_path / "r" / "metrics.parquet")
    reference = orthoscope.compare(base, merged, cache=False).table
    assert (table.a_geo - reference.a_geo).abs().max() < 1e-6


@pytest.mark.parametrize("name", ["", None, "lab/tiny-base", "/home/someone/models/tiny-base/",
                                  "models--lab--tiny-base", "TINY-BASE"])
def test_an_adapter_whose_base_name_fits_the_base_given_gets_no_note(lora, tmp_path, name):
    base, adapter, _ = lora
    result = orthoscope.compare(base, made_for(adapter, tmp_path / "adapter", name), kinds="q", cache=False)
    assert not [n for n in result.summary["notes"] if "base_model_name_or_path" in n]


def test_a_base_known_by_its_config_name_only_gets_no_note(lora, tmp_path):
    base, adapter, _ = lora
    renamed = shutil.copytree(base, tmp_path / "checkpoint-final")  # config _name_or_path: lab/tiny-base
    result = orthoscope.compare(renamed, made_for(adapter, tmp_path / "adapter", "lab/tiny-base"), kinds="q",
                                cache=False)
    assert not [n for n in result.summary["notes"] if "base_model_name_or_path" in n]


def test_an_adapter_made_for_another_base_whose_shapes_do_not_fit_names_both_models(lora, tmp_path):
    _, adapter, _ = lora
    tiny_llama(hidden_size=16, intermediate_size=32).save_pretrained(tmp_path / "small")
    other = made_for(adapter, tmp_path / "adapter", "lab/tiny-base")
    code, output = cli("compare", tmp_path / "small", other, "-o", tmp_path / "r", "--no-report")
    one_line(code, output, "the update of 'model.layers.0.self_attn.q_proj' is 32 x 32",
             str(other / "adapter_config.json"), "names base_model_name_or_path 'lab/tiny-base'",
             f"not {tmp_path / 'small'}")


# ----------------------------------------------------------------- tied and untied embeddings


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory):
    """Tiny llamas saved by transformers: `tied` (no lm_head tensor stored) and `untied` (its own lm_head)."""
    root = tmp_path_factory.mktemp("tied")
    tiny_llama(0, tie_word_embeddings=True).save_pretrained(root / "tied")
    tiny_llama(1, tie_word_embeddings=False).save_pretrained(root / "untied")
    assert HEAD not in load_file(root / "tied" / "model.safetensors")
    return root


def stored(folder: Path, name: str) -> torch.Tensor:
    return load_file(folder / "model.safetensors")[name].double()


@pytest.mark.parametrize("base_name, post_name", [("tied", "untied"), ("untied", "tied")])
def test_an_lm_head_is_paired_with_the_tied_sides_embedding(embeddings, tmp_path, base_name, post_name):
    base, post = embeddings / base_name, embeddings / post_name
    code, output = cli("compare", base, post, "-o", tmp_path / "r", "--include-embeddings", "--no-report")
    assert code == 0, output
    table = pd.read_parquet(tmp_path / "r" / "metrics.parquet").set_index("name")
    W_b = stored(base, HEAD if base_name == "untied" else EMBED)
    W_p = stored(post, HEAD if post_name == "untied" else EMBED)
    assert table.a_fro[HEAD] == pytest.approx((W_p.norm() / W_b.norm()).item(), rel=1e-9)
    assert table.rel_delta[HEAD] == pytest.approx(((W_p - W_b).norm() / W_b.norm()).item(), rel=1e-6)
    assert table.a_fro[EMBED] == pytest.approx((stored(post, EMBED).norm() / stored(base, EMBED).norm()).item(),
                                               rel=1e-9)
    tied = embeddings / "tied"
    note = f"{tied} ties its lm_head to its embedding (it stores no {HEAD}): its {EMBED} is paired with the lm_head"
    notes = json.loads((tmp_path / "r" / "summary.json").read_text())["notes"]
    assert any(note in n for n in notes), notes
    assert list(table.kind[:2]) == ["embed", "lm_head"]  # in the usual place, whichever side ties


def test_without_include_embeddings_tied_and_untied_compare_as_before(embeddings):
    result = orthoscope.compare(embeddings / "tied", embeddings / "untied", cache=False)
    assert HEAD not in set(result.table.name) and EMBED not in set(result.table.name)
    assert not [n for n in result.summary["notes"] if "ties its lm_head" in n]


def test_a_missing_lm_head_that_the_config_says_is_untied_is_one_line(embeddings, tmp_path):
    broken = shutil.copytree(embeddings / "tied", tmp_path / "broken")
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}))
    code, output = cli("compare", broken, embeddings / "untied", "-o", tmp_path / "r", "--include-embeddings")
    one_line(code, output, "differ in 1 matrices: lm_head.weight missing in base")


# ----------------------------------------------------------------- a rank-deficient matrix


def rank_one(W: torch.Tensor) -> torch.Tensor:
    """W's best rank-1 approximation, in W's dtype."""
    U, S, Vh = torch.linalg.svd(W.double())
    return (S[0] * torch.outer(U[:, 0], Vh[0])).to(W.dtype)


VECTOR_COLUMNS = ("incons", "coherence", "rot", "rel_incons", "incons_gap", "intruders", "pa_mean_u", "pa_max_v")
BASE_FRAME_COLUMNS = ("asym", "sym_frac", "z_pair", "p_pair", "incons_null")


@pytest.fixture(scope="module")
def rank_deficient(planted, tmp_path_factory):
    """The planted pair with layer 0's q_proj replaced by its rank-1 part in the base, and in the post."""
    base, post = planted
    root = tmp_path_factory.mktemp("rank")
    return {"base": copy_with(base, root / "base", Q0, rank_one(load_file(shard_of(base, Q0))[Q0])),
            "post": copy_with(post, root / "post", Q0, rank_one(load_file(shard_of(post, Q0))[Q0]))}


def test_a_rank_one_base_matrix_has_no_rotation_or_symmetry_and_says_why(planted, rank_deficient, tmp_path):
    code, output = cli("compare", rank_deficient["base"], planted[1], "-o", tmp_path / "r", "--kinds", "q,k")
    assert code == 0, output
    table = pd.read_parquet(tmp_path / "r" / "metrics.parquet").set_index("name")
    row = table.loc[Q0]
    assert row.note.startswith("base has numerical rank 1 < r = 64 (s_i > 1e-6 s_1)")
    assert row[list(VECTOR_COLUMNS + BASE_FRAME_COLUMNS)].isna().all()  # rot was 0.67, read from an arbitrary basis
    assert row[["a_geo", "a_fro", "rel_delta"]].notna().all() and row.changed
    others = table.drop(index=Q0)
    assert (others.note == "").all() and others[list(VECTOR_COLUMNS)].notna().all().all()
    notes = json.loads((tmp_path / "r" / "summary.json").read_text())["notes"]
    said = [n for n in notes if Q0 in n]
    assert len(said) == 1 and "1 matrix has a note" in said[0] and "numerical rank 1" in said[0]
    assert "numerical rank 1" in (tmp_path / "r" / "report.html").read_text()
    code, output = cli("summary", tmp_path / "r")
    flowing = " ".join(output.split())  # the note as printed, wrapped or not at the terminal's width
    assert code == 0 and f"note: post: 1 matrix has a note (the note column of metrics.csv): {Q0}" in flowing


def test_a_rank_one_post_matrix_has_no_rotation_but_keeps_the_base_frame_columns(planted, rank_deficient):
    table = orthoscope.compare(planted[0], rank_deficient["post"], kinds="q", cache=False).table.set_index("name")
    row = table.loc[Q0]
    assert row.note.startswith("post has numerical rank 1 < r = 64")
    assert row[list(VECTOR_COLUMNS)].isna().all() and row[list(BASE_FRAME_COLUMNS)].notna().all()


def test_a_run_folder_written_before_the_note_column_still_reads(planted, tmp_path):
    orthoscope.compare(*planted, tmp_path / "r", kinds="q")
    metrics = tmp_path / "r" / "metrics.parquet"
    pd.read_parquet(metrics).drop(columns="note").to_parquet(metrics, index=False)
    for command in ("summary", "report"):
        code, output = cli(command, tmp_path / "r")
        assert code == 0 and "Traceback" not in output, output


def test_a_checkpoint_none_of_whose_tensors_fits_its_map_says_why(planted, tmp_path):
    folder = tmp_path / "renamed"
    folder.mkdir()
    shutil.copy(planted[1] / "config.json", folder)  # qwen2, but its one tensor has no name of the map
    save_file({"model.layers.0.attention.query.weight": torch.zeros(4, 4)}, folder / "model.safetensors")
    code, output = cli("compare", folder, folder, "-o", tmp_path / "r")
    one_line(code, output, "no matrices to analyse", "1 tensor of 2 or more dimensions is not in the qwen2 map",
             "model.layers.0.attention.query.weight")
