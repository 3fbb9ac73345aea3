"""Each subpackage's re-exports resolve to what they name, also once its submodules are
imported (a submodule of the same name as a lazily re-exported function would shadow it:
``gateway.dip.signing_pool`` did, and the gateway failed to start)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

PACKAGES = ["gateway.dip", "gateway.signing", "gateway.ops", "gateway.egress", "gateway.ingress"]


@pytest.mark.parametrize("name", PACKAGES)
def test_no_re_export_shares_its_name_with_a_submodule(name: str) -> None:
    package = importlib.import_module(name)
    submodules = {info.name for info in pkgutil.iter_modules(package.__path__)}
    assert not set(package.__all__) & submodules


@pytest.mark.parametrize("name", PACKAGES)
def test_every_re_export_resolves_after_all_submodules_are_imported(name: str) -> None:
    script = (
        "import importlib, inspect, pkgutil\n"
        f"p = importlib.import_module({name!r})\n"
        "for info in pkgutil.iter_modules(p.__path__):\n"
        "    importlib.import_module(f'{p.__name__}.{info.name}')\n"
        "for n in p.__all__:\n"
        "    assert not inspect.ismodule(getattr(p, n)), n\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
