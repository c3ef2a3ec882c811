"""Instruction tuning (lab/tuning.py): size-matched arms, loss on replies only, resume after a kill."""

import json
import os
import signal
import time
import traceback

import pytest
import torch
from safetensors.torch import load_file

from orthoscope.errors import OrthoscopeError
from orthoscope.evaluation.models import load_model
from orthoscope.lab.instructions import training_stream
from orthoscope.lab.real import projections
from orthoscope.lab.recipes import IGNORE
from orthoscope.lab.tokenizer import char_tokenizer
from orthoscope.lab.tuning import TuneOptions, chat_text, latest_resume, pack_arm, prepare, tune

OPTIONS = dict(steps=6, batch=2, seq_len=48, lr=3e-3, save_every=3, resume_every=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A from_config Llama with the lab's character tokenizer, saved as a model folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = char_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    folder = tmp_path_factory.mktemp("tiny") / "base"
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run(folder, out, stop_after=None, **changes):
    torch.set_num_threads(1)
    base, tokenizer = load_model(folder)
    options = TuneOptions(**{**OPTIONS, **changes})
    data = pack_arm("instruct", tokenizer, options.steps * options.batch, options.seq_len)
    weights = {k: v.detach().clone() for k, v in projections(base).items()}
    return tune(base, tokenizer, data, options, "instruct", out, weights, str(folder), stop_after=stop_after)


def test_arms_are_size_matched_and_only_replies_carry_the_loss():
    tok = char_tokenizer()
    arms = {arm: pack_arm(arm, tok, 4, 256) for arm in ("instruct", "cot", "control")}
    assert len({p.tokens for p in arms.values()}) == 1
    assert torch.equal((arms["instruct"].targets != IGNORE).sum(1), (arms["control"].targets != IGNORE).sum(1))
    assert arms["cot"].supervised > arms["instruct"].supervised  # worked solutions are longer
    first = next(training_stream(0))
    prompt, reply = chat_text(tok, first, "instruct")
    assert reply == f" {first.answer}\n<eos>"
    row = arms["instruct"].targets[0]
    supervised = tok.decode([t for t in row[: len(prompt) + len(reply)].tolist() if t != IGNORE])
    assert supervised.startswith(f" {first.answer}\n")  # the first example's loss tokens: its reply, nothing else


def test_trainable_choices_pick_the_parameters(tiny):
    base, _ = load_model(tiny)
    names = {t: {n for n, p in prepare(base, TuneOptions(trainable=t)).named_parameters() if p.requires_grad}
             for t in ("all", "no-embeddings", "attention", "mlp")}
    assert "model.embed_tokens.weight" in names["all"] and "model.embed_tokens.weight" not in names["no-embeddings"]
    assert names["attention"] == {n for n in names["all"] if n.split(".")[-2] in ("q_proj", "k_proj", "v_proj",
                                                                                   "o_proj")}
    assert names["mlp"] and not names["mlp"] & names["attention"]
    with pytest.raises(OrthoscopeError, match="--seq-len 0"):
        TuneOptions(seq_len=0)


def killed_at_step_4(folder, out, failure) -> int:
    """`run` in a forked child (this process's imports, no interpreter start-up) killed with SIGKILL right after it
    writes the step-4 resume point; its pid. The child writes its traceback to `failure` if it fails instead."""
    import orthoscope.lab.tuning as tuning

    pid = os.fork()
    if pid:
        return pid
    try:  # the child: never returns into pytest
        original = tuning.write_resume

        def write_then_die(folder, model, optimizer, step, *rest):
            original(folder, model, optimizer, step, *rest)
            if step == 4:
                os.kill(os.getpid(), signal.SIGKILL)

        tuning.write_resume = write_then_die
        run(folder, out)
        failure.write_text("the run finished without being killed")
    except BaseException:
        failure.write_text(traceback.format_exc())
    finally:
        os._exit(1)


def exit_status(pid: int, timeout: float) -> int:
    """os.waitpid's status of child `pid`; the child is killed and an error raised after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f"the forked run ran past {timeout} s")
        time.sleep(0.02)


def test_a_killed_run_resumes_to_the_same_weights(tiny, tmp_path):
    killed, failure = tmp_path / "killed", tmp_path / "child-failure.txt"
    child = killed_at_step_4(tiny, killed, failure)
    straight = run(tiny, tmp_path / "straight")  # in this process while the child trains
    assert straight["rel_delta"] > 0 and sorted(straight["rel_delta_by_step"]) == ["3", "6"]
    status = exit_status(child, timeout=600)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
        failure.read_text() if failure.exists() else status)
    assert latest_resume(killed / "resume" / "instruct").name == "step-4"
    assert not (killed / "instruct").exists()
    (killed / "resume" / "instruct" / ".step-5.tmp").mkdir()  # a write cut off by the kill is ignored
    resumed = run(tiny, killed)
    assert resumed["resumed_from"] == 4 and resumed["loss"] == straight["loss"]
    a, b = (load_file(p / "instruct" / "model.safetensors") for p in (tmp_path / "straight", killed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    marker = json.loads((killed / "trajectories" / "instruct" / "step-3" / "orthoscope_lab.json").read_text())
    assert marker["step"] == 3


def test_stop_after_then_resume_matches_and_lora_trains_adapters(tiny, tmp_path):
    part = run(tiny, tmp_path / "part", stop_after=2)
    assert part["steps_done"] == 2
    whole = run(tiny, tmp_path / "part")
    assert whole["resumed_from"] == 2 and len(whole["loss"]) == 6 and whole["loss"][:2] == part["loss"]
    lora = run(tiny, tmp_path / "lora", lora=4, lr=1e-2)
    assert (tmp_path / "lora" / "instruct" / "adapter_config.json").is_file()
    assert 0 < lora["rel_delta"] and lora["trained_parameters"] < 5000


def recipe():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "recipes" / "instruct_tune.py"
    spec = importlib.util.spec_from_file_location("instruct_tune", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_trains_evaluates_and_refuses_bad_input(tiny, tmp_path, capsys):
    script = recipe()
    args = ["--base", str(tiny), "--arm", "instruct", "--arm", "control", "--steps", "2", "--batch", "2",
            "--seq-len", "48", "--save-every", "1", "--per-family", "1", "--max-new-tokens", "4",
            "--ppl-chars", "300", "--eval-series", "--out", str(tmp_path)]
    script.main(args)
    table = capsys.readouterr().out
    assert [line.split(" |")[0] for line in table.splitlines()[2:]] == [
        "| base", "| instruct", "| control", "| instruct-step-1", "| control-step-1"]
    result = json.loads((tmp_path / "eval" / "instruct.json").read_text())
    assert result["all:n"] == 22 and result["held_out_families:n"] == 7 and result["ppl"] > 1
    assert result["all:lo"] <= result["all"] <= result["all:hi"]
    run_record = json.loads((tmp_path / "run.json").read_text())
    assert run_record["arms"]["control"]["tokens"] == run_record["arms"]["instruct"]["tokens"] == 2 * 2 * 48
    # invalid values, then other settings than the run folder's
    for bad in (["--lr", "-1"], ["--ppl-text", str(tmp_path / "none.md")], ["--lr", "1e-3"]):
        with pytest.raises(SystemExit) as stop:
            script.main(args + bad)
        assert stop.value.code == 2
    assert "other settings" in capsys.readouterr().err


def test_a_gemma_tokenizer_without_template_gets_gemmas_turns():
    from orthoscope.lab.tuning import ensure_chat_template

    plain = char_tokenizer()
    assert ensure_chat_template(plain) == "plain"
    gemma = char_tokenizer()
    gemma.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    assert ensure_chat_template(gemma) == "gemma" and ensure_chat_template(gemma) == "own"
    item = next(training_stream(0))
    prompt, reply = chat_text(gemma, item, "instruct")
    assert prompt == f"<bos><start_of_turn>user\n{item.prompt}<end_of_turn>\n<start_of_turn>model\n"
    assert reply == f"{item.answer}<end_of_turn>\n"
