"""A 20-second outage of the only broker: the gateway process holds on, says it is not ready
while Kafka is away, and resumes both ways without a restart, losing nothing."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from dipsim import run_simulator
from gateway.config import EgressSettings, load_config
from gateway.kafka.embedded import free_port
from gateway.kafka.topics import ensure_topics, gateway_topics
from tests.gateway_process import GatewayProcess
from tests.ingress_fixtures import consume
from tests.kafka_fixtures import RestartableBroker
from tests.test_egress_e2e import _collect, _payload, _produce, _sur
from tests.test_ingress_simulator import cli, patient_simulator, payloads, write_config

pytestmark = pytest.mark.timeout(300)

OUTAGE_SECONDS = 20.0
_WAIT_SECONDS = 120.0


async def test_a_broker_outage_makes_the_gateway_unready_and_it_resumes_without_loss(
    own_broker: RestartableBroker, dev_pki: Path, tmp_path: Path
) -> None:
    if own_broker.kafka.kind == "tansu":
        pytest.skip("Tansu keeps records in memory: a restarted one has lost them")
    async with run_simulator(patient_simulator(dev_pki)) as sim:
        path = write_config(dev_pki, sim, own_broker.kafka.settings(), port=free_port())
        config = load_config(path)
        egress = EgressSettings(linger_ms=20, backoff_initial_ms=10, backoff_max_ms=200)
        config = config.model_copy(update={"egress": egress})
        await ensure_topics(config.kafka, gateway_topics(config), partitions=3)
        assert await cli("dip", "webhooks", "sync", "--config", str(path)) == 0
        topic = config.kafka.outbound_topics[0]
        before = [_payload(1 + seq % 3, seq) for seq in range(60)]
        after = [_payload(1 + seq % 3, seq) for seq in range(60, 120)]
        recipient = config.clients[0].dip_ids[0].dip_id
        inbound = config.clients[0].topics.inbound

        gateway = GatewayProcess(config, tmp_path, "gateway")
        try:
            await gateway.start()
            await _produce(
                config,
                [(topic, f"k{i % 9}".encode(), orjson.dumps(p)) for i, p in enumerate(before)],
            )
            early = sim.publish("IF-043", recipient, payloads("IF-043", recipient, 10))
            await _until(lambda: len(sim.state.messages) >= len(before))

            await asyncio.to_thread(own_broker.stop)
            down_at = time.monotonic()
            await _until_ready_is(gateway, 503)
            # Publications during the outage: the webhook answers 503, the DIP retries.
            during = sim.publish("IF-043", recipient, payloads("IF-043", recipient, 10))
            await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
            await asyncio.to_thread(own_broker.start)
            await _until_ready_is(gateway, 200)

            await _produce(
                config,
                [(topic, f"k{i % 9}".encode(), orjson.dumps(p)) for i, p in enumerate(after)],
            )
            await _until(lambda: len(sim.state.messages) >= len(before) + len(after))
            await sim.wait_pushes(timeout=120)
            records = await consume(config.kafka, inbound, len(early) + len(during), settle_ms=1000)
            outcomes = await _collect(config, len(before) + len(after))
            assert await gateway.terminate() == 0, gateway.tail()
        finally:
            gateway.ensure_stopped()

    stored = Counter(m.sender_unique_reference for m in sim.state.messages)
    assert set(stored) == {_sur(p) for p in before + after} and max(stored.values()) == 1
    assert set(outcomes.result_refs()) == set(stored) and not outcomes.dead
    assert all(sim.state.delivery(p).status == "Delivered" for p in early + during)
    transactions = Counter(dict(r.headers)["dip-transaction-id"] for r in records)
    assert set(transactions) == {p.transaction_id.encode() for p in early + during}
    assert max(transactions.values()) == 1, "a publication landed twice"


async def _until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(_WAIT_SECONDS):
        while not predicate():  # noqa: ASYNC110 (the simulator has no event to wait on)
            await asyncio.sleep(0.1)


async def _until_ready_is(gateway: GatewayProcess, status: int) -> None:
    async with asyncio.timeout(_WAIT_SECONDS):
        while await gateway.readyz() != status:  # noqa: ASYNC110 (polling HTTP)
            await asyncio.sleep(0.1)
