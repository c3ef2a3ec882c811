"""`--layers 0-3,10`, `--kinds q,k,o` and `--seed`: the choices every workflow shares, parsed in one place.

The options objects of every workflow (compare, intervene, experiment) and the CLI
go through these functions; each accepts the text form or an iterable, and gives a
set or None (all).
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable

from orthoscope.architectures import KINDS
from orthoscope.errors import OrthoscopeError

MAX_LAYERS = 100_000
"""Layer indices must be below this (no model has more layers; a typo must not allocate a huge set)."""
MAX_SEED = 2**32 - 1
"""The largest seed: seeds are mixed with a matrix name into one 64-bit generator seed."""


def parse_layers(layers: str | int | Iterable[int] | None) -> set[int] | None:
    """Layer indices from `0-3,10` (ranges inclusive) or from integers (numpy's too); None (or "") means all.

    >>> sorted(parse_layers("0-3,10"))
    [0, 1, 2, 3, 10]
    >>> sorted(parse_layers(range(2))), parse_layers(5), parse_layers(None)
    ([0, 1], {5}, None)
    >>> parse_layers("0-99999999999")
    Traceback (most recent call last):
    ...
    orthoscope.errors.OrthoscopeError: bad --layers range '0-99999999999': layer indices stop at 99999
    """
    if layers is None or (isinstance(layers, str) and not layers.strip()):
        return None
    if isinstance(layers, str):
        return _layers_from_text(layers)
    items = [layers] if isinstance(layers, numbers.Integral) else layers
    try:
        items = list(items)
    except TypeError:
        raise OrthoscopeError(f"bad --layers {layers!r} (expected e.g. '0-3,10' or a list of integers)") from None
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral) or not 0 <= item < MAX_LAYERS:
            raise OrthoscopeError(f"bad --layers item {item!r} (expected an integer from 0 to {MAX_LAYERS - 1})")
    return {int(item) for item in items} or None


def _layers_from_text(text: str) -> set[int]:
    chosen: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise OrthoscopeError(f"bad --layers item {part.strip()!r} (expected e.g. 0-3,10)")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) else lo
        if hi >= MAX_LAYERS:
            what = "range" if match.group(2) else "item"
            raise OrthoscopeError(f"bad --layers {what} {part.strip()!r}: layer indices stop at {MAX_LAYERS - 1}")
        if hi < lo:
            raise OrthoscopeError(f"bad --layers range {part.strip()!r}: end before start")
        chosen.update(range(lo, hi + 1))
    return chosen


def parse_kinds(kinds: str | Iterable[str] | None, known: Iterable[str] | None = None) -> set[str] | None:
    """Kinds from `q,k,o` or an iterable of names; None (or "") means all. Unknown kinds are an error.

    Each name is matched whole (`up,down` never selects `o`). `known` adds names
    beyond KINDS (module names of an unknown architecture).

    >>> sorted(parse_kinds("up, down"))
    ['down', 'up']
    >>> sorted(parse_kinds(["q", "kv_b"]))
    ['kv_b', 'q']
    >>> parse_kinds("qq")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    orthoscope.errors.OrthoscopeError: unknown --kinds qq (known: q, q_a, q_b, k, v, kv_a, kv_b, o, ..., lm_head)
    """
    if kinds is None:
        return None
    if isinstance(kinds, str):
        names = kinds.split(",")
    else:
        try:
            names = list(kinds)
        except TypeError:
            raise OrthoscopeError(f"bad --kinds {kinds!r} (expected e.g. 'q,k,o' or a list of names)") from None
        if not all(isinstance(name, str) for name in names):
            raise OrthoscopeError(f"bad --kinds {kinds!r} (expected names such as 'q' or 'down')")
    chosen = {name.strip() for name in names if name.strip()}
    if not chosen:
        return None
    extra = sorted(set(known or ()) - set(KINDS))
    unknown = sorted(chosen - set(KINDS) - set(extra))
    if unknown:
        raise OrthoscopeError(f"unknown --kinds {', '.join(unknown)} (known: {', '.join([*KINDS, *extra])})")
    return chosen


def user_kinds(kinds: str | Iterable[str] | None) -> frozenset[str] | None:
    """Kinds as a user names them before any model is open: the known kinds, or module names of an
    unknown architecture (any name with a dot or underscore); None (or "") means all.

    >>> sorted(user_kinds("q, self_attn.q_proj")), user_kinds(None)
    (['q', 'self_attn.q_proj'], None)
    >>> user_kinds(" , ")
    Traceback (most recent call last):
    ...
    orthoscope.errors.OrthoscopeError: bad --kinds ' , ': no kind named
    """
    if kinds is None:
        return None
    text = kinds if isinstance(kinds, str) else ",".join(str(k) for k in kinds)
    names = {k.strip() for k in text.split(",") if k.strip()}
    parsed = parse_kinds(text, known={k for k in names if "." in k or "_" in k})
    if parsed is None:
        raise OrthoscopeError(f"bad --kinds {kinds!r}: no kind named")
    return frozenset(parsed)


def user_layers(layers: str | int | Iterable[int] | None) -> frozenset[int] | None:
    """`parse_layers` as a frozen set (what options objects hold).

    >>> sorted(user_layers("0-1,5")), user_layers("")
    ([0, 1, 5], None)
    """
    parsed = parse_layers(layers)
    return None if parsed is None else frozenset(parsed)


def positive_int(value: object) -> bool:
    """True for a whole number >= 1 that is not a bool: the test behind every count option (--limit, --threads).

    >>> positive_int(3), positive_int(0), positive_int(True), positive_int(2.0)
    (True, False, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_seed(seed: int) -> int:
    """`seed` if it is a whole number from 0 to MAX_SEED (the one seed check of every workflow).

    >>> check_seed(7)
    7
    >>> check_seed(-1)
    Traceback (most recent call last):
    ...
    orthoscope.errors.OrthoscopeError: --seed must be an integer from 0 to 4294967295, not -1
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise OrthoscopeError(f"--seed must be an integer from 0 to {MAX_SEED}, not {seed!r}")
    return int(seed)


def layers_text(layers: Iterable[int] | None) -> str | None:
    """Layer indices as `--layers` takes them, runs joined: {0, 1, 2, 3, 10} -> `0-3,10` (None: all).

    >>> layers_text([10, 0, 1, 2, 3]), layers_text([5]), layers_text(None)
    ('0-3,10', '5', None)
    """
    if layers is None:
        return None
    runs: list[list[int]] = []
    for layer in sorted(set(layers)):
        if runs and layer == runs[-1][1] + 1:
            runs[-1][1] = layer
        else:
            runs.append([layer, layer])
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in runs)


def check_layer_range(layers: Iterable[int] | None, present: Iterable[int]) -> str | None:
    """A warning when `--layers` reaches past the model's layers `present`; an error when none exists.

    >>> check_layer_range({0, 1, 2, 3, 4, 5, 6, 7}, range(3))
    "--layers 0-7 goes beyond the model's layers 0-2: analysing 0-2 only (3-7 do not exist)"
    >>> check_layer_range({5, 6}, range(3))
    Traceback (most recent call last):
    ...
    orthoscope.errors.OrthoscopeError: --layers 5-6: the model has layers 0-2 only
    >>> check_layer_range(None, range(3)), check_layer_range({1}, range(3))
    (None, None)
    """
    if layers is None:
        return None
    asked, have = set(layers), set(present)
    missing = asked - have
    if not have or not missing:
        return None
    if missing == asked:
        raise OrthoscopeError(f"--layers {layers_text(asked)}: the model has layers {layers_text(have)} only")
    return (f"--layers {layers_text(asked)} goes beyond the model's layers {layers_text(have)}: analysing "
            f"{layers_text(asked & have)} only ({layers_text(missing)} do not exist)")
