"""Smoke test: the broker the fixture picked really stores and returns records."""

from __future__ import annotations

import asyncio

from gateway.kafka.clients import create_consumer, create_producer
from gateway.kafka.topics import ensure_topics
from tests.kafka_fixtures import KafkaUnderTest, unique


async def test_produce_and_consume_with_headers_and_commit(kafka: KafkaUnderTest) -> None:
    settings = kafka.settings()
    topic = unique("smoke")
    created = await ensure_topics(settings, [topic], partitions=2)
    assert created == [topic]
    assert await ensure_topics(settings, [topic]) == []

    producer = create_producer(settings)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(
                topic, f"value-{i}".encode(), key=b"same-key", headers=[("n", str(i).encode())]
            )
    finally:
        await producer.stop()

    consumer = create_consumer(settings, topic)
    await consumer.start()
    try:
        got: list[tuple[bytes, int]] = []
        async with asyncio.timeout(30):
            while len(got) < 10:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for r in records:
                        assert r.value is not None
                        got.append((r.value, int(dict(r.headers)["n"])))
        await consumer.commit()
        # Same key -> same partition -> offset order is production order.
        assert [n for _, n in got] == list(range(10))
        assert got[3][0] == b"value-3"
        committed = [await consumer.committed(tp) for tp in consumer.assignment()]
        assert sum(c or 0 for c in committed) == 10
    finally:
        await consumer.stop()
