"""The event loop the run and demo commands use: uvloop when installed, unless told otherwise."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import uvloop
import yaml

from gateway.config import ConfigError, parse_config
from gateway.ops import eventloop


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_auto_and_uvloop_run_on_uvloop() -> None:
    assert eventloop.run(_loop_type(), "auto") is uvloop.Loop
    assert eventloop.run(_loop_type(), "uvloop") is uvloop.Loop


def test_asyncio_runs_on_the_standard_loop() -> None:
    loop_type = eventloop.run(_loop_type(), "asyncio")
    assert not issubclass(loop_type, uvloop.Loop)
    assert issubclass(loop_type, asyncio.BaseEventLoop)


def test_without_uvloop_auto_falls_back_and_uvloop_names_the_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed: import fails
    assert not issubclass(eventloop.run(_loop_type(), "auto"), uvloop.Loop)
    with pytest.raises(ConfigError, match=r"ops\.event_loop: 'uvloop' is not installed"):
        eventloop.loop_factory("uvloop")


def test_config_field_default_and_refusal(dev_pki: Path) -> None:
    data = yaml.safe_load((dev_pki / "gateway.yaml").read_text())
    assert parse_config(data, base_dir=dev_pki).ops.event_loop == "auto"
    data.setdefault("ops", {})["event_loop"] = "trio"
    with pytest.raises(ConfigError, match=r"ops\.event_loop"):
        parse_config(data, base_dir=dev_pki)
