"""The README's Trainer, TRL and plain-loop examples run as written on a tiny from_config model."""

import re
from pathlib import Path

import pytest
import torch

from orthoscope.pipeline.runfolder import RunFolder

from ..monitor.conftest import tiny_llama

README = Path(__file__).resolve().parents[2] / "README.md"


def example(intro: str) -> str:
    """The indented code block right after the README paragraph that starts with `intro`."""
    section = README.read_text().split("## Watch post-training as it happens", 1)[1].split("\n## ", 1)[0]
    after = section.split(intro, 1)[1]
    block = re.search(r"\n\n((?:    .*\n|\n)+)", after).group(1)
    return "\n".join(line[4:] for line in block.splitlines())


def namespace(base, tmp_path) -> dict:
    import transformers

    ids = torch.randint(0, 64, (8, 16), generator=torch.Generator().manual_seed(0))
    model = tiny_llama()
    return {"base": base, "model": model, "train_dataset": [{"input_ids": i, "labels": i} for i in ids],
            "args": transformers.TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=2, save_steps=2,
                                                   per_device_train_batch_size=4, report_to="none", use_cpu=True,
                                                   disable_tqdm=True),
            "batches": [{"input_ids": i[None], "labels": i[None]} for i in ids[:4]],
            "optimizer": torch.optim.AdamW(model.parameters(), lr=1e-2)}


def test_the_trainer_example(base_folder, tmp_path):
    scope = namespace(base_folder, tmp_path)
    exec(example("With a transformers `Trainer`"), scope)
    assert list(RunFolder(tmp_path / "out" / "orthoscope").read_table().post.unique()) == ["step-2"]


def test_the_plain_loop_example(base_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(example("In a plain loop").replace("step % 50", "step % 2"), namespace(base_folder, tmp_path))
    assert sorted(RunFolder(tmp_path / "runs" / "live").read_table().step.unique()) == [2, 4]
    assert capsys.readouterr().out.count("rel_delta ") == 2


def test_the_background_example(base_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = example("So that training does not wait").replace("step % 50", "step % 2")
    exec("from orthoscope import Monitor\n" + code, namespace(base_folder, tmp_path))  # the plain loop's import
    assert sorted(RunFolder(tmp_path / "runs" / "live").read_table().step.unique()) == [2, 4]
    assert capsys.readouterr().out.count("rel_delta ") == 2


def test_the_trl_example(base_folder, tmp_path, monkeypatch):
    pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    from orthoscope.lab.tokenizer import char_tokenizer

    monkeypatch.chdir(tmp_path)
    scope = namespace(base_folder, tmp_path)
    ids = [d["input_ids"].tolist() for d in scope["train_dataset"]]
    scope.update(train_dataset=datasets.Dataset.from_dict({"input_ids": ids}), tokenizer=char_tokenizer())
    code = (example("With TRL")
            .replace('output_dir="sft"', 'output_dir="sft", max_steps=2, report_to="none", use_cpu=True, '
                                         'bf16=False, per_device_train_batch_size=4, disable_tqdm=True')
            .replace("SFTTrainer(model=model,", "SFTTrainer(model=model, processing_class=tokenizer,")
            .replace("every_n_steps=50", "every_n_steps=1"))
    exec(code, scope)
    assert sorted(RunFolder(tmp_path / "sft" / "orthoscope").read_table().step.unique()) == [1, 2]
