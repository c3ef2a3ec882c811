"""The shipped default: the tiny lab family (base, instruct, cot, control) as package data.

Made by `scripts/make_default.py`, which records its seed, command and every file's
sha256 in `manifest.json`, so anyone can regenerate it and check it bit for bit.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

from orthoscope.errors import OrthoscopeError

FAMILY = ("base", "instruct", "cot", "control")


def shipped_root() -> Path:
    return Path(str(resources.files("orthoscope") / "data" / "lab-tiny"))


def manifest() -> dict:
    path = shipped_root() / "manifest.json"
    if not path.is_file():
        raise OrthoscopeError(f"the shipped default family is missing ({path}); run scripts/make_default.py")
    return json.loads(path.read_text())


def shipped_family() -> dict[str, Path]:
    """{name: folder} of the shipped models.

    >>> sorted(shipped_family())
    ['base', 'control', 'cot', 'instruct']
    """
    manifest()
    return {name: shipped_root() / name for name in FAMILY}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify_shipped() -> list[str]:
    """Files whose bytes differ from the manifest (empty when all match)."""
    root = shipped_root()
    return [name for name, digest in manifest()["files"].items() if sha256(root / name) != digest]
