# ruff: noqa: F811  (pytest fixtures imported from tests.dipsim_fixtures)
"""Fault injection: each mode observable over real HTTP, and deterministic with a seed."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from dipsim import Simulator
from dipsim.faults import FaultConfig, FaultInjector
from dipsim.samples import sample_message
from tests.dipsim_fixtures import (  # noqa: F401
    DevPki,
    dcp_http_client,
    dev_pki,
    dev_pki_manifest,
    pki,
    signed_headers,
    simulator,
)


async def post(
    sim: Simulator, pki: DevPki, n: int = 1, read_timeout: float = 30.0
) -> httpx.Response:
    items = [sample_message("IF-043", sender=pki.dip_id(0)) for _ in range(n)]
    raw = orjson.dumps(items)
    url = f"{sim.base_url}/dip-channel/IF-043"
    headers = signed_headers(pki.signer(0), pki.api_key(0), "POST", url, raw)
    async with httpx.AsyncClient(verify=pki.client_ssl_context(), timeout=read_timeout) as http:
        return await http.post(url, content=raw, headers=headers)


async def test_429_with_retry_after(simulator: Simulator, pki: DevPki) -> None:
    simulator.set_faults(rate_429=1.0, retry_after_seconds=7)
    r = await post(simulator, pki)
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    assert simulator.faults.hits["429"] == 1 and simulator.state.count() == 0


@pytest.mark.parametrize("code", [500, 502, 503, 504])
async def test_5xx(simulator: Simulator, pki: DevPki, code: int) -> None:
    simulator.set_faults({f"rate_{code}": 1.0})
    r = await post(simulator, pki)
    assert r.status_code == code
    async with dcp_http_client(pki, simulator.base_url) as http:
        stats = (await http.get("/_sim/stats")).json()
    assert stats["faults"][str(code)] == 1


async def test_timeout_holds_then_drops(simulator: Simulator, pki: DevPki) -> None:
    simulator.set_faults(rate_timeout=1.0, timeout_hold_seconds=0.5)
    with pytest.raises(httpx.ReadTimeout):
        await post(simulator, pki, read_timeout=0.2)
    start = time.monotonic()
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await post(simulator, pki, read_timeout=5.0)
    assert time.monotonic() - start >= 0.45
    assert simulator.faults.hits["timeout"] == 2


async def test_connection_reset(simulator: Simulator, pki: DevPki) -> None:
    simulator.set_faults(rate_reset=1.0)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await post(simulator, pki)
    assert simulator.faults.hits["reset"] == 1


async def test_latency(simulator: Simulator, pki: DevPki) -> None:
    await post(simulator, pki)  # warm up
    simulator.set_faults(latency_ms=300, jitter_ms=50)
    start = time.monotonic()
    r = await post(simulator, pki)
    assert r.status_code == 201 and time.monotonic() - start >= 0.3


async def test_slow_read(simulator: Simulator, pki: DevPki) -> None:
    simulator.set_faults(rate_slow_read=1.0, slow_read_ms=100)
    start = time.monotonic()
    r = await post(simulator, pki, n=200)  # > 16 KiB: several chunks
    assert r.status_code == 201 and time.monotonic() - start >= 0.2
    assert simulator.faults.hits["slow_read"] == 1


async def test_partial_207(simulator: Simulator, pki: DevPki) -> None:
    simulator.set_faults(rate_partial=0.5, seed=3)
    r = await post(simulator, pki, n=20)
    assert r.status_code == 207
    codes = [e["message"] for e in r.json()["messageArray"]]
    failed = codes.count("MSG1001 - Schema Failure")
    assert 0 < failed < 20 and simulator.state.count() == 20 - failed


async def test_faults_via_admin_endpoint_and_never_on_sim(
    simulator: Simulator, pki: DevPki
) -> None:
    async with dcp_http_client(pki, simulator.base_url) as http:
        r = await http.post("/_sim/faults", json={"rate_503": 1.0})
        assert r.status_code == 200
        assert (await http.get("/_sim/faults")).json()["config"]["rate_503"] == 1.0
        assert (await http.get("/_sim/stats")).status_code == 200  # admin is never faulted
        bad = await http.post("/_sim/faults", json={"rate_500": 0.8, "rate_503": 0.8})
        assert bad.status_code == 400
    assert (await post(simulator, pki)).status_code == 503


async def test_seeded_sequence_is_deterministic(simulator: Simulator, pki: DevPki) -> None:
    faults = {"rate_429": 0.2, "rate_500": 0.2, "rate_503": 0.2}

    async def run() -> list[int]:
        simulator.set_faults(faults, seed=42)
        return [(await post(simulator, pki)).status_code for _ in range(15)]

    first, second = await run(), await run()
    assert first == second
    assert {429, 500, 503, 201} & set(first) and len(set(first)) > 1


def test_injector_determinism_offline() -> None:
    cfg = FaultConfig(rate_429=0.3, rate_reset=0.1, rate_partial=0.4, seed=9)
    a, b = FaultInjector(cfg), FaultInjector(cfg)
    seq_a = [(a.decide("/dip-channel/IF-043"), a.partial_failures(3)) for _ in range(50)]
    seq_b = [(b.decide("/dip-channel/IF-043"), b.partial_failures(3)) for _ in range(50)]
    assert seq_a == seq_b
    assert a.decide("/_sim/stats") is None
