"""Broker failover on a three-node Apache Kafka cluster: every broker (so every partition
leader, group coordinator and the active controller among them) is killed and restarted in
turn while messages flow; the gateway rides it out without a restart and loses nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import orjson
import pytest

from dipsim import run_simulator
from gateway.config import load_config
from gateway.kafka.embedded import free_port
from gateway.kafka.topics import ensure_topics, gateway_topics
from tests.apache_kafka import ApacheKafka
from tests.gateway_process import GatewayProcess
from tests.ingress_fixtures import consume
from tests.kafka_fixtures import KafkaUnderTest
from tests.sim_checks import assert_in_order_per_key, until_stored
from tests.test_egress_e2e import (
    CLIENTS,
    _collect,
    _gateway_config,
    _payload,
    _produce,
    _simulator,
    _sur,
)
from tests.test_ingress_simulator import cli, patient_simulator, payloads, write_config

pytestmark = pytest.mark.timeout(420)

MESSAGES = 900
KEYS = 30


async def test_egress_rides_out_a_rolling_crash_of_every_broker(
    kafka_cluster: ApacheKafka, dev_pki: Path, tmp_path: Path
) -> None:
    kafka = KafkaUnderTest(kafka_cluster.bootstrap_servers, "apache", True)
    async with _simulator(dev_pki, latency_ms=10) as sim:
        config = _gateway_config(dev_pki, kafka, sim, max_batch_messages=20, linger_ms=20)
        topic = config.kafka.outbound_topics[0]
        await ensure_topics(config.kafka, [topic], partitions=6)
        await ensure_topics(config.kafka, gateway_topics(config))
        keyed = [
            (f"mpan-{seq % KEYS:013d}".encode(), _payload(1 + seq % CLIENTS, seq))
            for seq in range(MESSAGES)
        ]

        async def produce_steadily() -> None:
            for start in range(0, MESSAGES, 30):
                chunk = keyed[start : start + 30]
                await _produce(config, [(topic, k, orjson.dumps(p)) for k, p in chunk])
                await asyncio.sleep(0.3)

        gateway = GatewayProcess(config, tmp_path, "gateway")
        try:
            await gateway.start()
            producing = asyncio.create_task(produce_steadily())
            for node in range(len(kafka_cluster.nodes)):
                await asyncio.sleep(2)
                await asyncio.to_thread(kafka_cluster.stop_node, node)  # SIGKILL
                await asyncio.sleep(4)
                await asyncio.to_thread(kafka_cluster.start_node, node)
            await producing
            expected = {_sur(p) for _, p in keyed}
            await until_stored(sim, expected, running=[gateway])
            assert await gateway.metric("dcpgw_egress_messages_accepted") >= MESSAGES
            assert await gateway.terminate() == 0, gateway.tail()
        finally:
            gateway.ensure_stopped()

    # Nothing lost; without a gateway restart, nothing sent twice; each key in order.
    stored = Counter(m.sender_unique_reference for m in sim.state.messages)
    assert set(stored) == expected
    assert max(stored.values()) == 1
    assert_in_order_per_key(sim, [(key, _sur(p)) for key, p in keyed])
    outcomes = await _collect(config, MESSAGES)
    assert not outcomes.dead
    assert outcomes.result_refs() == Counter(dict.fromkeys(expected, 1))  # idempotent producer


async def test_ingress_rides_out_a_rolling_crash_of_every_broker(
    kafka_cluster: ApacheKafka, dev_pki: Path, tmp_path: Path
) -> None:
    """The DIP pushes throughout; a push the gateway could not store is answered 503 and
    retried by the DIP: every publication lands in its client's topic, once."""
    kafka = KafkaUnderTest(kafka_cluster.bootstrap_servers, "apache", True)
    async with run_simulator(patient_simulator(dev_pki)) as sim:
        path = write_config(dev_pki, sim, kafka.settings(), port=free_port())
        config = load_config(path)
        await ensure_topics(config.kafka, gateway_topics(config), partitions=3)
        assert await cli("dip", "webhooks", "sync", "--config", str(path)) == 0
        recipient = config.clients[0].dip_ids[0].dip_id
        gateway = GatewayProcess(config, tmp_path, "gateway")
        published = []
        try:
            await gateway.start()
            for node in range(len(kafka_cluster.nodes)):
                published += sim.publish("IF-043", recipient, payloads("IF-043", recipient, 20))
                await asyncio.sleep(1)
                await asyncio.to_thread(kafka_cluster.stop_node, node)  # SIGKILL
                published += sim.publish("IF-043", recipient, payloads("IF-043", recipient, 20))
                await asyncio.sleep(3)
                await asyncio.to_thread(kafka_cluster.start_node, node)
            await sim.wait_pushes(timeout=180)
            records = await consume(
                config.kafka, config.clients[0].topics.inbound, len(published), settle_ms=1000
            )
            assert await gateway.terminate() == 0, gateway.tail()
        finally:
            gateway.ensure_stopped()
    assert all(sim.state.delivery(p).status == "Delivered" for p in published)
    landed = Counter(dict(r.headers)["dip-transaction-id"] for r in records)
    assert set(landed) == {p.transaction_id.encode() for p in published}
    assert max(landed.values()) == 1
