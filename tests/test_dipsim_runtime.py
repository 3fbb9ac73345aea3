# ruff: noqa: F811  (pytest fixtures imported from tests.dipsim_fixtures)
"""Schema validation hook, /validate endpoints, SQLite store, config loader, CLI subprocess."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import orjson

from dipsim import SimulatorConfig, run_simulator
from dipsim.process import start_in_subprocess
from dipsim.samples import sample_message
from gateway.schema.samples import sample_payload as schema_sample
from tests.dipsim_fixtures import (  # noqa: F401
    DevPki,
    dcp_http_client,
    dev_pki,
    dev_pki_manifest,
    pki,
    signed_headers,
)


async def _post(base_url: str, pki: DevPki, path: str, items: Any) -> httpx.Response:
    raw = orjson.dumps(items)
    url = base_url + path
    headers = signed_headers(pki.signer(0), pki.api_key(0), "POST", url, raw)
    async with dcp_http_client(pki, base_url) as http:
        return await http.post(url, content=raw, headers=headers)


def test_from_dev_pki_registers_every_dip_id(dev_pki: Path, pki: DevPki) -> None:
    cfg = SimulatorConfig.from_dev_pki(dev_pki, port=0)
    assert set(cfg.senders) == {pki.dip_id(i) for i in range(3)}
    assert cfg.senders[pki.dip_id(0)].api_keys == [pki.api_key(0), pki.api_key(0, True)]
    assert cfg.server_cert.exists() and cfg.dip_signing_pfx.exists()


async def test_schema_validation_msg1001_with_help(dev_pki: Path, pki: DevPki) -> None:
    sender = pki.dip_id(0)
    good = {
        "payload": schema_sample(
            "IF-043", sender_dip_id=sender, sender_role="SUP", recipients=["2300000900"], seq=1
        )
    }
    bad = orjson.loads(orjson.dumps(good))
    bad["payload"]["CommonBlock"]["S1"]["senderUniqueReference"] = good["payload"]["CommonBlock"][
        "S1"
    ]["senderUniqueReference"].replace("-1", "-2")
    bad["payload"]["CustomBlock"]["B023"]["energyDirection"] = "SIDEWAYS"
    cfg = SimulatorConfig.from_dev_pki(dev_pki, schema_validation=True)
    async with run_simulator(cfg) as sim:
        r = await _post(sim.base_url, pki, "/dip-channel/IF-043", [good, bad])
        assert r.status_code == 207, r.text
        ok, failed = r.json()["messageArray"]
        assert ok["message"] == "MSG0000 - Success"
        assert failed["message"] == "MSG1001 - Schema Failure"
        assert "energyDirection" in failed["help"]
        r = await _post(sim.base_url, pki, "/validate/IF-043/ConnectionTypeChange", [good])
        assert r.status_code == 201 and r.json() == "Message OK"
        r = await _post(sim.base_url, pki, "/validate/IF-043/ConnectionTypeChange", [bad])
        assert r.status_code == 400 and "energyDirection" in r.json()


async def test_sqlite_copy(dev_pki: Path, pki: DevPki, tmp_path: Path) -> None:
    db = tmp_path / "sim.db"
    cfg = SimulatorConfig.from_dev_pki(dev_pki, sqlite_path=db)
    async with run_simulator(cfg) as sim:
        items = [sample_message("IF-043", sender=pki.dip_id(0)) for _ in range(4)]
        r = await _post(sim.base_url, pki, "/dip-channel/IF-043", items)
        assert r.status_code == 201
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute("SELECT count(*) FROM messages").fetchone()
    assert count == 4


async def test_cli_subprocess_readiness_and_stop(dev_pki: Path, pki: DevPki) -> None:
    proc = await asyncio.to_thread(
        start_in_subprocess, dev_pki, 0, extra_args=["--faults", '{"rate_503": 1.0}', "--seed", "5"]
    )
    try:
        assert proc.base_url.startswith("https://127.0.0.1:")
        r = await _post(proc.base_url, pki, "/dip-channel/IF-043", [sample_message()])
        assert r.status_code == 503
    finally:
        code = await asyncio.to_thread(proc.stop)
    assert code == 0
