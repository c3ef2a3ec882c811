"""PEFT LoRA adapters, read as the merged model: `W_b + s B A` for each adapted matrix.

An adapter folder holds `adapter_config.json` and `adapter_model.safetensors` (or `.bin`)
with keys `base_model.model.<module>.lora_A.weight` (r x in) and `.lora_B.weight`
(out x r). Against the base the user gives, each adapted tensor is built when read,
one at a time: `W_b + s * B @ A` with `s = alpha / r` (`alpha / sqrt(r)` with rsLoRA;
`alpha` and `r` per module from `alpha_pattern` and the tensors' shapes), transposed
for `fan_in_fan_out` (GPT-2's Conv1D) and for embeddings. Tensors the adapter does not
touch are the base's own tensors, bit for bit. Tensors the adapter stores whole
(`modules_to_save`, saved embedding layers, trained biases) replace the base's.
DoRA and other PEFT methods are refused with one line: they are not low-rank additions.

An adapter names the model it was trained on (`base_model_name_or_path`). When that name
clearly differs from every name the given base is known by (its spec, folder, hub id,
config `_name_or_path`; compared whole and by last path component), a shape that does not
fit says so in its error, and an adapter whose shapes fit is read with a note saying so.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from orthoscope.errors import SourceError
from orthoscope.sources import safetensors_files, torch_files
from orthoscope.sources.store import TensorFiles, TensorStore, read_json_object, regular_file

NAME = "peft-lora"
CONFIG = "adapter_config.json"
PREFIX = "base_model.model."
UNSUPPORTED = {  # adapter_config key -> why it cannot be read as an additive low-rank update
    "use_dora": "DoRA (use_dora) rescales each column by a learned magnitude: not an additive low-rank update",
    "layer_replication": "layer_replication changes the layer structure",
    "target_parameters": "LoRA on bare parameters (target_parameters) is not supported",
    "trainable_token_indices": "trainable token indices are not supported",
    "use_qalora": "QALoRA is not supported",
    "lora_bias": "LoRA with lora_bias is not supported",
}


def detect(target: Path) -> bool:
    """A folder holding `adapter_config.json` and adapter weights, or no other weights.

    A full model folder that merely carries a stray `adapter_config.json` is read as the full model.
    """
    if not (target.is_dir() and (target / CONFIG).exists()):
        return False
    if any((target / name).exists() for name in (safetensors_files.ADAPTER_FILE, torch_files.ADAPTER_FILE)):
        return True
    return not (safetensors_files.detect(target) or torch_files.detect(target))


@dataclass(frozen=True)
class Lora:
    """One adapted tensor: the adapter keys of its factors, its scale, and how the product lies."""

    a: str
    b: str
    scale: float
    transpose: bool  # fan_in_fan_out or an embedding: the update is (B A)^T


def pattern_value(patterns: dict, module: str, default, source: Path | None = None):
    """PEFT's per-module override: the first pattern matching the end of the module name.

    >>> pattern_value({"v_proj": 16}, "model.layers.0.self_attn.v_proj", 8)
    16
    >>> pattern_value({"layers.1.self_attn.q_proj": 2}, "model.layers.0.self_attn.q_proj", 4)
    4
    """
    for key, value in patterns.items():
        if matches(key, module, source, "alpha_pattern"):
            return value
    return default


MAX_PATTERN = 512  # characters of a pattern from an adapter config
PATTERN_SECONDS = 0.25  # time one match may take: a pattern that backtracks exponentially is refused


def matches(key: object, module: str, source: Path | None, field: str) -> bool:
    """Whether the user pattern `key` matches the end of `module` (PEFT's rule), under a time bound.

    The pattern comes from a file: `(a+)+$` against a long name would backtrack for hours
    with `re`; the `regex` engine stops it after PATTERN_SECONDS and the config is refused.

    >>> matches("q_proj", "model.layers.0.self_attn.q_proj", None, "alpha_pattern")
    True
    >>> matches("(a|aa)+c", "a" * 60 + "b", Path("adapter_config.json"), "alpha_pattern")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    orthoscope.errors.SourceError: adapter_config.json: alpha_pattern key '(a|aa)+c' takes too long to match (...)
    """
    import regex

    if not isinstance(key, str) or len(key) > MAX_PATTERN:
        raise SourceError(f"{source}: {field} key {str(key)[:40]!r} "
                          f"is not a pattern of at most {MAX_PATTERN} characters")
    try:
        return regex.match(rf"(.*\.)?({key})$", module, timeout=PATTERN_SECONDS) is not None
    except regex.error as err:
        raise SourceError(f"{source}: {field} key {key!r} is not a valid pattern ({err})") from None
    except TimeoutError:
        raise SourceError(f"{source}: {field} key {key!r} takes too long to match "
                          "(a pattern that backtracks without end?)") from None


def open(target: Path, base: TensorStore, base_label: str = "the base",  # noqa: A001
         known_as: Iterable[str] = ()) -> AdapterTensors:
    """The merged view of adapter folder `target` over the base's tensors; reads only headers.

    `known_as`: the names the base is known by (see `made_for`); none: no check of the adapter's base name.
    """
    config_path = target / CONFIG
    config = read_json_object(config_path, "adapter config")
    other = made_for(config, known_as)
    mismatch = (f"; {config_path} names base_model_name_or_path {other!r}, not {base_label}"
                if other else "")
    kind = config.get("peft_type")
    if kind != "LORA":
        raise SourceError(f"{config_path} describes a {kind} adapter; only LoRA adapters can be read")
    for key, why in UNSUPPORTED.items():
        if config.get(key):
            raise SourceError(f"{config_path}: {why}; "
                              "merge it with peft (merge_and_unload) and compare the merged model")
    alpha, patterns = config.get("lora_alpha", 8), config.get("alpha_pattern") or {}
    if not isinstance(patterns, dict):
        raise SourceError(f"{config_path}: alpha_pattern must be a mapping")
    for value in (alpha, *patterns.values()):
        check_alpha(value, config_path)
    weights = _weights_file(target)
    read_files = safetensors_files.read_files if weights.suffix == ".safetensors" else torch_files.read_files
    stored = read_files(target, [weights])
    factors, replaced, extra = _classify(stored, weights, base)
    shapes = {**base.shapes, **extra}
    shapes.update({name: stored.shapes[key] for name, key in replaced.items()})

    for pattern_field in ("alpha_pattern", "rank_pattern"):  # every pattern is tried on every module, each timed
        patterns_of_field = config.get(pattern_field)
        for key in (patterns_of_field or {}) if isinstance(patterns_of_field, dict) else ():
            for module in factors:
                matches(key, module, config_path, pattern_field)
    loras: dict[str, Lora] = {}
    for module, parts in sorted(factors.items()):
        name = _base_name(module + ".weight", base)
        if name is None:
            raise SourceError(f"{weights} adapts {module!r}, but {base_label} has no tensor {module}.weight"
                              + mismatch)
        embedding = "lora_embedding_A" in parts or "lora_embedding_B" in parts
        a_key = parts.get("lora_embedding_A" if embedding else "lora_A")
        b_key = parts.get("lora_embedding_B" if embedding else "lora_B")
        if a_key is None or b_key is None:
            raise SourceError(f"{weights} holds only one of the two LoRA factors of {module!r}")
        a_shape, b_shape = stored.shapes[a_key], stored.shapes[b_key]
        if len(a_shape) != 2 or len(b_shape) != 2 or a_shape[0] != b_shape[1] or a_shape[0] == 0:
            raise SourceError(f"{weights}: LoRA factors of {module!r} have shapes {a_shape} and {b_shape}, "
                              "not (r, in) and (out, r)")
        transpose = embedding or bool(config.get("fan_in_fan_out"))
        expected = (a_shape[1], b_shape[0]) if transpose else (b_shape[0], a_shape[1])
        if shapes[name] != expected:
            raise SourceError(f"{weights}: the update of {module!r} is {expected[0]} x {expected[1]}, "
                              f"but {name} in {base_label} is {' x '.join(map(str, shapes[name]))}" + mismatch)
        rank, module_alpha = a_shape[0], pattern_value(patterns, module, alpha, config_path)
        check_rank(config, module, rank, weights, config_path)
        scale = module_alpha / math.sqrt(rank) if config.get("use_rslora") else module_alpha / rank
        loras[name] = Lora(a_key, b_key, float(scale), transpose)
    check_targets(config, factors, config_path)
    notes = [f"{config_path} names base_model_name_or_path {other!r}, but the base given is {base_label}: "
             "its shapes fit, so it is read against that base (is it the model the adapter was trained on?)"
             ] if other else []
    return AdapterTensors(shapes=shapes, base=base, adapter=stored, loras=loras, replaced=replaced,
                          config_bytes=config_path.read_bytes(), folder=target, warnings=notes)


def made_for(config: dict, known_as: Iterable[str]) -> str | None:
    """The adapter's `base_model_name_or_path` when it clearly names another model than `known_as`, else None.

    Names are compared without case, whole and by their last path component (a hub id
    `org/name`, a local folder `.../name`, the hub cache's `models--org--name`); an empty
    field, or a base known by no name (held in memory), is never a mismatch.

    >>> made_for({"base_model_name_or_path": "Qwen/Qwen2.5-0.5B"}, ["/models/qwen2.5-0.5b"]) is None
    True
    >>> made_for({"base_model_name_or_path": "meta-llama/Llama-2-7b-hf"}, ["Qwen/Qwen2.5-0.5B@main"])
    'meta-llama/Llama-2-7b-hf'
    >>> made_for({"base_model_name_or_path": ""}, ["Qwen/Qwen2.5-0.5B"]) is None
    True
    """
    named = config.get("base_model_name_or_path")
    if not isinstance(named, str) or not named.strip():
        return None
    known = set().union(*(_forms(name) for name in known_as if isinstance(name, str) and name))
    if not known or _forms(named) & known:
        return None
    return named


def _forms(name: str) -> set[str]:
    """A model name as it may be written: whole, its last path component, and org/name from the hub cache."""
    forms = set()
    for text in (name.strip().rstrip("/\\").lower(), name.strip().split("@")[0].rstrip("/\\").lower()):
        parts = re.split(r"[/\\]", text)
        forms |= {text, parts[-1]}
        for part in parts:
            if part.startswith("models--"):  # the hub cache's folder of org/name
                hub_id = part.removeprefix("models--").replace("--", "/")
                forms |= {hub_id, hub_id.split("/")[-1]}
    return {form for form in forms if form}


MAX_ALPHA = 1e6  # PEFT trains with alphas of 1 to a few hundred; beyond this the merged weights overflow


def check_alpha(alpha: object, config_path: Path) -> None:
    """Refuse a lora_alpha (or alpha_pattern value) that is not a finite number of sane size."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) \
            or abs(alpha) > MAX_ALPHA:
        raise SourceError(f"{config_path}: lora_alpha {str(alpha)[:40]!r} is not a finite number of at most "
                          f"{MAX_ALPHA:g} in size")


def check_rank(config: dict, module: str, rank: int, weights: Path, config_path: Path) -> None:
    """Refuse factors whose rank is not the config's `r` (or its rank_pattern entry): PEFT scales by that r."""
    patterns = config.get("rank_pattern") or {}
    if not isinstance(patterns, dict):
        raise SourceError(f"{config_path}: rank_pattern must be a mapping")
    stated = pattern_value(patterns, module, config.get("r"), config_path)
    if stated is None:
        return
    if isinstance(stated, bool) or not isinstance(stated, int) or stated <= 0:
        raise SourceError(f"{config_path}: r is {str(stated)[:40]!r}, not a positive integer")
    if stated != rank:
        raise SourceError(f"{config_path} says r = {stated} for {module!r}, but its factors in {weights.name} "
                          f"have rank {rank}")


def check_targets(config: dict, factors: dict, config_path: Path) -> None:
    """Refuse target_modules naming modules the adapter does not adapt (PEFT refuses them: not in the model)."""
    targets = config.get("target_modules")
    if not isinstance(targets, list) or not factors:
        return
    for target in targets:
        if isinstance(target, str) and not any(module == target or module.endswith("." + target)
                                               for module in factors):
            raise SourceError(f"{config_path}: target module {target!r} is adapted nowhere in this adapter "
                              "(the config lies, or belongs to another adapter)")


def _base_name(name: str, base: TensorStore) -> str | None:
    """The base tensor an adapter key names (with or without the inner `model.` prefix)."""
    for candidate in (name, name.removeprefix("model."), "model." + name):
        if candidate in base.shapes:
            return candidate
    return None


def _classify(stored: TensorFiles, weights: Path, base: TensorStore):
    """Split the adapter's keys: LoRA factors per module, whole tensors replacing the base's
    (modules_to_save, saved embedding layers, trained biases), and tensors the base lacks."""
    factors: dict[str, dict[str, str]] = {}
    replaced: dict[str, str] = {}
    extra: dict[str, tuple[int, ...]] = {}
    for key in stored.shapes:
        name = key.removeprefix(PREFIX)
        part = re.fullmatch(r"(.+)\.(lora_A|lora_B)(?:\.default)?\.weight"
                            r"|(.+)\.(lora_embedding_[AB])(?:\.default)?", name)
        if part:
            module, which = (part.group(1), part.group(2)) if part.group(1) else (part.group(3), part.group(4))
            factors.setdefault(module, {})[which] = key
            continue
        if ".lora_" in name:
            raise SourceError(f"{weights} holds {key!r}, a LoRA tensor of a kind orthoscope does not merge")
        name = re.sub(r"\.(base_layer|original_module|modules_to_save(\.default)?)\.", ".", name)
        target_name = _base_name(name, base)
        if target_name is None:
            extra[name] = stored.shapes[key]
            target_name = name
        replaced[target_name] = key
    return factors, replaced, extra


def _weights_file(folder: Path) -> Path:
    for name in (safetensors_files.ADAPTER_FILE, torch_files.ADAPTER_FILE):
        if (folder / name).exists() or (folder / name).is_symlink():
            return regular_file(folder / name)
    raise SourceError(f"adapter folder {folder} has {CONFIG} but no {safetensors_files.ADAPTER_FILE} "
                      f"or {torch_files.ADAPTER_FILE}")


@dataclass
class AdapterTensors(TensorStore):
    """The base's tensors with the adapter's updates added, built one tensor at a time on `read`."""

    shapes: dict[str, tuple[int, ...]]
    base: TensorStore
    adapter: TensorFiles
    loras: dict[str, Lora]
    replaced: dict[str, str]
    config_bytes: bytes
    folder: Path
    format: str = NAME
    warnings: list[str] = field(default_factory=list)  # what a run should say about this adapter
    _fingerprint: str | None = field(default=None, repr=False)

    def read(self, name: str) -> torch.Tensor:
        weight = self.adapter.read(self.replaced[name]) if name in self.replaced else self.base.read(name)
        lora = self.loras.get(name)
        if lora is None:
            return weight
        delta = self.adapter.read(lora.b).float() @ self.adapter.read(lora.a).float()
        if lora.transpose:
            delta = delta.T
        return (weight.float() + delta * lora.scale).to(weight.dtype)

    def dtype(self, name: str) -> torch.dtype:
        return self.adapter.dtype(self.replaced[name]) if name in self.replaced else self.base.dtype(name)

    def shards(self) -> dict[Path, list[str]]:
        groups = {path: list(names) for path, names in self.base.shards().items()}
        known = {n for names in groups.values() for n in names}
        extra = [n for n in self.shapes if n not in known]
        if extra:
            groups.setdefault(next(iter(self.adapter.shards())), []).extend(extra)
        return groups

    def fingerprint(self) -> str:
        """The base's fingerprint, the adapter file's and its config's bytes."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for part in (self.base.fingerprint().encode(), self.adapter.fingerprint().encode(), self.config_bytes):
                digest.update(part)
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def content_hash(self) -> str:
        """The base's content hash, the adapter file's and its config's bytes."""
        digest = hashlib.sha256()
        for part in (self.base.content_hash().encode(), self.adapter.content_hash().encode(), self.config_bytes):
            digest.update(part)
        return digest.hexdigest()[:32]

    def notes(self) -> list[str]:
        """A run's notes about this adapter (made for another base model)."""
        return list(self.warnings)

    def summary(self) -> dict:
        """What describe() records: how many tensors the adapter changes and replaces."""
        return {"adapted": len(self.loras), "replaced": sorted(self.replaced)}
