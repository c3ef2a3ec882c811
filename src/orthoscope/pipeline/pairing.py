"""Pair a base checkpoint with its post-trained versions, matrix by matrix."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from orthoscope.architectures import MatrixRef, find_matrices
from orthoscope.errors import PairingError
from orthoscope.pipeline.filters import check_layer_range, parse_kinds, parse_layers
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
    steps: list[int | None] = field(default_factory=list)

    def pairs(self) -> tuple[tuple[int, int], ...]:
        """Every pair of posts (i < j), for post-against-post measures."""
        n = len(self.posts)
        return tuple((i, j) for i in range(n) for j in range(i + 1, n))


STEP = re.compile(r"(?:^|[^A-Za-z0-9])?(?:global_step|step|checkpoint|ckpt|iter)[-_]?(\d+)$", re.IGNORECASE)


def step_of(label: str) -> int | None:
    """The training step a post's name ends in (`step-150`, `checkpoint-150`, `global_step150`), else None.

    >>> [step_of(n) for n in ("step-150", "cot/checkpoint-20", "global_step7", "instruct", "v2")]
    [150, 20, 7, None, None]
    """
    match = STEP.search(label)
    return int(match.group(1)) if match else None


def series_order(labels: list[str]) -> list[int]:
    """Indices of `labels` with each series (same name before the step) sorted by step, at the
    place of its first member; other posts keep their place.

    >>> series_order(["step-1000", "base-chat", "step-150", "step-20"])
    [3, 2, 0, 1]
    """
    first: dict[str, int] = {}
    keys = []
    for index, label in enumerate(labels):
        step = step_of(label)
        group = label[: STEP.search(label).start(1)] if step is not None else f"\0{label}"
        first.setdefault(group, index)
        keys.append((first[group], -1 if step is None else step, index))
    return [key[2] for key in sorted(keys)]


def post_labels(posts: list[Checkpoint], given: list[str | None] | None = None,
                in_memory: list[bool] | None = None) -> list[str]:
    """Unique names for the posts: the name given, else the folder or hub repo name
    (`post` for a model held in memory); repeats get `-2`, `-3`, ... (a checkpoint
    of a series first tries its parent folder: `cot/step-150`)."""
    given = given or [None] * len(posts)
    in_memory = in_memory or [False] * len(posts)
    named = {name for name in given if name}
    labels: list[str] = []
    for ckpt, name, held in zip(posts, given, in_memory):
        if name:
            labels.append(name)
            continue
        spec = ckpt.spec if isinstance(ckpt.spec, str) and not held else ""
        path = Path(spec.rstrip("/")) if spec and not spec.startswith("<") else None
        label = (path.name if path else "") or "post"
        taken = set(labels) | named
        if label in taken and path is not None and step_of(label) is not None and path.parent.name:
            label = f"{path.parent.name}/{label}"
        candidate, n = label, 2
        while candidate in taken:
            candidate, n = f"{label}-{n}", n + 1
        labels.append(candidate)
    return labels


def make_plan(
    base: Checkpoint,
    posts: list[Checkpoint],
    layers: set[int] | None = None,
    kinds: set[str] | None = None,
    include_embeddings: bool = False,
    names: list[str | None] | None = None,
    in_memory: list[bool] | None = None,
) -> Plan:
    """Match every post to the base by name; one clear error listing the first differences.

    Posts are labelled (`names`, else `post_labels`) and series sorted by step (`series_order`).
    """
    refs, notes = find_matrices(base, include_embeddings)
    for post in posts:
        _check_same_architecture(base, post)
        notes += post.files.notes()  # an adapter made for another base model
        post_refs, _ = find_matrices(post, include_embeddings)
        refs = _match(base, post, refs, {r.name: r for r in post_refs}, notes)
    beyond = check_layer_range(parse_layers(layers), {r.layer for r in refs if r.layer >= 0})
    notes += [beyond] if beyond else []
    refs = select(refs, layers, kinds)
    if not refs:
        raise PairingError(
            f"no matrices to analyse in {base.spec} with these filters "
            f"(layers={sorted(layers) if layers else 'all'}, kinds={sorted(kinds) if kinds else 'all'})"
            + "".join(f"; {note}" for note in notes)  # why none is found: tensors not in the map, ...
        )
    labels = post_labels(posts, names, in_memory)
    order = series_order(labels)
    posts, labels = [posts[i] for i in order], [labels[i] for i in order]
    return Plan(base, posts, labels, refs, notes, [step_of(label) for label in labels])


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
    names = {r.name for r in refs}
    for name in [n for n in post_refs if n not in names and post_refs[n].kind == "lm_head"]:
        tied = _tied_head(base, post, post_refs[name], refs, notes)  # the base ties its lm_head to its embedding
        if tied:  # in the place find_matrices gives an lm_head: after the embedding
            at = next(i for i, r in enumerate(refs) if r.kind == "embed" and r.tensor == tied.tied) + 1
            refs = [*refs[:at], tied, *refs[at:]]
    for ref in refs:
        other = post_refs.get(ref.name)
        if other is None and ref.kind == "lm_head":
            other = _tied_head(post, base, ref, list(post_refs.values()), notes)  # the post ties it
            ref = replace(ref, tied=other.tied) if other else ref
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


def _tied_head(tied: Checkpoint, other: Checkpoint, head: MatrixRef, tied_refs: list[MatrixRef],
               notes: list[str]) -> MatrixRef | None:
    """`other`'s lm_head `head`, read from `tied`'s embedding where `tied` stores no lm_head because it ties
    the two (config `tie_word_embeddings` not false): that embedding is its lm_head. None otherwise."""
    embed = next((r for r in tied_refs if r.kind == "embed"), None)
    if embed is None or tied.config.get("tie_word_embeddings") is False or embed.shape[1] != head.shape[1]:
        return None
    notes.append(f"{tied.spec} ties its lm_head to its embedding (it stores no {head.name}): "
                 f"its {embed.tensor} is paired with the lm_head of {other.spec}")
    return replace(head, tied=embed.tensor, shape=embed.shape)  # vocab sizes may differ: cut as for embeddings
