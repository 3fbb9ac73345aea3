"""The consumer-lag metric follows the assignment: after a rebalance, a gateway reports lag only
for the partitions it still owns (a stale series would show lag nobody is working off, and a
lag-based autoscaler would act on it). Real Kafka, the DIP simulator."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from prometheus_client import REGISTRY

from gateway.kafka.clients import create_consumer
from gateway.kafka.topics import ensure_topics, gateway_topics
from tests.kafka_fixtures import KafkaUnderTest
from tests.test_egress_e2e import Gateway, _gateway_config, _payload, _simulator
from tests.test_egress_e2e import pki as egress_pki  # noqa: F401  (module fixture)
from tests.test_ops_tracing import Record, produce

_LAG = "dcpgw_egress_consumer_lag_records"


def _lag_partitions(topic: str) -> set[int]:
    """Partitions of ``topic`` this process exports lag for."""
    out = set()
    for metric in REGISTRY.collect():
        if metric.name == _LAG:
            for sample in metric.samples:
                if sample.labels["topic"] == topic:
                    out.add(int(sample.labels["partition"]))
    return out


async def test_lag_is_reported_only_for_the_partitions_a_gateway_owns(
    egress_pki: Path,  # noqa: F811
    kafka: KafkaUnderTest,
) -> None:
    async with _simulator(egress_pki) as sim:
        config = _gateway_config(egress_pki, kafka, sim)
        await ensure_topics(config.kafka, gateway_topics(config), partitions=2)
        topic = config.kafka.outbound_topics[0]
        one_each = [Record(orjson.dumps(_payload(1, p)), b"k", p, None) for p in (0, 1)]
        await produce(config.kafka, topic, one_each)

        gateway = Gateway(config)
        await gateway.start()
        other = create_consumer(config.kafka)
        try:
            async with asyncio.timeout(60):  # alone in the group: both partitions, both series
                while _lag_partitions(topic) != {0, 1}:  # noqa: ASYNC110 (polling a registry)
                    await asyncio.sleep(0.2)
            # A second member joins the group: the gateway keeps one partition of the topic.
            other.subscribe([topic])
            await other.start()
            async with asyncio.timeout(60):
                while not {tp for tp in other.assignment() if tp.topic == topic}:
                    await other.getmany(timeout_ms=200)
            taken = {tp.partition for tp in other.assignment() if tp.topic == topic}
            async with asyncio.timeout(30):
                while _lag_partitions(topic) & taken:  # noqa: ASYNC110 (polling a registry)
                    await asyncio.sleep(0.2)
            assert taken and _lag_partitions(topic) <= {0, 1} - taken
        finally:
            await other.stop()
            await gateway.stop_gracefully()
