"""Lazy re-exports for package ``__init__`` modules (PEP 562).

A package re-exports its public names, but importing any one submodule runs the package's
``__init__`` first: re-exporting eagerly made ``import gateway.config`` load aiohttp, httpx
and all the signing code. Names listed here load with their module when first asked for; type
checkers see the ordinary imports under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``table[name]`` (a module) and returns its
    ``name``, caching it in the package's namespace."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
