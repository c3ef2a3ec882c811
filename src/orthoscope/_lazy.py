"""Lazy exports for a package: names load their submodule on first use (PEP 562).

Keeps `import orthoscope.metrics` (and the CLI's help) free of torch until a
function that needs it is called.

>>> getattr_, dir_, names = lazy_exports("json", {"decoder": ("JSONDecoder",)})
>>> getattr_("JSONDecoder").__name__, names
('JSONDecoder', ['JSONDecoder'])
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_exports(package: str, where: dict[str, tuple[str, ...]]) -> tuple[Callable, Callable, list[str]]:
    """(`__getattr__`, `__dir__`, `__all__`) for `package`, whose names live in the submodules `where`
    maps them from; a loaded name is cached in the package's namespace."""
    module_of = {name: module for module, names in where.items() for name in names}

    def __getattr__(name: str):
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module_of[name]}"), name)
        namespace = sys.modules.get(package)
        if namespace is not None:
            setattr(namespace, name, value)
        return value

    def __dir__() -> list[str]:
        namespace = sys.modules.get(package)
        return sorted(set(vars(namespace) if namespace else ()) | set(module_of))

    return __getattr__, __dir__, sorted(module_of)
