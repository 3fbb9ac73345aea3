"""The gateway's producer on Apache Kafka (idempotent): a batch the broker refuses for its size
fails alone, and the partition's next batches are written (aiokafka's own producer refused them
all with OutOfOrderSequenceNumber until it was restarted), through ``send`` and through the
record writer's ``send_batch``."""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import uuid
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.producer.transaction_manager import TransactionManager

from gateway.kafka import producer as producer_module
from gateway.kafka.clients import common_kwargs, create_producer
from tests.ingress_fixtures import consume
from tests.kafka_fixtures import KafkaUnderTest


def _too_large() -> bytes:
    """Over the topic's 1,000 bytes even compressed (the producer compresses batches)."""
    return base64.b64encode(os.urandom(3000))


async def _small_topic(kafka: KafkaUnderTest) -> str:
    topic = f"sequence-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(**common_kwargs(kafka.settings()))
    await admin.start()
    try:
        configs = {"max.message.bytes": "1000"}
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=configs)])
    finally:
        await admin.close()
    return topic


async def _send(producer: AIOKafkaProducer, topic: str, value: bytes) -> str:
    try:
        await (await producer.send(topic, value))
    except KafkaError as exc:
        return type(exc).__name__
    return "ok"


async def _send_batch(producer: AIOKafkaProducer, topic: str, value: bytes) -> str:
    builder = producer.create_batch()
    assert builder.append(key=None, value=value, timestamp=None) is not None
    try:
        await (await producer.send_batch(builder, topic, partition=0))
    except KafkaError as exc:
        return type(exc).__name__
    return "ok"


@pytest.mark.parametrize("send", [_send, _send_batch], ids=["send", "send_batch"])
async def test_a_refused_batch_does_not_stop_the_partitions_next_ones(
    kafka: KafkaUnderTest, send: object
) -> None:
    if not kafka.idempotence:
        pytest.skip("sequence numbers are the idempotent producer's (this broker has none)")
    topic = await _small_topic(kafka)
    producer = create_producer(kafka.settings())
    await producer.start()
    try:
        outcomes = [
            await send(producer, topic, value)  # type: ignore[operator]
            for value in (b"a", _too_large(), b"b", b"c", _too_large(), _too_large(), b"d")
        ]
    finally:
        await producer.stop()
    refused = MessageSizeTooLargeError.__name__
    assert outcomes == ["ok", refused, "ok", "ok", refused, refused, "ok"]
    written = await consume(kafka.settings(), topic, 4)
    assert [r.value for r in written] == [b"a", b"b", b"c", b"d"]


@pytest.mark.parametrize(("sends", "given_back"), [(1, True), (2, False)])
async def test_only_a_batch_that_failed_on_its_only_send_gives_its_numbers_back(
    sends: int, given_back: bool
) -> None:
    """A batch sent again (a retriable error first) may have been appended by a leader that
    failed before answering, then expired waiting for a new leader: its numbers stay spent,
    or the next batch of the same size would be taken for its duplicate and lost."""
    manager = TransactionManager(None, 60_000)
    tp = TopicPartition("t", 0)
    manager.increment_sequence_number(tp, 10)  # numbers 0-9 written before
    pop = functools.partial(_popped, manager, sends)
    batch = producer_module._pop_batch(pop, manager, tp)  # takes 10-14
    assert manager.sequence_number(tp) == 15
    batch.future.set_exception(KafkaError("refused"))
    await asyncio.sleep(0)  # the done callbacks run
    assert manager.sequence_number(tp) == (10 if given_back else 15)


def _popped(manager: TransactionManager, sends: int, tp: TopicPartition) -> SimpleNamespace:
    """What aiokafka's ``_pop_batch`` does to a fresh batch of 5 records: numbers and a count
    of sends (``retry_count``, 1 after the first)."""
    manager.increment_sequence_number(tp, 5)
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    return SimpleNamespace(future=future, retry_count=sends)
