"""Write outcome records (results, dead letters) to Kafka a whole delivery at a time.

``AIOKafkaProducer.send`` costs a coroutine, a future, a metadata lookup and a pure-Python
murmur2 hash per record; for a batch of 500 results that was the largest single cost of the
egress hot path. Here the records are grouped by (topic, partition) and appended to one
``BatchBuilder`` per partition (``create_batch``/``send_batch``): one future per Kafka batch.

Partitioning is the default partitioner's (murmur2 of the key modulo the partition count, so a
key's results land where ``send`` would put them and stay in order); the hash is cached per key.
Records without a key all go to one randomly chosen partition per write. Small groups use
``send`` instead (see ``_OWN_BATCH_MIN``).
"""

from __future__ import annotations

import asyncio
import random
import struct
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

_HASH_CACHE_LIMIT = 100_000
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_UNPACK = [struct.Struct(f"<{n}I").unpack_from for n in range(64)]
"""Little-endian word unpackers for keys up to 255 bytes (meter IDs are far shorter)."""
_OWN_BATCH_MIN = 32
"""Fewer records than this for one partition go through ``send``: they join the producer's
open batch for that partition, shared with other deliveries' records. ``send_batch`` waits
until the partition's pending batch has been sent, which serialises small writes (batch size
1 dropped to ~20 messages/s with it)."""


@dataclass(slots=True)
class OutRecord:
    """One record to write for a final outcome (result or dead letter)."""

    topic: str
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes]] | None


class OutcomeWriter:
    """Produces lists of :class:`OutRecord` with one ``send_batch`` per partition."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._hashes: dict[bytes, int] = {}

    def _hash(self, key: bytes) -> int:
        found = self._hashes.get(key)
        if found is None:
            if len(self._hashes) >= _HASH_CACHE_LIMIT:
                self._hashes.clear()
            found = self._hashes[key] = murmur2(key)
        return found

    async def write(self, records: list[OutRecord]) -> None:
        """Produce every record, in order per partition, and wait for Kafka's acknowledgement.
        Raises ``KafkaError`` (the caller retries the whole list: at-least-once)."""
        producer = self._producer
        partitions: dict[str, list[int]] = {}
        unkeyed: dict[str, int] = {}
        groups: dict[tuple[str, int], list[OutRecord]] = {}
        for record in records:
            topic = record.topic
            known = partitions.get(topic)
            if known is None:
                known = partitions[topic] = sorted(await producer.partitions_for(topic))
            key = record.key
            if key is None:
                partition = unkeyed.get(topic, -1)
                if partition < 0:
                    partition = unkeyed[topic] = random.choice(known)
            else:
                partition = known[self._hash(key) % len(known)]
            group = groups.get((topic, partition))
            if group is None:
                groups[(topic, partition)] = [record]
            else:
                group.append(record)
        futures: list[asyncio.Future[Any]] = []
        try:
            for (topic, partition), group in groups.items():
                if len(group) < _OWN_BATCH_MIN:
                    for record in group:
                        futures.append(
                            await producer.send(
                                topic,
                                record.value,
                                key=record.key,
                                partition=partition,
                                headers=record.headers,
                            )
                        )
                    continue
                builder = producer.create_batch()
                for record in group:
                    key, value, headers = record.key, record.value, record.headers or []
                    if (
                        builder.append(timestamp=None, key=key, value=value, headers=headers)
                        is None
                    ):
                        # full: send it; the first record always fits a new batch
                        futures.append(
                            await producer.send_batch(builder, topic, partition=partition)
                        )
                        builder = producer.create_batch()
                        builder.append(timestamp=None, key=key, value=value, headers=headers)
                futures.append(await producer.send_batch(builder, topic, partition=partition))
            await asyncio.gather(*futures)
        except BaseException:
            # the caller retries the whole list; the other writes may fail too, or later
            for future in futures:
                future.add_done_callback(_retrieve)
            raise


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a write's failure as seen (it is retried as a whole): no 'never retrieved' noise."""
    if not future.cancelled():
        future.exception()


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data``, masked to 31 bits (``Utils.toPositive(Utils.murmur2(key))``,
    what the default partitioner takes the partition modulo of). Same result as
    ``aiokafka.partitioner.murmur2(data) & 0x7FFFFFFF``, faster because the 4-byte words are
    unpacked at once by a prepared ``Struct`` rather than assembled byte by byte: 1.4 against
    2.35 µs for a 10-byte meter-ID key (the gap grows with the key)."""
    length = len(data)
    h = 0x9747B28C ^ length
    words = length >> 2
    if words:
        unpack = _UNPACK[words] if words < len(_UNPACK) else struct.Struct(f"<{words}I").unpack_from
        for k in unpack(data):
            k = (k * _M) & _MASK
            h = ((h * _M) & _MASK) ^ (((k ^ (k >> 24)) * _M) & _MASK)
    tail = length & 3
    if tail:
        base = length - tail
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h = ((h ^ data[base]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return (h ^ (h >> 15)) & 0x7FFFFFFF
