"""`CompareOptions`: every setting of a compare run, validated once, shared by the CLI and `compare()`.

Strings are accepted where a user types them (`layers="0-3,10"`, `kinds="q,k"`,
`executor="ray"`) and turned into typed values here, so the API and the CLI
refuse the same bad values with the same one-line message.

>>> CompareOptions(layers="0-1", kinds="q,o", seed=3).layers
frozenset({0, 1})
>>> CompareOptions(device="bogus")
Traceback (most recent call last):
...
orthoscope.errors.OrthoscopeError: unknown --device 'bogus' (use cpu, cuda or cuda:N)
>>> CompareOptions(cache_limit_gib=float("nan"))
Traceback (most recent call last):
...
orthoscope.errors.OrthoscopeError: --cache-limit must be a finite number of GiB >= 0, not nan
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from orthoscope.errors import OrthoscopeError
from orthoscope.metrics.nulls import check_cap
from orthoscope.metrics.registry import metric_sets, resolve_metrics
from orthoscope.pipeline.cache import DIR_ENV, default_dir, default_limit_gib
from orthoscope.pipeline.executors import Executor, make_executor
from orthoscope.pipeline.filters import check_seed, layers_text, user_kinds, user_layers
from orthoscope.pipeline.precision import resolve_precision

DEVICE = re.compile(r"cpu|cuda(:\d{1,4})?")  # no machine has 10000 GPUs: a longer index is a typo


@dataclass(frozen=True)
class CompareOptions:
    """The settings of a compare run (everything but the models and the output folder)."""

    layers: frozenset[int] | str | Iterable[int] | None = None
    kinds: frozenset[str] | str | Iterable[str] | None = None
    include_embeddings: bool = False
    metrics: frozenset[str] | str | Iterable[str] | None = None
    precision: str = "auto"
    device: str = "cpu"
    seed: int = 0
    revision: str | None = None
    cache: bool = True
    cache_dir: str | Path | None = None
    cache_limit_gib: float | None = None
    executor: Executor | str = "local"
    control: str | None = None
    overwrite: bool = False
    pair_draws: int | None = None  # the most sign draws p_pair may take (None: its stated-error rule; or no p_pair)

    def __post_init__(self) -> None:
        put = object.__setattr__.__get__(self)  # frozen: normalise in place once
        put("layers", user_layers(self.layers))
        put("kinds", user_kinds(self.kinds))
        put("metrics", resolve_metrics(self.metrics))
        resolve_precision(self.precision, self.metrics)  # validates the name
        if not isinstance(self.device, str) or not DEVICE.fullmatch(self.device):
            raise OrthoscopeError(f"unknown --device {self.device!r} (use cpu, cuda or cuda:N)")
        put("seed", check_seed(self.seed))
        if self.cache_limit_gib is not None:
            put("cache_limit_gib", check_cache_limit(self.cache_limit_gib, "--cache-limit"))
        if isinstance(self.executor, str):
            put("executor", make_executor(self.executor))
        if self.control is not None and (not isinstance(self.control, str) or not self.control):
            raise OrthoscopeError(f"--control must name a post, not {self.control!r}")
        cap = check_cap(self.pair_draws)  # validated even where unused; kept only where p_pair is computed, so a
        put("pair_draws", cap if "p_pair" in self.metrics else None)  # run without it records no cap

    def cache_limit(self) -> float | None:
        """The limit in GiB this run uses (argument, else $ORTHOSCOPE_CACHE_LIMIT, else 20); None without cache."""
        if not self.cache:
            return None
        if self.cache_limit_gib is not None:
            return self.cache_limit_gib
        return check_cache_limit(default_limit_gib(), "ORTHOSCOPE_CACHE_LIMIT")

    def explicit_cache_dir(self) -> str | None:
        """The folder the user named (argument or $ORTHOSCOPE_CACHE_DIR), absolute; None lets each
        worker use its own default (~/.cache/orthoscope/svd of the user it runs as)."""
        if self.cache_dir is None and not os.environ.get(DIR_ENV):
            return None
        return str(Path(self.cache_dir if self.cache_dir is not None else default_dir()).expanduser().resolve())


def metrics_label(metrics: Iterable[str]) -> str:
    """The `--metrics` value that asks for exactly `metrics`: a set's name where one matches, else the names.

    >>> metrics_label(resolve_metrics("quick")), metrics_label(["sym_frac", "a_geo"])
    ('quick', 'a_geo,sym_frac')
    """
    chosen = frozenset(metrics)
    return next((name for name, members in metric_sets().items() if members == chosen), ",".join(sorted(chosen)))


def selection(options: CompareOptions) -> dict:
    """The filters and choices of a run as summary.json records them (`--layers` and `--kinds` as typed).

    >>> selection(CompareOptions(layers="0-2,5", kinds="q,k", metrics="quick"))
    {'layers': '0-2,5', 'kinds': 'k,q', 'include_embeddings': False, 'metrics_option': 'quick', 'revision': None}
    """
    return {"layers": layers_text(options.layers),
            "kinds": None if options.kinds is None else ",".join(sorted(options.kinds)),
            "include_embeddings": options.include_embeddings, "metrics_option": metrics_label(options.metrics),
            "revision": options.revision}


def check_cache_limit(value: float, option: str) -> float:
    """`value` as a float if finite and >= 0, else one line naming `option`.

    >>> check_cache_limit(2, "--cache-limit")
    2.0
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise OrthoscopeError(f"{option} must be a number of GiB, not {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise OrthoscopeError(f"{option} must be a finite number of GiB >= 0, not {value!r}")
    return number
