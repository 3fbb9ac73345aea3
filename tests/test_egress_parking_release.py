"""A key released (``dlq release``) while a batch holding one of its parked records is at the
DIP: the record is parked under the park that held it back, egress carries on, and the operator
is told to release the key again (before, the second look-up of the park failed an assert and
stopped egress, which re-sent everything in flight after the restart). Real Kafka feeds a real
egress service; the DIP is an in-memory transport that answers once the release is applied."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import orjson
import structlog

from dipsim import Simulator
from gateway.config import parse_config
from gateway.dip import DipClient, MemoryTransport, TransportRequest, TransportResponse
from gateway.dlq.shell import read_parks, unpark
from gateway.egress import EgressService
from gateway.egress.parking import PARK_ID_HEADER, Park, state_record
from gateway.kafka.clients import create_producer
from gateway.kafka.topics import ensure_topics, gateway_topics
from gateway.keys import build_keystore
from tests.ingress_fixtures import consume
from tests.kafka_fixtures import KafkaUnderTest
from tests.test_egress_e2e import _gateway_config, _payload, _produce, _sur, pki  # noqa: F401

KEY = b"mpan-1200000000001"
_NO_SIMULATOR = cast(Simulator, SimpleNamespace(base_url="https://127.0.0.1:9"))


async def test_a_park_released_while_its_batch_is_sent_leaves_egress_running(
    pki: Path,  # noqa: F811 (the module fixture of test_egress_e2e)
    kafka: KafkaUnderTest,
) -> None:
    data = _gateway_config(pki, kafka, _NO_SIMULATOR, linger_ms=500).model_dump(mode="json")
    data["clients"][0]["park_keys"] = True
    config = parse_config(data, base_dir=pki)
    state_topic = config.kafka.parked_keys_topic
    parked_topic = config.clients[0].topics.parked
    assert state_topic is not None and parked_topic is not None
    await ensure_topics(config.kafka, gateway_topics(config))
    park = Park("p0", time.time(), "dip_rejection", "elsewhere", 0, 0, "dead")
    producer = create_producer(config.kafka)
    await producer.start()
    try:
        record = state_record(state_topic, config.clients[0].name, KEY, park)
        await (await producer.send(record.topic, record.value, key=record.key))
    finally:
        await producer.stop()
    topic = config.kafka.outbound_topics[0]
    sent, held = _payload(1, 0), _payload(1, 1)  # one sender, one interface: one batch
    await _produce(
        config, [(topic, b"mpan-other", orjson.dumps(sent)), (topic, KEY, orjson.dumps(held))]
    )
    keystore = build_keystore(config)
    service: EgressService | None = None
    requests: list[list[str]] = []

    async def dip(request: TransportRequest) -> TransportResponse:
        items = orjson.loads(request.body)
        requests.append([i["payload"]["CommonBlock"]["S1"]["senderUniqueReference"] for i in items])
        await unpark(config.kafka, state_topic, config.clients[0].name, KEY, park.park_id)
        assert service is not None
        async with asyncio.timeout(60):  # until egress has read the release
            while service._parked.get(config.clients[0].name, KEY) is not None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        return TransportResponse(201, {}, b"")

    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        async with DipClient(config.dip.base_url, keystore, MemoryTransport(dip)) as client:
            service = EgressService(config, keystore, client)
            run = asyncio.create_task(service.run(stop))
            reading = asyncio.create_task(consume(config.kafka, parked_topic, 1, seconds=60))
            await asyncio.wait({run, reading}, return_when=asyncio.FIRST_COMPLETED)
            assert not run.done(), run.result()  # EgressFailed: it stopped on an internal error
            [parked] = await reading
            stop.set()
            async with asyncio.timeout(60):
                await run
    assert requests == [[_sur(sent)]]
    assert parked.value == orjson.dumps(held) and dict(parked.headers)[PARK_ID_HEADER] == b"p0"
    [warning] = [e for e in logs if e["event"] == "egress_parked_under_released_park"]
    assert warning["park"] == "p0" and "dlq release" in warning["hint"]


async def test_a_release_of_a_park_the_key_has_left_keeps_the_new_park_last(
    kafka: KafkaUnderTest,
) -> None:
    """The operator's release names the park it checked (p0); the re-driven head failed again
    and parked the key anew (p1) first. p1 stays, for readers now and, as its record is
    written again after the tombstone, after compaction (which keeps a key's last record)."""
    topic = f"parked-keys-{uuid.uuid4().hex[:8]}"
    settings = kafka.settings()
    await ensure_topics(settings, [topic], configs={"cleanup.policy": "compact"})
    p0, p1 = (
        Park(i, time.time(), "dip_rejection", "out", 0, n, "dead")
        for n, i in enumerate(["p0", "p1"])
    )
    producer = create_producer(settings)
    await producer.start()
    try:
        for park in (p0, p1):
            record = state_record(topic, "client-1", KEY, park)
            await (await producer.send(record.topic, record.value, key=record.key))
    finally:
        await producer.stop()
    assert await unpark(settings, topic, "client-1", KEY, "p0") == p1
    assert (await read_parks(settings, topic)).get("client-1", KEY) == p1
    log = await consume(settings, topic, 4, seconds=30)
    assert [Park.parse(r.value) if r.value else None for r in log] == [p0, p1, None, p1]
    assert await unpark(settings, topic, "client-1", KEY, "p1") is None
    assert (await read_parks(settings, topic)).get("client-1", KEY) is None
