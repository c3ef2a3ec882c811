"""The formats a local checkpoint may be stored in, tried in order; adding a format is one module.

Each format module has `NAME`, `detect(target) -> bool` and `open(target) -> TensorStore`,
where `target` is a folder or one weights file. A format stored relative to a base
model (a PEFT adapter) is opened with the base's tensors.

>>> [f.name for f in FORMATS]
['peft-lora', 'safetensors', 'torch-bin', 'gguf']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orthoscope.errors import SourceError
from orthoscope.sources import adapter, gguf, safetensors_files, torch_files
from orthoscope.sources.store import TensorStore


@dataclass(frozen=True)
class Format:
    name: str
    detect: Callable[[Path], bool]
    open: Callable[..., TensorStore]
    relative: bool = False  # stored relative to a base model: open(target, base_store, base_label, known_as)


FORMATS = (
    Format(adapter.NAME, adapter.detect, adapter.open, relative=True),
    Format(safetensors_files.NAME, safetensors_files.detect, safetensors_files.open),
    Format(torch_files.NAME, torch_files.detect, torch_files.open),
    Format(gguf.NAME, gguf.detect, gguf.open),
)


def pick(target: Path) -> Format:
    """The first format that recognises `target` (a folder or a weights file)."""
    for fmt in FORMATS:
        if fmt.detect(target):
            return fmt
    if target.is_dir():
        raise SourceError(
            f"no weights found in {target} (expected {safetensors_files.INDEX}, *.safetensors, "
            f"pytorch_model*.bin, *.gguf or a PEFT adapter)")
    raise SourceError(f"{target} is not a weights file orthoscope reads (.safetensors, .bin, .pt, .pth, .gguf)")
