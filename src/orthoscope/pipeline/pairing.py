"""Pair a base checkpoint with its post-trained versions, matrix by matrix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from orthoscope.architectures import MatrixRef, find_matrices
from orthoscope.errors import PairingError
from orthoscope.pipeline.filters import parse_kinds, parse_layers
from orthoscope.sources import Checkpoint

SHOWN_DIFFERENCES = 5
VOCAB_KINDS = ("embed", "lm_head")


@dataclass
class Plan:
    """What a run analyses: the base, its posts (with unique labels), the matrices."""

    base: Checkpoint
    posts: list[Checkpoint]
    labels: list[str]
    refs: list[MatrixRef]
    notes: list[str]


def post_labels(posts: list[Checkpoint]) -> list[str]:
    """Short unique names for the posts: folder name or hub repo name."""
    labels: list[str] = []
    for ckpt in posts:
        label = Path(ckpt.spec.rstrip("/")).name or "post"
        candidate, n = label, 2
        while candidate in labels:
            candidate, n = f"{label}-{n}", n + 1
        labels.append(candidate)
    return labels


def make_plan(
    base: Checkpoint,
    posts: list[Checkpoint],
    layers: set[int] | None = None,
    kinds: set[str] | None = None,
    include_embeddings: bool = False,
) -> Plan:
    """Match every post to the base by name; one clear error listing the first differences."""
    refs, notes = find_matrices(base, include_embeddings)
    for post in posts:
        _check_same_architecture(base, post)
        post_refs, _ = find_matrices(post, include_embeddings)
        refs = _match(base, post, refs, {r.name: r for r in post_refs}, notes)
    refs = select(refs, layers, kinds)
    if not refs:
        raise PairingError(
            f"no matrices to analyse in {base.spec} with these filters "
            f"(layers={sorted(layers) if layers else 'all'}, kinds={sorted(kinds) if kinds else 'all'})"
        )
    return Plan(base, posts, post_labels(posts), refs, notes)


def select(refs: list[MatrixRef], layers: str | Iterable[int] | None,
           kinds: str | Iterable[str] | None) -> list[MatrixRef]:
    """The matrices in `layers` and of `kinds` (None: all), validated as the CLI's --layers/--kinds.

    Kinds match whole names (a string "up,down" once matched `o` as a substring);
    kinds present in `refs` (module names of an unknown architecture) are accepted.
    """
    layer_set = parse_layers(layers)
    kind_set = parse_kinds(kinds, known={r.kind for r in refs})
    return [r for r in refs
            if (layer_set is None or r.layer in layer_set) and (kind_set is None or r.kind in kind_set)]


def _check_same_architecture(base: Checkpoint, post: Checkpoint) -> None:
    if base.model_type and post.model_type and base.model_type != post.model_type:
        raise PairingError(
            f"architectures differ: {base.spec} is {base.model_type!r}, {post.spec} is {post.model_type!r}"
        )


def _match(base: Checkpoint, post: Checkpoint, refs: list[MatrixRef], post_refs: dict[str, MatrixRef],
           notes: list[str]) -> list[MatrixRef]:
    differences: list[str] = []
    matched: list[MatrixRef] = []
    for ref in refs:
        other = post_refs.get(ref.name)
        if other is None:
            differences.append(f"{ref.name} missing in post")
        elif other.shape == ref.shape:
            matched.append(ref)
        elif ref.kind in VOCAB_KINDS and other.shape[1] == ref.shape[1]:
            common = min(ref.shape[0], other.shape[0])
            notes.append(f"vocab sizes differ for {ref.name} ({ref.shape[0]} vs {other.shape[0]}): "
                         f"comparing the first {common} rows")
            matched.append(ref.with_rows(common))
        else:
            differences.append(f"{ref.name} shape {ref.shape} vs {other.shape}")
    names = {r.name for r in refs}
    differences += [f"{name} missing in base" for name in post_refs if name not in names]
    if differences:
        shown = "; ".join(differences[:SHOWN_DIFFERENCES])
        more = len(differences) - SHOWN_DIFFERENCES
        raise PairingError(
            f"{base.spec} and {post.spec} differ in {len(differences)} matrices: {shown}"
            + (f" (and {more} more)" if more > 0 else "")
        )
    return matched
