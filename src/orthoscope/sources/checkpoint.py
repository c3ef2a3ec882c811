"""A checkpoint: its config and its tensors, read lazily one at a time."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from orthoscope.errors import SourceError
from orthoscope.sources.files import TensorFiles, find_tensor_files
from orthoscope.sources.gguf import open_gguf, split_set
from orthoscope.sources.hub import download, looks_like_hub_id


@dataclass
class Checkpoint:
    """One model's weights as the user named them (folder or hub id).

    >>> ckpt = open_checkpoint("tests/data/tiny")       # doctest: +SKIP
    >>> ckpt.model_type, len(ckpt.names())              # doctest: +SKIP
    ('qwen2', 24)
    """

    spec: str
    path: Path
    config: dict
    files: TensorFiles
    revision: str | None = None
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def model_type(self) -> str | None:
        return self.config.get("model_type")

    def names(self) -> list[str]:
        return list(self.files.shapes)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.files.shapes[name]

    def read(self, name: str) -> torch.Tensor:
        """Read one tensor from disk (its stored dtype)."""
        return self.files.read(name)

    def shards(self) -> dict[Path, list[str]]:
        """Tensor names grouped by the stored file that holds them (for writers that keep the sharding)."""
        groups: dict[Path, list[str]] = {}
        for name, path in self.files.location.items():
            groups.setdefault(path, []).append(name)
        return groups

    def fingerprint(self) -> str:
        """A hash of the weight files (computed once: it samples every file on disk)."""
        if self._fingerprint is None:
            self._fingerprint = self.files.fingerprint()
        return self._fingerprint

    def describe(self) -> dict:
        """What summary.json records about this input."""
        return {
            "spec": self.spec,
            "path": str(self.path),
            "model_type": self.model_type,
            "revision": self.revision,
            "format": self.files.format,
            "fingerprint": self.fingerprint(),
        }


def open_checkpoint(spec: str | Path, revision: str | None = None, *, base: Checkpoint | None = None) -> Checkpoint:
    """Open a local folder, a weights file's folder, a .gguf file, or a hub id, without reading weights.

    `base` is the base model of a run; a post that is stored relative to it (an adapter)
    needs it to be opened.

    A hub id may pin its revision as `owner/name@rev`; `revision` applies otherwise.

    >>> open_checkpoint("Qwen/Qwen2.5-0.5B-Instruct", revision="main")  # doctest: +SKIP
    >>> open_checkpoint("Qwen/Qwen2.5-0.5B-Instruct@7ae5576")            # doctest: +SKIP
    """
    text = str(spec)
    path = Path(text).expanduser()
    if not path.exists():
        repo_id, _, pinned = text.partition("@")
        if looks_like_hub_id(repo_id):
            revision = pinned or revision
            path = download(repo_id, revision)
            revision = revision or path.name
        else:
            raise SourceError(f"path does not exist: {text}")
    weights_file = path if path.is_file() else None
    if weights_file is not None:
        path = path.parent
    if weights_file is not None and weights_file.suffix == ".gguf":  # this file, even beside others
        files = open_gguf(path, split_set(weights_file))
    else:
        files = find_tensor_files(path)
    return Checkpoint(text, path, _read_config(path) or files.metadata_config(), files, revision)


def _read_config(folder: Path) -> dict:
    config_file = folder / "config.json"
    if not config_file.is_file():
        return {}
    try:
        return json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SourceError(f"invalid JSON in {config_file}: {err}") from None
