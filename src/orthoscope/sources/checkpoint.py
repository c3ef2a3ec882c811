"""A checkpoint: its config and its tensors, read lazily one at a time, whatever holds them.

`open_checkpoint` takes what a user names a model by: a folder, a weights file, a hub id
(`owner/name[@rev]`), a PEFT adapter (with its base), an `nn.Module`, a state dict, or a
`ModelRef` from `Checkpoint.reference()`. Formats are chosen by `sources.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from orthoscope.errors import OrthoscopeError, SourceError
from orthoscope.sources import hub, memory, registry
from orthoscope.sources.reference import ModelRef
from orthoscope.sources.store import TensorStore, confined_file, read_json_object

CONFIG = "config.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
NOT_SIDE_FILES = ("adapter_config.json",)


@dataclass
class Checkpoint:
    """One model's weights as the user named them.

    >>> ckpt = open_checkpoint({"model.layers.0.mlp.up_proj.weight": torch.ones(4, 2)})
    >>> ckpt.names(), ckpt.shape("model.layers.0.mlp.up_proj.weight"), ckpt.dtype("model.layers.0.mlp.up_proj.weight")
    (['model.layers.0.mlp.up_proj.weight'], (4, 2), torch.float32)
    >>> ckpt.describe()["format"], ckpt.path is None
    ('in-memory', True)
    """

    spec: str
    path: Path | None  # the model folder (the adapter's folder for an adapter); None in memory
    config: dict
    files: TensorStore
    revision: str | None = None
    base: Checkpoint | None = field(default=None, repr=False)  # what an adapter applies to
    _ref: ModelRef | None = field(default=None, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)
    _content_hash: str | None = field(default=None, repr=False)

    @property
    def model_type(self) -> str | None:
        return self.config.get("model_type")

    @property
    def format(self) -> str:
        return self.files.format

    def names(self) -> list[str]:
        return list(self.files.shapes)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.files.shapes[name]

    def dtype(self, name: str) -> torch.dtype:
        """The stored dtype of one tensor (from the header where the format has one)."""
        return self.files.dtype(name)

    def read(self, name: str) -> torch.Tensor:
        """Read one tensor (its stored dtype; GGUF dequantized to float32)."""
        return self.files.read(name)

    def prefetch(self, name: str) -> None:
        """A hint that `name` will be read soon: its bytes start coming into the page cache (no effect on values)."""
        self.files.prefetch(name)

    def shards(self) -> dict[Path, list[str]]:
        """Tensor names grouped by the stored file that holds them (for writers that keep the sharding)."""
        return self.files.shards()

    def side_files(self) -> list[Path]:
        """Files a writer carries over beside the weights (config, tokenizer, generation config).

        Weights, index files and adapter files are left out; an adapter gives its base's side
        files (the merged model is a model of the base's kind); a model in memory has none, so
        a writer should save `config` as config.json when no config.json is among these.
        """
        if self.base is not None:
            return self.base.side_files()
        if self.path is None:
            return []
        return sorted(item for item in self.path.iterdir() if not item.name.endswith(WEIGHT_SUFFIXES)
                      and not item.name.endswith(".index.json") and item.name not in NOT_SIDE_FILES
                      and confined_file(self.path, item))

    def fingerprint(self) -> str:
        """A hash of the weights (computed once: it samples every file, or hashes tensors in memory)."""
        if self._fingerprint is None:
            self._fingerprint = self.files.fingerprint()
        return self._fingerprint

    def content_hash(self) -> str:
        """A hash of every byte of the weights (computed once; reads the whole model, see TensorStore)."""
        if self._content_hash is None:
            self._content_hash = self.files.content_hash()
        return self._content_hash

    def reference(self) -> ModelRef:
        """A small picklable reference that `open_checkpoint` reopens, here or in another process.

        >>> open_checkpoint({"w": torch.ones(2, 2)}).reference()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        orthoscope.errors.OrthoscopeError: <in-memory state dict> is held in memory: another process ...
        """
        if self._ref is None:
            raise OrthoscopeError(
                f"{self.spec} is held in memory: another process (a Ray worker) cannot reopen it; "
                "save it with save_pretrained() and pass the folder, or use the local executor")
        base = self.base.reference() if self.base is not None else None
        return replace(self._ref, base=base, fingerprint=self.fingerprint())

    def known_as(self) -> list[str]:
        """The names this model is known by: its spec, folder, hub id and config `_name_or_path`.

        >>> open_checkpoint({"w": torch.ones(1, 1)}).known_as()
        []
        """
        names = [self.spec, str(self.path) if self.path is not None else None, self.config.get("_name_or_path"),
                 self._ref.hub_id if self._ref is not None else None]
        return [name for name in names if isinstance(name, str) and name and not name.startswith("<")]

    def describe(self) -> dict:
        """What summary.json records about this input."""
        info = {
            "spec": self.spec,
            "path": str(self.path) if self.path is not None else None,
            "model_type": self.model_type,
            "revision": self.revision,
            "format": self.format,
            "fingerprint": self.fingerprint(),
        }
        if self.base is not None:
            info["base"] = self.base.spec
            info["adapter"] = self.files.summary()
        return info


def open_checkpoint(spec: str | Path | ModelRef | Checkpoint | torch.nn.Module | Mapping,
                    revision: str | None = None, *, base: Checkpoint | None = None) -> Checkpoint:
    """Open a model without reading its weights: a folder, a weights file, a .gguf file, a hub id,
    a PEFT adapter (needs `base`), an `nn.Module`, a state dict, or a `ModelRef`.

    `base` is the base model of a run; a post that is stored relative to it (an adapter)
    needs it to be opened. A hub id may pin its revision as `owner/name@rev`; `revision`
    applies otherwise.

    >>> open_checkpoint("Qwen/Qwen2.5-0.5B-Instruct", revision="main")  # doctest: +SKIP
    >>> open_checkpoint("Qwen/Qwen2.5-0.5B-Instruct@7ae5576")            # doctest: +SKIP
    >>> open_checkpoint("adapters/my-lora", base=open_checkpoint("Qwen/Qwen2.5-0.5B"))  # doctest: +SKIP
    """
    if isinstance(spec, Checkpoint):
        return spec
    if isinstance(spec, ModelRef):
        return _reopen(spec, base)
    if memory.detect(spec):
        store, config, label = memory.open(spec)
        return Checkpoint(label, None, config, store)
    if not isinstance(spec, (str, Path)):
        raise SourceError(f"cannot open a {type(spec).__name__} as a model: pass a path, a hub id, "
                          "an nn.Module or a state dict")
    text = str(spec)
    path = Path(text).expanduser()
    try:
        found = path.exists() or path.is_symlink()
    except (OSError, ValueError) as err:  # a name too long, a NUL byte
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise SourceError(f"not a usable path: {shown!r} ({getattr(err, 'strerror', None) or err})") from None
    if found:
        if revision is not None:
            raise SourceError(f"--revision {revision!r} applies to hub ids, but {text} is a local path "
                              "(drop --revision, or check out that revision there)")
        ref = ModelRef(text, str(path.absolute()))
    elif hub.detect(text):
        hub_id, asked, snapshot = hub.open(text, revision)
        ref = ModelRef(text, str(snapshot), hub_id, asked or snapshot.name, snapshot.name)
    else:
        raise SourceError(f"path does not exist: {text}")
    return _open_local(ref, base)


def _open_local(ref: ModelRef, base: Checkpoint | None) -> Checkpoint:
    target = Path(ref.path)
    if not target.exists():
        raise SourceError(f"path does not exist: {ref.path} (a broken link?)")
    fmt = registry.pick(target)
    folder = target if target.is_dir() else target.parent
    if fmt.relative:
        if base is None:
            raise SourceError(
                f"{ref.spec} is a PEFT adapter: it is read against its base model "
                "(compare passes the base; in Python: open_checkpoint(adapter, base=open_checkpoint(base)))")
        store = fmt.open(target, base.files, base.spec, base.known_as())
        return Checkpoint(ref.spec, folder, base.config, store, ref.revision, base, ref)
    store = fmt.open(target)
    return Checkpoint(ref.spec, folder, read_config(folder) or store.metadata_config(), store, ref.revision, None, ref)


def _reopen(ref: ModelRef, given_base: Checkpoint | None = None) -> Checkpoint:
    base = None
    if ref.base is not None:  # an adapter: reuse the base the caller opened if it is the same one
        same = given_base is not None and given_base._ref is not None and given_base.reference() == ref.base
        base = given_base if same else _reopen(ref.base)
    if not Path(ref.path).exists():
        if ref.hub_id is None:
            raise SourceError(f"cannot reopen {ref.spec}: {ref.path} does not exist on this machine")
        ref = replace(ref, path=str(hub.download(ref.hub_id, ref.commit or ref.revision)))
    ckpt = _open_local(ref, base)
    if ref.fingerprint is not None and ckpt.fingerprint() != ref.fingerprint:
        raise SourceError(f"the weights of {ref.spec} changed since they were first opened "
                          f"(fingerprint {ref.fingerprint} -> {ckpt.fingerprint()})")
    return ckpt


def read_config(folder: Path) -> dict:
    """The folder's config.json as a dict; {} if there is none."""
    config_file = folder / CONFIG
    if not (config_file.exists() or config_file.is_symlink()):
        return {}
    return read_json_object(config_file, "config")
