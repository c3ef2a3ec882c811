"""The shipped default family: present, unchanged, loadable, and post-training visibly worked."""

import json

from orthoscope.evaluation import load_model
from orthoscope.lab.shipped import FAMILY, manifest, shipped_family, shipped_root, verify_shipped


def test_shipped_files_match_their_recorded_hashes():
    assert verify_shipped() == []
    files = manifest()["files"]
    assert {f"{name}/model.safetensors" for name in FAMILY} <= set(files)
    total = sum((shipped_root() / name).stat().st_size for name in files)
    assert total < 20 * 2**20


def test_shipped_models_load_and_have_under_a_million_parameters():
    for name, folder in shipped_family().items():
        model, tokenizer = load_model(folder)
        assert sum(p.numel() for p in model.parameters()) < 1_000_000
        assert tokenizer.decode(tokenizer("12 + 35")["input_ids"]) == "12 + 35"


def test_recorded_evaluation_shows_each_variant_beats_the_base_on_its_format():
    evaluation = manifest()["eval"]
    # the tiny base never saw the Q/A format; instruct answers questions about facts it only read as
    # statements (entities held out of SFT), cot learned column addition; the control learned neither
    assert evaluation["instruct"]["lab-facts"] >= evaluation["base"]["lab-facts"] + 0.2
    assert evaluation["cot"]["lab-cot"] >= evaluation["base"]["lab-cot"] + 0.05
    assert evaluation["control"]["lab-facts"] == evaluation["control"]["lab-cot"] == 0.0


def test_recorded_recipe():
    record = manifest()
    assert record["command"].startswith("python scripts/make_default.py")
    assert record["seed"] == 0 and record["preset"] == "tiny"
    lab = json.loads((shipped_root() / "lab.json").read_text())
    assert lab["preset"]["name"] == "tiny"
