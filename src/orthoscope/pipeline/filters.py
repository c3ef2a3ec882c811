"""`--layers 0-3,10` and `--kinds q,k,o`: which matrices to analyse."""

from __future__ import annotations

import re

from orthoscope.architectures import KINDS
from orthoscope.errors import OrthoscopeError


def parse_layers(text: str | None) -> set[int] | None:
    """Layer indices from `0-3,10` (ranges inclusive); None means all.

    >>> sorted(parse_layers("0-3,10"))
    [0, 1, 2, 3, 10]
    """
    if not text:
        return None
    layers: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise OrthoscopeError(f"bad --layers item {part!r} (expected e.g. 0-3,10)")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) else lo
        if hi < lo:
            raise OrthoscopeError(f"bad --layers range {part!r}: end before start")
        layers.update(range(lo, hi + 1))
    return layers


def parse_kinds(text: str | None, known: set[str] | None = None) -> set[str] | None:
    """Kinds from `q,k,o`; None means all. Unknown kinds are an error.

    >>> sorted(parse_kinds("q,k,o"))
    ['k', 'o', 'q']
    """
    if not text:
        return None
    kinds = {k.strip() for k in text.split(",") if k.strip()}
    allowed = set(KINDS) | (known or set())
    unknown = sorted(kinds - allowed)
    if unknown:
        raise OrthoscopeError(f"unknown --kinds {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")
    return kinds
