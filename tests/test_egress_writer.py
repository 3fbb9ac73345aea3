"""The outcome writer: Kafka's murmur2 partitioning (as aiokafka's default partitioner), and
real writes to Kafka through its per-partition builder lanes."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from aiokafka.producer.message_accumulator import BatchBuilder

from gateway.kafka.clients import common_kwargs, create_producer, producer_kwargs
from gateway.kafka.topics import ensure_topics
from gateway.kafka.writer import OutRecord, RecordWriter, murmur2
from tests.kafka_fixtures import KafkaUnderTest


def test_murmur2_matches_aiokafka_for_every_tail_length() -> None:
    rng = random.Random(7)
    keys = [b"", b"a", b"ab", b"abc", b"abcd", b"meter-123456", "clé".encode()]
    keys += [rng.randbytes(rng.randint(0, 64)) for _ in range(2000)]
    keys += [rng.randbytes(rng.randint(250, 300)) for _ in range(200)]
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
    """Every record is in its key's murmur2 partition, in write order, with its headers."""
    settings = kafka.settings()
    topic = f"writer-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, [topic], partitions=3)
    big = [OutRecord(topic, f"v{i}".encode(), f"k{i % 5}".encode(), None) for i in range(300)]
    small = [OutRecord(topic, b"dead", b"k-alone", [("dcpgw-reason", b"why")])]
    producer = create_producer(settings)
    await producer.start()
    try:
        await RecordWriter(producer).write(big + small)
    finally:
        await producer.stop()

    got = await _read(settings, topic, len(big) + len(small))
    for record in got:
        assert record.key is not None
        assert record.partition == murmur2(record.key) % 3, record.key
    for key in {r.key for r in big}:
        values = [r.value for r in sorted(got, key=lambda r: r.offset) if r.key == key]
        assert values == [r.value for r in big if r.key == key]
    (alone,) = [r for r in got if r.key == b"k-alone"]
    assert alone.value == b"dead" and list(alone.headers) == [("dcpgw-reason", b"why")]


class _CountingProducer(AIOKafkaProducer):  # type: ignore[misc]
    """A real producer that counts the batches handed to it."""

    sent_batches = 0

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        self.sent_batches += 1
        return await super().send_batch(batch, topic, partition=partition)


async def test_concurrent_writes_share_each_partitions_builders(kafka: KafkaUnderTest) -> None:
    """Forty deliveries writing at once fill shared builders (one lane per partition) instead
    of one builder each: aiokafka takes one batch per partition into each produce request, so
    a builder per write capped results at one delivery per broker round trip. Small builders
    (16 KB) make full ones queue and new ones open; every record still lands once, in order."""
    settings = kafka.settings()
    topic = f"writer-lanes-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, [topic], partitions=3)
    writes = [
        [
            OutRecord(topic, f"w{w}-{i}-".encode() + b"x" * 200, f"w{w}-k{i % 4}".encode(), None)
            for i in range(40)
        ]
        for w in range(40)
    ]
    producer = _CountingProducer(**producer_kwargs(settings, max_batch_size=16 * 1024))
    await producer.start()
    writer = RecordWriter(producer)
    try:
        await asyncio.wait_for(asyncio.gather(*(writer.write(w) for w in writes)), 60)
    finally:
        await writer.close()
        await producer.stop()
    assert 3 <= producer.sent_batches < len(writes), producer.sent_batches

    flat = [r for w in writes for r in w]
    got = await _read(settings, topic, len(flat))
    assert sorted(r.value or b"" for r in got) == sorted(r.value or b"" for r in flat)  # each once
    for record in got:
        assert record.key is not None
        assert record.partition == murmur2(record.key) % 3
    by_offset = sorted(got, key=lambda r: (r.partition, r.offset))
    for key in {r.key for r in flat}:
        assert [r.value for r in by_offset if r.key == key] == [
            r.value for r in flat if r.key == key
        ]


async def test_a_write_the_producer_cannot_take_raises_kafka_error(kafka: KafkaUnderTest) -> None:
    """The caller retries on KafkaError; a write to a stopped producer must say so, not hang."""
    settings = kafka.settings()
    topic = f"writer-closed-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, [topic], partitions=3)
    producer = create_producer(settings)
    await producer.start()
    writer = RecordWriter(producer)
    await writer.write([OutRecord(topic, b"first", b"k", None)])  # metadata known
    await producer.stop()
    with pytest.raises(KafkaError):
        await asyncio.wait_for(writer.write([OutRecord(topic, b"late", b"k", None)]), 30)
    await writer.close()


async def _read(settings: Any, topic: str, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        topic, **common_kwargs(settings), auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    got: list[ConsumerRecord[bytes, bytes]] = []
    try:
        while len(got) < count:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 30)
            for records in batch.values():
                got.extend(records)
        extra = await consumer.getmany(timeout_ms=300)  # nothing beyond: no duplicates
        for records in extra.values():
            got.extend(records)
    finally:
        await consumer.stop()
    return got


class _HeldProducer:
    """The producer calls a lane makes, for failure paths real Kafka will not produce on cue:
    ``send_batch`` can be held, made to fail, and its acknowledgements are set by the test."""

    def __init__(self, batch_size: int = 1024) -> None:
        self.batch_size = batch_size
        self.sent: list[int] = []  # records per batch handed over
        self.times: list[float] = []  # loop time of each hand-over
        self.failures: list[BaseException | None] = []  # per send_batch call, in order
        self.hold: asyncio.Event | None = None
        self.acks: list[asyncio.Future[None]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0)

    async def send_batch(self, builder: BatchBuilder, topic: str, *, partition: int) -> Any:
        if self.hold is not None:
            await self.hold.wait()
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        self.sent.append(builder.record_count())
        self.times.append(asyncio.get_running_loop().time())
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        return ack

    def ack_all(self) -> None:
        for ack in self.acks:
            if not ack.done():
                ack.set_result(None)


def _records(tag: str, count: int, size: int = 100, topic: str = "t") -> list[OutRecord]:
    value = b"x" * size
    return [OutRecord(topic, f"{tag}{i}".encode() + value, b"k", None) for i in range(count)]


async def test_a_failed_builder_fails_every_writer_in_it_and_the_builders_behind_it() -> None:
    producer = _HeldProducer(batch_size=300)  # two records per builder
    writer = RecordWriter(producer)
    producer.hold = asyncio.Event()
    first = asyncio.create_task(writer.write(_records("a", 3)))  # builders 1 and 2 (open)
    second = asyncio.create_task(writer.write(_records("b", 1)))  # joins builder 2
    await asyncio.sleep(0.01)
    producer.failures = [KafkaError("broker said no")]  # builder 1 fails
    producer.hold.set()
    outcome = await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 5)
    assert [type(o) for o in outcome] == [KafkaError, KafkaError]
    assert outcome[0] is not outcome[1]  # copies: no shared traceback between writers
    assert producer.sent == []  # builder 2 was not sent ahead of builder 1's retry
    third = asyncio.create_task(writer.write(_records("c", 1)))  # the lane works again
    await asyncio.sleep(0.01)
    producer.ack_all()
    await asyncio.wait_for(third, 5)
    assert producer.sent == [1]
    await writer.close()


async def test_a_cancelled_writer_leaves_its_records_with_the_lane() -> None:
    producer = _HeldProducer()
    writer = RecordWriter(producer)
    cancelled = asyncio.create_task(writer.write(_records("a", 3)))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert producer.sent == [3]  # handed over all the same
    other = asyncio.create_task(writer.write(_records("b", 2)))
    await asyncio.sleep(0.01)
    producer.ack_all()
    await asyncio.wait_for(other, 5)
    assert producer.sent == [3, 2]
    await writer.close()


async def test_close_fails_the_writers_still_waiting() -> None:
    producer = _HeldProducer()
    writer = RecordWriter(producer)
    producer.hold = asyncio.Event()
    waiting = asyncio.create_task(writer.write(_records("a", 2)))  # lane held in send_batch
    await asyncio.sleep(0.01)
    queued = asyncio.create_task(writer.write(_records("b", 2)))  # in the next builder
    await asyncio.sleep(0.01)
    await writer.close()
    outcome = await asyncio.wait_for(asyncio.gather(waiting, queued, return_exceptions=True), 5)
    assert [type(o) for o in outcome] == [KafkaError, KafkaError]
    assert producer.sent == []
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in tasks if "_drive" in repr(t.get_coro())]


async def test_an_error_that_is_not_kafkas_reaches_the_writer_as_a_kafka_error() -> None:
    """The service retries KafkaError; anything else from send_batch must not wedge a write."""
    producer = _HeldProducer()
    writer = RecordWriter(producer)
    producer.failures = [AssertionError("Unrecognized partition")]
    with pytest.raises(KafkaError, match="Unrecognized partition"):
        await asyncio.wait_for(writer.write(_records("a", 1)), 5)
    await writer.close()


async def _just_after_a_tick(interval: float) -> None:
    """Sleep until just after a multiple of ``interval`` on the loop's clock (the writer's
    ticks), so the next tick is almost a whole interval away."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(interval - loop.time() % interval + 0.005)


async def _until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 (the stand-in has no event to wait on)
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), 5)


async def test_a_lane_hands_over_at_most_one_open_builder_per_tick() -> None:
    """The first write after a quiet spell goes at once; the writes that follow share the next
    builder, handed over at the next tick (a multiple of the interval)."""
    producer = _HeldProducer()
    writer = RecordWriter(producer, interval=0.3)
    loop = asyncio.get_running_loop()
    await _just_after_a_tick(0.3)
    first = asyncio.create_task(writer.write(_records("a", 1)))
    await _until(lambda: producer.sent == [1])  # at once
    later = [asyncio.create_task(writer.write(_records(f"b{i}", 1))) for i in range(3)]
    await asyncio.sleep(0.1)
    assert producer.sent == [1]  # held until the tick
    producer.ack_all()
    await asyncio.wait_for(first, 5)
    await _until(lambda: len(producer.sent) == 2)
    assert producer.sent == [1, 3]  # one builder for the three
    released = producer.times[1]
    assert released - producer.times[0] > 0.2
    assert abs(released - round(released / 0.3) * 0.3) < 0.05  # on a tick
    producer.ack_all()
    await asyncio.wait_for(asyncio.gather(*later), 5)
    assert loop.time() - released < 5
    await writer.close()


async def test_held_lanes_are_released_together_on_the_same_tick() -> None:
    """Two lanes that last handed over 0.1 s apart release their next builders on one tick
    (one produce request for both), not each an interval after its own hand-over."""
    producer = _HeldProducer()
    writer = RecordWriter(producer, interval=0.3)
    await _just_after_a_tick(0.3)
    first = [asyncio.create_task(writer.write(_records("a", 1, topic="x")))]
    await _until(lambda: len(producer.sent) == 1)
    await asyncio.sleep(0.1)
    first.append(asyncio.create_task(writer.write(_records("a", 1, topic="y"))))
    await _until(lambda: len(producer.sent) == 2)
    later = [asyncio.create_task(writer.write(_records("b", 1, topic=t))) for t in ("x", "y")]
    producer.ack_all()
    await _until(lambda: len(producer.sent) == 4)
    assert producer.times[1] - producer.times[0] > 0.08  # the first hand-overs were apart
    assert abs(producer.times[3] - producer.times[2]) < 0.02  # the next ones on one tick
    producer.ack_all()
    await asyncio.wait_for(asyncio.gather(*first, *later), 5)
    await writer.close()


async def test_a_builder_that_fills_while_its_lane_holds_goes_at_once() -> None:
    producer = _HeldProducer(batch_size=300)  # two records per builder
    writer = RecordWriter(producer, interval=30.0)
    first = asyncio.create_task(writer.write(_records("a", 1)))
    await _until(lambda: producer.sent == [1])
    second = asyncio.create_task(writer.write(_records("b", 1)))  # opens a builder: held
    await asyncio.sleep(0.05)
    assert producer.sent == [1]
    third = asyncio.create_task(writer.write(_records("c", 2)))  # fills it: woken
    await _until(lambda: producer.sent == [1, 2])
    producer.ack_all()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    await writer.close()  # the open builder (c's second record) was held: its writer fails
    with pytest.raises(KafkaError, match="closed"):
        await asyncio.wait_for(third, 5)
    assert producer.sent == [1, 2]
