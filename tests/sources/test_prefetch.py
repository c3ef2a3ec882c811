"""Reading ahead: each tensor's byte range in its file, and the hint that asks the OS for it."""

import torch
from safetensors.torch import save_file

from orthoscope.sources import open_checkpoint, store


def test_safetensors_byte_ranges_hold_each_tensors_bytes(tmp_path):
    tensors = {"a.weight": torch.randn(7, 5), "b.weight": torch.randn(3, 4).to(torch.bfloat16),
               "c.bias": torch.arange(6, dtype=torch.int64)}
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    ckpt = open_checkpoint(tmp_path)
    raw = (tmp_path / "model.safetensors").read_bytes()
    for name, tensor in tensors.items():
        offset, length = ckpt.files.byte_range(name)
        assert raw[offset:offset + length] == tensor.contiguous().view(torch.uint8).numpy().tobytes(), name


def test_prefetch_asks_for_the_range_and_never_raises(tmp_path, monkeypatch):
    save_file({"w": torch.ones(64, 64)}, str(tmp_path / "model.safetensors"))
    ckpt = open_checkpoint(tmp_path)
    asked = []
    monkeypatch.setattr(store, "advise_willneed", lambda path, offset, length: asked.append((path.name, length)))
    ckpt.prefetch("w")
    assert asked == [("model.safetensors", 64 * 64 * 4)]
    monkeypatch.undo()
    ckpt.prefetch("w")  # the real call: a hint, no effect on what is read
    assert torch.equal(ckpt.read("w"), torch.ones(64, 64))
    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 16)  # the file replaced by junk: still no error
    ckpt.files._spans.clear()
    assert ckpt.files.byte_range("w") is None
    ckpt.prefetch("w")
    store.advise_willneed(tmp_path / "missing.bin", 0, 10)  # a missing file: nothing happens


def test_in_memory_models_have_nothing_to_prefetch(monkeypatch):
    import os

    asked = []
    monkeypatch.setattr(store, "advise_willneed", lambda *args: asked.append(args))
    monkeypatch.setattr(os, "posix_fadvise", lambda *args: asked.append(args), raising=False)
    weight = torch.arange(8.0).reshape(4, 2)
    ckpt = open_checkpoint({"model.layers.0.mlp.up_proj.weight": weight})
    ckpt.prefetch("model.layers.0.mlp.up_proj.weight")
    assert asked == []  # no file to ask the OS about
    assert torch.equal(ckpt.read("model.layers.0.mlp.up_proj.weight"), weight)
