"""Helpers shared by the ingress tests: transaction IDs and reading what landed on a topic."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import ConsumerRecord

from gateway.config import KafkaSettings
from gateway.kafka.clients import create_consumer


def tx() -> str:
    """A fresh transaction ID in the DIP's shape."""
    return f"T-IF-043-1009012345-REGS-20261123-{uuid.uuid4().hex[:16].upper()}"


async def consume(
    settings: KafkaSettings, topic: str, count: int, *, settle_ms: int = 0
) -> list[ConsumerRecord]:
    """The first ``count`` records of ``topic`` (fails the test if they do not come in 30 s),
    plus whatever else arrives within ``settle_ms`` after them (proof that nothing follows)."""
    consumer = create_consumer(settings, topic, group_id=None)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        async with asyncio.timeout(30):
            while len(records) < count:
                for part in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(part)
        if settle_ms:
            for part in (await consumer.getmany(timeout_ms=settle_ms)).values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records
