"""Sources: hub ids through the HF cache (offline), vocab differences, lazy shapes."""

import shutil

import pytest
import torch
from safetensors.torch import load_file

import orthoscope
from orthoscope.sources import open_checkpoint
from tests.helpers import copy_with, shard_of

SHA = "0123456789abcdef0123456789abcdef01234567"


def fake_hub_cache(hf_home, repo_id: str, folder) -> None:
    """The layout huggingface_hub leaves after a download: snapshots/<sha> and refs/main."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / SHA)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)


def test_hub_ids_resolve_from_the_cache_offline(planted, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    fake_hub_cache(tmp_path, "lab/tiny-base", planted[0])
    fake_hub_cache(tmp_path, "lab/tiny-post", planted[1])
    result = orthoscope.compare("lab/tiny-base", "lab/tiny-post@main")
    assert result.summary["base"]["revision"] == SHA
    assert result.summary["posts"]["tiny-post@main"]["revision"] == "main"
    assert result.table.a_geo.max() == pytest.approx(1.2, abs=1e-5)


def test_shapes_are_read_without_loading_tensors(planted):
    ckpt = open_checkpoint(planted[0])
    assert ckpt.model_type == "qwen2"
    assert ckpt.shape("model.layers.0.self_attn.k_proj.weight") == (32, 64)  # GQA: 2 of 4 heads
    assert len(list(planted[0].glob("*.safetensors"))) > 1


def test_differing_vocab_compares_common_rows(planted, tmp_path):
    name = "model.embed_tokens.weight"
    embed = load_file(shard_of(planted[1], name))[name]
    grown = torch.cat([embed, torch.randn(16, embed.shape[1])])
    post = copy_with(planted[1], tmp_path / "grown", name, grown)
    result = orthoscope.compare(planted[0], post, include_embeddings=True)
    row = result.table[result.table.kind == "embed"].iloc[0]
    assert (row.rows, row.cols) == (256, 64)
    assert row.a_geo == pytest.approx(1.0, abs=1e-9) and not row.changed  # the common rows are the base's
    assert any("vocab sizes differ" in note and "256 vs 272" in note for note in result.summary["notes"])
    assert "lm_head" not in set(result.table.kind)  # tied embeddings: no separate lm_head tensor


def test_fingerprints_tell_apart_weights_of_the_same_shapes(planted, tmp_path):
    a, b = open_checkpoint(planted[0]), open_checkpoint(planted[1])
    assert a.fingerprint() != b.fingerprint()
    assert open_checkpoint(shutil.copytree(planted[0], tmp_path / "copy")).fingerprint() == a.fingerprint()


def test_a_hub_reference_reopens_at_its_commit_where_the_path_is_absent(planted, tmp_path, monkeypatch):
    from dataclasses import replace

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    fake_hub_cache(tmp_path, "lab/tiny-base", planted[0])
    ref = open_checkpoint("lab/tiny-base@main").reference()
    assert (ref.hub_id, ref.revision, ref.commit) == ("lab/tiny-base", "main", SHA)
    elsewhere = open_checkpoint(replace(ref, path=str(tmp_path / "not-on-this-machine")))
    assert elsewhere.path.name == SHA and elsewhere.fingerprint() == ref.fingerprint
    assert elsewhere.spec == "lab/tiny-base@main" and elsewhere.revision == "main"


def test_a_file_reference_names_one_file(planted, tmp_path):
    from safetensors.torch import save_file

    folder = shutil.copytree(planted[0], tmp_path / "m")
    save_file({"w": torch.ones(2, 2)}, folder / "single.safetensors")
    one = open_checkpoint(folder / "single.safetensors")
    assert one.names() == ["w"] and one.model_type == "qwen2"  # config.json beside the file
    assert open_checkpoint(one.reference()).names() == ["w"]
