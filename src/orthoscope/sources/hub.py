"""Hugging Face hub ids: download config and safetensors only, through the HF cache."""

from __future__ import annotations

import os
import re
from pathlib import Path

from orthoscope.errors import SourceError, reason

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_PATTERNS = ["config.json", "*.safetensors", "model.safetensors.index.json",
                "adapter_config.json", "adapter_model.bin"]
NAME = "hub"


def detect(spec: str) -> bool:
    """A hub id, optionally pinned as `owner/name@rev`, that is not a local path.

    >>> detect("Qwen/Qwen2.5-0.5B@main"), detect("./base"), detect("a/b/c")
    (True, False, False)
    """
    return looks_like_hub_id(spec.partition("@")[0]) and not Path(spec).exists()


def open(spec: str, revision: str | None = None) -> tuple[str, str | None, Path]:  # noqa: A001
    """(repo id, revision asked, local snapshot folder) of a hub id; `@rev` in `spec` wins over `revision`.

    >>> open("Qwen/Qwen2.5-0.5B@7ae5576")  # doctest: +SKIP
    ('Qwen/Qwen2.5-0.5B', '7ae5576', PosixPath('~/.cache/huggingface/hub/models--Qwen--Qwen2.5-0.5B/snapshots/7ae5576...'))
    """
    repo_id, _, pinned = spec.partition("@")
    revision = pinned or revision
    return repo_id, revision, download(repo_id, revision)


def looks_like_hub_id(spec: str) -> bool:
    """True for `owner/name` that is not an existing path (e.g. `Qwen/Qwen2.5-0.5B`)."""
    return bool(HUB_ID.match(spec)) and not Path(spec).exists()


def download(repo_id: str, revision: str | None = None) -> Path:
    """Fetch (or find in the HF cache) the weights of `repo_id`; honours HF_HUB_OFFLINE.

    >>> download("Qwen/Qwen2.5-0.5B", revision="main")  # doctest: +SKIP
    PosixPath('~/.cache/huggingface/hub/models--Qwen--Qwen2.5-0.5B/snapshots/<sha>')
    """
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_PATTERNS,
                                      cache_dir=_cache_dir(), local_files_only=_offline()))
    except Exception as err:  # hub errors span network, auth and cache-miss types
        raise SourceError(
            f"cannot fetch hub id {repo_id!r}"
            + (f" at revision {revision!r}" if revision else "")
            + f" (offline, or not in the HF cache?): {reason(err)}"
        ) from None


def _offline() -> bool:
    """HF_HUB_OFFLINE as set now (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cache_dir() -> str | None:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None
