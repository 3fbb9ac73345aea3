"""Read the audit topic from its start to its end as it is now, keeping matching records.

For ``dcp-gateway audit show``: no consumer group (nothing committed, nothing to clean up),
every partition assigned, read until each reaches the end offset taken at the start, so a
busy gateway writing meanwhile cannot keep the command running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway.config import KafkaSettings
from gateway.kafka.clients import common_kwargs
from gateway.kafka.topics import topic_partitions
from gateway.ledger.records import decode

Record = dict[str, Any]


async def read_ledger(
    settings: KafkaSettings,
    topic: str,
    keep: Callable[[Mapping[str, Any]], bool],
    *,
    timeout_seconds: float = 60.0,
) -> list[Record]:
    """Every ledger record on ``topic`` that ``keep`` accepts, oldest first by time written
    (``at``). Raises ``LookupError`` when the topic does not exist and ``TimeoutError`` when
    the end is not reached in ``timeout_seconds``."""
    assigned = await topic_partitions(settings, [topic])
    if not assigned:
        raise LookupError(f"topic {topic!r} does not exist (or this principal cannot see it)")
    consumer = AIOKafkaConsumer(
        **common_kwargs(settings), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        async with asyncio.timeout(timeout_seconds):
            return await _read_to(consumer, ends, keep)
    finally:
        await consumer.stop()


async def _read_to(
    consumer: AIOKafkaConsumer,
    ends: Mapping[TopicPartition, int],
    keep: Callable[[Mapping[str, Any]], bool],
) -> list[Record]:
    found: list[Record] = []
    remaining = {tp for tp, end in ends.items() if end > 0}
    while remaining:
        batches = await consumer.getmany(*remaining, timeout_ms=1000)
        for messages in batches.values():
            for message in messages:
                record = decode(message.value)
                if record is not None and keep(record):
                    found.append(record)
        for tp in list(remaining):
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
    found.sort(key=lambda r: str(r.get("at", "")))
    return found
