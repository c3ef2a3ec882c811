"""In-memory models (nn.Module, state dict) and references that reopen a checkpoint in another process."""

import pickle
import subprocess
import sys

import pytest
import torch

import orthoscope
from orthoscope.errors import OrthoscopeError, SourceError
from orthoscope.sources import ModelRef, open_checkpoint
from tests.sources.conftest import tiny_llama


@pytest.fixture(scope="module")
def model_and_folder(tmp_path_factory):
    model = tiny_llama(seed=3, tie_word_embeddings=True)
    folder = tmp_path_factory.mktemp("memory") / "saved"
    model.save_pretrained(folder)
    return model, folder


def test_module_and_state_dict_read_as_the_saved_folder(model_and_folder):
    model, folder = model_and_folder
    saved = open_checkpoint(folder)
    for source in (model, model.state_dict()):
        ckpt = open_checkpoint(source)
        assert sorted(ckpt.names()) == sorted(saved.names())  # the tied lm_head is kept once, as on disk
        for name in saved.names():
            assert torch.equal(ckpt.read(name), saved.read(name)), name
            assert ckpt.dtype(name) == saved.dtype(name)
    assert open_checkpoint(model).config["model_type"] == "llama"
    assert open_checkpoint(model.state_dict()).config == {}
    described = open_checkpoint(model).describe()
    assert described["format"] == "in-memory" and described["path"] is None
    assert described["spec"] == "<in-memory LlamaForCausalLM>"


def test_reading_gives_a_copy(model_and_folder):
    model, _ = model_and_folder
    ckpt = open_checkpoint(model)
    name = "model.layers.0.self_attn.q_proj.weight"
    ckpt.read(name).zero_()
    assert model.state_dict()[name].abs().sum() > 0


def test_fingerprint_hashes_the_tensor_bytes(model_and_folder):
    model, _ = model_and_folder
    state = dict(model.state_dict())
    assert open_checkpoint(model).fingerprint() == open_checkpoint(state).fingerprint()
    name = "model.layers.1.mlp.up_proj.weight"
    state[name] = state[name].clone()
    assert open_checkpoint(model).fingerprint() == open_checkpoint(state).fingerprint()
    state[name][3, 5] += 1e-3
    assert open_checkpoint(model).fingerprint() != open_checkpoint(state).fingerprint()


def test_compare_in_memory_equals_the_saved_folders(model_and_folder, tmp_path):
    model, folder = model_and_folder
    post = tiny_llama(seed=4, tie_word_embeddings=True)
    post.save_pretrained(tmp_path / "post")
    a = orthoscope.compare(model, [post.state_dict()], cache=False).table
    b = orthoscope.compare(folder, tmp_path / "post", cache=False).table
    numbers = [c for c in a.columns if a[c].dtype.kind == "f"]
    assert len(a) == len(b) == 14
    assert (a[numbers] - b[numbers]).abs().max().max() == 0


def test_in_memory_models_cannot_be_referenced(model_and_folder):
    with pytest.raises(OrthoscopeError, match="<in-memory LlamaForCausalLM> is held in memory: another process"):
        open_checkpoint(model_and_folder[0]).reference()


@pytest.mark.parametrize("bad, message", [
    ({"w": [1, 2]}, "maps 'w' to a list, not a tensor"),
    ({}, "holds no tensors"),
    (42, "cannot open a int as a model"),
])
def test_bad_in_memory_inputs(bad, message):
    with pytest.raises(SourceError, match=message):
        open_checkpoint(bad)


@pytest.mark.slow
def test_reference_reopens_in_another_process(model_and_folder):
    _, folder = model_and_folder
    ckpt = open_checkpoint(folder)
    ref = ckpt.reference()
    assert isinstance(ref, ModelRef) and ref.fingerprint == ckpt.fingerprint()
    name = "model.layers.1.self_attn.o_proj.weight"
    code = ("import pickle, sys; from orthoscope.sources import open_checkpoint; "
            f"c = open_checkpoint(pickle.loads(sys.stdin.buffer.read())); print(c.spec, c.read({name!r}).sum().item())")
    done = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(ref), capture_output=True, check=True)
    spec, total = done.stdout.decode().split()
    assert spec == str(folder) and float(total) == pytest.approx(ckpt.read(name).sum().item(), abs=1e-6)


def test_reference_refuses_changed_weights(model_and_folder, tmp_path):
    import shutil

    folder = shutil.copytree(model_and_folder[1], tmp_path / "copy")
    ref = open_checkpoint(folder).reference()
    tiny_llama(seed=9, tie_word_embeddings=True).save_pretrained(folder)
    with pytest.raises(SourceError, match="changed since they were first opened"):
        open_checkpoint(ref)


def test_dtype_from_headers(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "m").mkdir()
    save_file({"a": torch.zeros(2, 2, dtype=torch.bfloat16), "b": torch.zeros(3, dtype=torch.int64)},
              tmp_path / "m" / "model.safetensors")
    ckpt = open_checkpoint(tmp_path / "m")
    assert (ckpt.dtype("a"), ckpt.dtype("b")) == (torch.bfloat16, torch.int64)


def test_dtype_of_bin_tensors(tmp_path):
    (tmp_path / "m").mkdir()
    torch.save({"a": torch.zeros(2, 2, dtype=torch.float16), "b": torch.zeros(3, dtype=torch.int32)},
               tmp_path / "m" / "pytorch_model.bin")
    ckpt = open_checkpoint(tmp_path / "m")
    assert (ckpt.dtype("a"), ckpt.dtype("b")) == (torch.float16, torch.int32)
