"""The outcome writer: Kafka's murmur2 partitioning (as aiokafka's default partitioner), and
real writes to Kafka through both of its paths."""

from __future__ import annotations

import asyncio
import random
import uuid

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from gateway.egress.writer import OutcomeWriter, OutRecord, murmur2
from gateway.kafka.clients import common_kwargs, create_producer
from gateway.kafka.topics import ensure_topics
from tests.kafka_fixtures import KafkaUnderTest


def test_murmur2_matches_aiokafka_for_every_tail_length() -> None:
    rng = random.Random(7)
    keys = [b"", b"a", b"ab", b"abc", b"abcd", b"meter-123456", "clé".encode()]
    keys += [rng.randbytes(rng.randint(0, 64)) for _ in range(2000)]
    keys += [rng.randbytes(rng.randint(250, 300)) for _ in range(200)]  # past prepared unpackers
    for key in keys:
        assert murmur2(key) == aiokafka_murmur2(key) & 0x7FFFFFFF, key


def test_murmur2_known_values() -> None:
    # the Java client's Utils.murmur2 test vectors (toPositive applied)
    assert murmur2(b"21") == -973932308 & 0x7FFFFFFF
    assert murmur2(b"foobar") == -790332482 & 0x7FFFFFFF
    assert murmur2(b"a-little-bit-long-string") == -985981536 & 0x7FFFFFFF


async def test_writes_land_where_the_default_partitioner_puts_them_in_order(
    kafka: KafkaUnderTest,
) -> None:
    """Big groups go through send_batch, small ones through send: either way every record is
    in its key's murmur2 partition, in write order, with its headers."""
    settings = kafka.settings()
    topic = f"writer-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, [topic], partitions=3)
    big = [OutRecord(topic, f"v{i}".encode(), f"k{i % 5}".encode(), None) for i in range(300)]
    small = [OutRecord(topic, b"dead", b"k-alone", [("dcpgw-reason", b"why")])]
    producer = create_producer(settings)
    await producer.start()
    try:
        await OutcomeWriter(producer).write(big + small)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic, **common_kwargs(settings), auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    got: list[ConsumerRecord[bytes, bytes]] = []
    try:
        while len(got) < len(big) + len(small):
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 30)
            for records in batch.values():
                got.extend(records)
    finally:
        await consumer.stop()
    for record in got:
        assert record.key is not None
        assert record.partition == murmur2(record.key) % 3, record.key
    for key in {r.key for r in big}:
        values = [r.value for r in sorted(got, key=lambda r: r.offset) if r.key == key]
        assert values == [r.value for r in big if r.key == key]
    (alone,) = [r for r in got if r.key == b"k-alone"]
    assert alone.value == b"dead" and list(alone.headers) == [("dcpgw-reason", b"why")]
