"""Write records to Kafka in bulk, coalescing concurrent writers: egress's outcome records
(results, dead letters) and the publications the ingress webhook receives.

``AIOKafkaProducer.send`` costs a coroutine, a future, a metadata lookup and a pure-Python
murmur2 hash per record; for a batch of 500 results that was the largest single cost of the
egress hot path, and one of the largest of the webhook's for a push of 100 publications. So
records are appended straight to a ``BatchBuilder`` per partition (``create_batch``/
``send_batch``): one future per Kafka batch, not per record.

The builders are shared by every writer writing at the same time, one *lane* per partition.
aiokafka keeps one produce request in flight per broker and takes one batch per partition into
each request, and ``send_batch`` waits until the partition's previous batch has been taken. A
builder per write therefore moved one delivery's records per partition per broker round trip,
however many deliveries were waiting. In a lane, a builder fills while the previous one waits
its turn, so each round trip carries everything that arrived during the last one (up to the
producer's ``max_batch_size``; a full builder queues behind it and the next one opens).

A lane hands the producer at most one builder per ``interval`` (unless a builder fills), a
Nagle-like rule: the first record after a quiet spell is written at once, and the ones that
follow share the next produce request. Held lanes are released on ticks shared by the whole
writer (multiples of ``interval`` on the loop's clock), so the partitions' builders go out
together, in one produce request per broker, instead of each on its own timer. Producer
``linger_ms`` cannot do this for a lane: it holds the builder already handed over, while the
lane's next records go into the next builder. At batch size 1 (a result every few
milliseconds) a produce request per result cost the event loop and the broker more than the rest
of the result's work; at high rates builders fill first.

Partitioning is the default partitioner's (murmur2 of the key modulo the partition count, so a
key's results land where ``send`` would put them and stay in order).
Records without a key all go to one randomly chosen partition per write.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from murmurhash2 import murmurhash2 as _murmurhash2

_KAFKA_SEED = 0x9747B28C
# Timers fire within about a millisecond of their deadline (uvloop's have millisecond
# granularity): a lane this close to its tick is released rather than held again.
_TIMER_SLACK = 0.001


class Record(Protocol):
    """What the writer reads of a record to write."""

    @property
    def topic(self) -> str: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def headers(self) -> list[tuple[str, bytes]] | None: ...


R = TypeVar("R", bound=Record)


class OutRecord(NamedTuple):
    """One record to write for a final outcome (result or dead letter); a NamedTuple, as one
    is made per message (cheaper to make than a dataclass)."""

    topic: str
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes]] | None


@dataclass(slots=True)
class _Pending:
    """A builder and the future its writers wait on (set when Kafka acknowledged it)."""

    builder: Any  # aiokafka's BatchBuilder
    acked: asyncio.Future[None]


@dataclass(slots=True)
class _Lane:
    """One partition's builders: ``full`` ones queued in order, then the ``open`` one."""

    open: _Pending | None = None
    full: deque[_Pending] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    ready_at: float = -math.inf  # loop time from which the open builder may be handed over
    filled: asyncio.Future[None] | None = None  # wakes a lane holding its open builder

    def fail_queued(self, error: BaseException) -> None:
        """Fail every builder not yet handed to the producer, and drop them."""
        for pending in [*self.full, *([self.open] if self.open else [])]:
            _fail(pending.acked, error)
        self.full.clear()
        self.open = None


class RecordWriter:
    """Produces lists of records through one shared builder lane per partition."""

    def __init__(self, producer: AIOKafkaProducer, *, interval: float = 0.0) -> None:
        """``interval``: after handing a builder to the producer, a lane hands over the next one
        that is not full at the next tick (multiple of ``interval`` on the loop's clock; 0: as
        soon as the previous one is taken)."""
        self._producer = producer
        self._interval = interval
        self._lanes: dict[tuple[str, int], _Lane] = {}

    @property
    def producer(self) -> AIOKafkaProducer:
        return self._producer

    async def write(self, records: Sequence[Record]) -> None:
        """Produce every record, in order per partition, and wait for Kafka's acknowledgement.
        Raises ``KafkaError`` (the caller retries the whole list: at-least-once). Cancelling
        the wait does not take the records back: they are written with their lane's builder."""
        if not records:
            return
        waits = {acked for acked, _ in await self.submit(records)}
        # wait, not gather: a cancelled writer must not cancel futures other writers share
        await asyncio.wait(waits)
        for future in waits:
            error = future.exception()
            if error is not None:
                # a copy: the writers sharing a builder would all extend one traceback
                raise copy.copy(error)

    async def submit(self, records: Sequence[R]) -> list[tuple[asyncio.Future[None], Sequence[R]]]:
        """Hand every record to its partition's lane without waiting for Kafka: the future of
        each builder the records went into (done when Kafka acknowledged it, failed with a
        ``KafkaError`` when not) with the records that went into it. Raises, with nothing
        handed over, when a topic's partitions cannot be read. For writers that report each
        record's outcome (the ingress webhook); :meth:`write` waits for them all. The records
        per builder come from the builders' counts, so there is no per-record bookkeeping."""
        handed: list[tuple[asyncio.Future[None], Sequence[R]]] = []
        for (topic, partition), group in (await self._group(records)).items():
            lane = self._lanes.get((topic, partition))
            if lane is None:
                lane = self._lanes[(topic, partition)] = _Lane()
            pending = lane.open
            if pending is None:
                pending = lane.open = self._new_pending()
            start = 0  # of the group's records in ``pending``
            before = pending.builder.record_count()  # other writers' records in it
            try:
                append = pending.builder.append
                for record in group:
                    key, value, headers = record.key, record.value, record.headers or []
                    if append(timestamp=None, key=key, value=value, headers=headers) is None:
                        # full: it queues behind the builders before it; the first record
                        # always fits a new builder
                        lane.full.append(pending)
                        taken = pending.builder.record_count() - before
                        handed.append((pending.acked, group[start : start + taken]))
                        start, before = start + taken, 0
                        if lane.filled is not None and not lane.filled.done():
                            lane.filled.set_result(None)
                        pending = lane.open = self._new_pending()
                        append = pending.builder.append
                        append(timestamp=None, key=key, value=value, headers=headers)
            finally:  # even when a record could not be appended: what was appended is sent
                taken = pending.builder.record_count() - before
                handed.append((pending.acked, group[start : start + taken]))
                if lane.task is None:
                    # An empty context: the lane outlives the batch that starts it, and must not
                    # carry that batch's log fields and trace span.
                    lane.task = asyncio.create_task(
                        self._drive(topic, partition, lane), context=contextvars.Context()
                    )
        return handed

    async def close(self) -> None:
        """Stop the lanes (before the producer stops); their unacknowledged writers fail."""
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for lane in self._lanes.values():
            lane.fail_queued(KafkaError("outcome writer closed"))
        self._lanes.clear()

    async def _group(self, records: Sequence[R]) -> dict[tuple[str, int], list[R]]:
        """Records by (topic, partition), in order; partitions as the default partitioner's."""
        producer = self._producer
        partitions: dict[str, list[int]] = {}
        unkeyed: dict[str, int] = {}
        groups: dict[tuple[str, int], list[R]] = {}
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
            else:  # murmur2(key), in line: once per record
                partition = known[(_murmurhash2(key, _KAFKA_SEED) & 0x7FFFFFFF) % len(known)]
            group = groups.get((topic, partition))
            if group is None:
                groups[(topic, partition)] = [record]
            else:
                group.append(record)
        return groups

    def _new_pending(self) -> _Pending:
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.add_done_callback(_retrieve)  # writers may all be gone (cancelled) by then
        return _Pending(self._producer.create_batch(), acked)

    async def _drive(self, topic: str, partition: int, lane: _Lane) -> None:
        """Hand the lane's builders to the producer in order until none is left. Each
        ``send_batch`` waits for the partition's previous batch to be taken into a request;
        meanwhile the next builder fills. An open (not full) builder waits for the first tick
        after the last hand-over, or until it fills."""
        producer = self._producer
        loop = asyncio.get_running_loop()
        try:
            while True:
                if lane.full:
                    pending = lane.full.popleft()
                elif lane.open is not None:
                    hold = lane.ready_at - loop.time()
                    if hold > _TIMER_SLACK:
                        lane.filled = loop.create_future()
                        await asyncio.wait([lane.filled], timeout=hold)
                        lane.filled = None
                        continue
                    pending, lane.open = lane.open, None
                else:
                    return
                lane.ready_at = _next_tick(loop.time() + _TIMER_SLACK, self._interval)
                try:
                    sent = await producer.send_batch(pending.builder, topic, partition=partition)
                except asyncio.CancelledError:
                    _fail(pending.acked, KafkaError("outcome writer closed"))
                    raise
                except Exception as exc:  # producer closed, metadata, oversize: writers retry
                    error = exc if isinstance(exc, KafkaError) else KafkaError(repr(exc))
                    # the builders queued behind it fail too: a writer whose records span two
                    # builders retries them all, so the later ones must not land first
                    _fail(pending.acked, error)
                    lane.fail_queued(error)
                    continue
                sent.add_done_callback(lambda done, acked=pending.acked: _relay(done, acked))
        finally:
            lane.task = None


def _next_tick(after: float, interval: float) -> float:
    """The first multiple of ``interval`` after ``after`` (``-inf`` when not pacing)."""
    if interval <= 0:
        return -math.inf
    return (math.floor(after / interval) + 1) * interval


def _relay(done: asyncio.Future[Any], acked: asyncio.Future[None]) -> None:
    if done.cancelled():
        _fail(acked, KafkaError("outcome write was cancelled"))
    elif (error := done.exception()) is not None:  # retrieved, even if nobody waits
        _fail(acked, error)
    elif not acked.done():
        acked.set_result(None)


def _fail(acked: asyncio.Future[None], error: BaseException) -> None:
    if not acked.done():
        acked.set_exception(error)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a write's failure as seen (it is retried as a whole): no 'never retrieved' noise."""
    if not future.cancelled():
        future.exception()


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data``, masked to 31 bits (``Utils.toPositive(Utils.murmur2(key))``,
    what the default partitioner takes the partition modulo of). Kafka's murmur2 is the plain
    32-bit MurmurHash2 with seed ``0x9747b28c``; the ``murmurhash2`` package computes it in
    native code, several times faster than pure Python (``load-tests/README.md``)."""
    return _murmurhash2(data, _KAFKA_SEED) & 0x7FFFFFFF
