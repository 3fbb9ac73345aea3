"""Scale-out by the consumer group: two gateway processes share a 6-partition outbound topic,
and stopping one hands its partitions to the other with nothing lost, reordered or repeated."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from gateway.kafka.clients import common_kwargs
from gateway.kafka.topics import ensure_topics, gateway_topics
from tests.gateway_process import GatewayProcess
from tests.kafka_fixtures import KafkaUnderTest
from tests.sim_checks import assert_in_order_per_key
from tests.test_egress_e2e import (
    CLIENTS,
    _collect,
    _gateway_config,
    _payload,
    _produce,
    _simulator,
    _sur,
)

pytestmark = pytest.mark.timeout(300)

PARTITIONS = 6
KEYS = 24


async def _stable_members(admin: AIOKafkaAdminClient, group: str) -> int:
    """Members of ``group`` once it is Stable (0 while it rebalances)."""
    (described,) = (await admin.describe_consumer_groups([group]))[0].groups
    return len(described[5]) if described[2] == "Stable" else 0


async def _accepted(gateway: GatewayProcess) -> float:
    return await gateway.metric("dcpgw_egress_messages_accepted")


@pytest.mark.tansu
async def test_two_gateways_share_the_partitions_and_hand_over_on_stop(
    dev_pki: Path, kafka: KafkaUnderTest, tmp_path: Path
) -> None:
    async with _simulator(dev_pki, latency_ms=20) as sim:
        config = _gateway_config(dev_pki, kafka, sim, max_batch_messages=10, linger_ms=20)
        settings = config.kafka
        topic = settings.outbound_topics[0]
        await ensure_topics(settings, [topic], partitions=PARTITIONS)
        await ensure_topics(settings, gateway_topics(config))
        payloads = [_payload(1 + seq % CLIENTS, seq) for seq in range(480)]
        keyed = [(f"mpan-{seq % KEYS:013d}".encode(), p) for seq, p in enumerate(payloads)]
        first, second = keyed[:240], keyed[240:]

        async def until_stored(count: int) -> None:
            async with asyncio.timeout(120):
                while len(sim.state.messages) < count:  # noqa: ASYNC110 (no event to wait on)
                    await asyncio.sleep(0.05)

        a = GatewayProcess(config, tmp_path, "gateway-a")
        b = GatewayProcess(config, tmp_path, "gateway-b")
        admin = AIOKafkaAdminClient(**common_kwargs(settings))
        await admin.start()
        try:
            await a.start()
            await b.start()
            async with asyncio.timeout(60):
                while await _stable_members(admin, settings.consumer_group) != 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
            await _produce(config, [(topic, k, orjson.dumps(p)) for k, p in first])
            await until_stored(len(first))
            # A gateway counts a message once its result is on Kafka, just after the DIP has it.
            a_before, b_before = await _accepted(a), await _accepted(b)
            async with asyncio.timeout(30):
                while a_before + b_before < len(first):
                    await asyncio.sleep(0.1)
                    a_before, b_before = await _accepted(a), await _accepted(b)
            assert a_before > 0 and b_before > 0, (a_before, b_before)
            assert a_before + b_before == len(first)

            assert await a.terminate() == 0, a.tail()
            await _produce(config, [(topic, k, orjson.dumps(p)) for k, p in second])
            await until_stored(len(keyed))
            async with asyncio.timeout(30):
                while await _accepted(b) < b_before + len(second):  # noqa: ASYNC110 (HTTP poll)
                    await asyncio.sleep(0.1)
            assert await _accepted(b) == b_before + len(second)
            assert await b.terminate() == 0, b.tail()
        finally:
            await admin.close()
            a.ensure_stopped()
            b.ensure_stopped()

        # The DIP got every message once, and each key's messages in production order.
        stored = Counter(m.sender_unique_reference for m in sim.state.messages)
        assert set(stored) == {_sur(p) for _, p in keyed}
        assert max(stored.values()) == 1, "a graceful hand-over repeated a message"
        assert_in_order_per_key(sim, [(key, _sur(p)) for key, p in keyed])
        # One result record per message.
        outcomes = await _collect(config, len(keyed))
        assert not outcomes.dead
        assert outcomes.result_refs() == Counter({_sur(p): 1 for _, p in keyed})
