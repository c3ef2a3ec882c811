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
    ('Qwen/Qwen2.5-0.5B', '7ae5576',
     PosixPath('~/.cache/huggingface/hub/models--Qwen--Qwen2.5-0.5B/snapshots/7ae5576...'))
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

    check_revision(repo_id, revision)
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_PATTERNS,
                                        cache_dir=_cache_dir(), local_files_only=_offline()))
    except Exception as err:  # hub errors span network, auth and cache-miss types
        raise SourceError(
            f"cannot fetch hub id {repo_id!r}"
            + (f" at revision {revision!r}" if revision else "")
            + f" (offline, or not in the HF cache?): {reason(err)}"
        ) from None
    return inside_cache(repo_id, revision, folder)


REVISION = re.compile(r"[A-Za-z0-9][\w.+-]*(/[\w.+-]+)*")  # a branch, tag or commit: no '..', no absolute path


def check_revision(repo_id: str, revision: str | None) -> None:
    """Refuse a revision that could name a folder outside the HF cache (`../..`, an absolute path).

    >>> check_revision("a/b", "v1.0"), check_revision("a/b", "refs/pr/1")
    (None, None)
    >>> check_revision("a/b", "../../etc")
    Traceback (most recent call last):
    orthoscope.errors.SourceError: hub id 'a/b': revision '../../etc' is not a branch, tag or commit name
    """
    if revision is None:
        return
    if len(revision) > 255 or not REVISION.fullmatch(revision) or ".." in revision.split("/"):
        raise SourceError(f"hub id {repo_id!r}: revision {revision!r} is not a branch, tag or commit name")


def inside_cache(repo_id: str, revision: str | None, folder: Path) -> Path:
    """`folder` if it is a snapshot of `repo_id` in the HF cache; a `refs/` file holding a path is refused."""
    try:
        real = folder.resolve()
        snapshots = (folder.parent.parent / "snapshots").resolve() if folder.parent.name == "snapshots" else None
    except (OSError, RuntimeError):
        snapshots = None
    if snapshots is None or real.parent != snapshots or folder.parent.parent.name != "models--" + repo_id.replace(
            "/", "--"):
        raise SourceError(f"hub id {repo_id!r}" + (f" at revision {revision!r}" if revision else "")
                          + f" resolves to {folder}, outside the HF cache's snapshots of that model "
                          "(a refs/ file holding a path?)")
    return folder


def _offline() -> bool:
    """HF_HUB_OFFLINE as set now (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cache_dir() -> str | None:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None
