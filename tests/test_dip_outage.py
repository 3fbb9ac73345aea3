"""A full DIP outage while messages flow: every client is held, probes at a bounded rate, and
everything is delivered in order once the DIP is back; nothing is dead-lettered.

The simulator resets every connection (no answer at all, as a DIP behind a failing load
balancer) for ``OUTAGE`` seconds while three clients' messages keep arriving on Kafka. The
requests the gateway makes during the outage are counted at the simulator: a held client
sends one probe at a time, after an exponential back-off (0.1 s doubling to 2 s here), so
the count is bounded by the clients and the outage length, not by the messages waiting.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from gateway.kafka.topics import ensure_topics, gateway_topics
from tests.kafka_fixtures import KafkaUnderTest
from tests.sim_checks import arrival_positions, assert_in_order
from tests.test_egress_e2e import (  # noqa: F401 (pki: the module fixture)
    Gateway,
    _collect,
    _dip_id,
    _payload,
    _produce,
    _simulator,
    _sur,
    pki,
)
from tests.test_tenant_isolation import CONCURRENCY, LATENCY_MS, _config

BACKOFF_MAX_SECONDS = 2.0  # _config's egress.backoff_max_ms


async def _outage(folder: Path, kafka: KafkaUnderTest, outage: float, per_phase: int) -> None:
    async with _simulator(folder, latency_ms=LATENCY_MS) as sim:
        config = _config(folder, kafka, sim)
        await ensure_topics(config.kafka, gateway_topics(config))
        topic = config.kafka.outbound_topics[0]
        order: dict[tuple[int, bytes], list[str]] = defaultdict(list)

        def records(start: int) -> list[tuple[str, bytes | None, bytes]]:
            out: list[tuple[str, bytes | None, bytes]] = []
            for seq in range(start, start + per_phase):
                client, key = 1 + seq % 3, f"mpan-{seq % 30}".encode()
                payload = _payload(client, seq)
                order[(client, key)].append(_sur(payload))
                out.append((topic, key, orjson.dumps(payload)))
            return out

        gateway = Gateway(config)
        await gateway.start()
        try:
            await _produce(config, records(0))  # before the outage
            await asyncio.sleep(0.5)
            sim.set_faults(rate_reset=1.0)
            began = time.monotonic()
            await asyncio.sleep(0.5)  # requests past the fault check before it was set finish
            stored_before = sim.state.message_count
            answers_before = sum(sim.state.status_codes.values())
            await _produce(config, records(per_phase))  # during it
            await asyncio.sleep(max(outage - (time.monotonic() - began), 0))
            during = sum(sim.state.status_codes.values()) - answers_before
            stored_during = sim.state.message_count - stored_before
            sim.set_faults(latency_ms=LATENCY_MS)  # the DIP is back
            await _produce(config, records(2 * per_phase))  # after it
            outcomes = await _collect(config, 3 * per_phase, wait_seconds=120)
        finally:
            await gateway.stop_gracefully()
        positions = arrival_positions(sim)
        duplicates = sim.state.stats()["duplicatesTotal"]

    # Every client probes one request at a time, at most every back-off (>= 1 s at the cap,
    # equal jitter), plus the requests already under way when the outage began.
    bound = 3 * (outage / (BACKOFF_MAX_SECONDS / 2) + 6) + CONCURRENCY
    report = {
        "outage_seconds": outage,
        "messages": 3 * per_phase,
        "requests_during_outage": during,
        "request_bound": bound,
        "delivered": len(outcomes.results),
        "dead_lettered": len(outcomes.dead),
    }
    print("dip outage:", orjson.dumps(report).decode())
    path = os.environ.get("DCP_GATEWAY_RELIABILITY_REPORT")
    if path:
        with Path(path).open("ab") as out:  # noqa: ASYNC230 (one line, at the end)
            out.write(orjson.dumps({"scenario": "dip outage", **report}) + b"\n")
    assert stored_during == 0, report
    assert during <= bound, report
    assert [o.reason for o in outcomes.dead] == []
    expected = sorted(ref for refs in order.values() for ref in refs)
    assert sorted(outcomes.result_refs().elements()) == expected
    assert duplicates == 0
    assert_in_order(positions, order)


async def test_a_dip_outage_holds_every_client_and_loses_nothing(
    pki: Path,  # noqa: F811
    kafka: KafkaUnderTest,
) -> None:
    await _outage(pki, kafka, outage=10, per_phase=90)


@pytest.mark.slow
async def test_a_30_second_dip_outage_holds_every_client_and_loses_nothing(
    pki: Path,  # noqa: F811
    kafka: KafkaUnderTest,
) -> None:
    await _outage(pki, kafka, outage=30, per_phase=600)


async def test_a_fifth_of_requests_failing_every_way_with_latency_spikes_loses_nothing(
    pki: Path,  # noqa: F811
    kafka: KafkaUnderTest,
) -> None:
    """20 % of requests fail: 429, 500, 502, 503, 504, held then dropped (a timeout) or reset;
    the rest answer after 20 ms plus up to 300 ms of jitter. Everything is delivered once, in
    order per (sender, key); nothing is dead-lettered."""
    async with _simulator(
        pki,
        latency_ms=20,
        jitter_ms=300,
        rate_429=0.04,
        retry_after_seconds=1,
        rate_500=0.03,
        rate_502=0.03,
        rate_503=0.03,
        rate_504=0.03,
        rate_timeout=0.02,
        timeout_hold_seconds=1,
        rate_reset=0.02,
    ) as sim:
        config = _config(pki, kafka, sim)
        await ensure_topics(config.kafka, gateway_topics(config))
        topic = config.kafka.outbound_topics[0]
        order: dict[tuple[int, bytes], list[str]] = defaultdict(list)
        records: list[tuple[str, bytes | None, bytes]] = []
        for seq in range(240):
            client, key = 1 + seq % 3, f"mpan-{seq % 20}".encode()
            payload = _payload(client, seq)
            order[(client, key)].append(_sur(payload))
            records.append((topic, key, orjson.dumps(payload)))
        await _produce(config, records)
        gateway = Gateway(config)
        await gateway.start()
        try:
            outcomes = await _collect(config, len(records), wait_seconds=180)
        finally:
            await gateway.stop_gracefully()
        hits = sim.faults.snapshot()["hits"]
        positions = arrival_positions(sim)
        duplicates = sim.state.stats()["duplicatesTotal"]
    assert {"429", "500", "502", "503", "504", "timeout", "reset"} <= set(hits), hits
    assert [o.reason for o in outcomes.dead] == []
    expected = sorted(ref for refs in order.values() for ref in refs)
    assert sorted(outcomes.result_refs().elements()) == expected
    assert duplicates == 0
    assert_in_order(positions, order)
