"""The Deliverer on a real broker: produce once per key, report each message's outcome, keep
de-duplication honest (only what Kafka acknowledged is remembered; an identical copy in flight
waits for the first; replays route again), and fail cleanly without a producer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from gateway.config import KafkaSettings
from gateway.ingress.dedup import DedupWindow
from gateway.ingress.deliver import Deliverer
from gateway.ingress.envelope import parse_publications
from gateway.ingress.pipeline import Delivery, Destination, Outcome, RoutingTable, plan_deliveries
from gateway.ingress.routes import Route, RouteKind
from gateway.ingress.samples import body_of, publication
from gateway.kafka.clients import create_producer
from gateway.kafka.topics import ensure_topics
from tests import ingress_fixtures
from tests.ingress_fixtures import tx
from tests.kafka_fixtures import KafkaUnderTest

OWNED = "1400010001"
UNOWNED = "1999999999"
ROUTE = Route(RouteKind.PUBLICATION, OWNED, "IF-043")
STRANGER = Route(RouteKind.PUBLICATION, UNOWNED, "IF-043")


class Topics:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.inbound = f"deliver.inbound.{tag}"
        self.quarantine = f"deliver.quarantine.{tag}"
        self.table = RoutingTable(
            destinations={OWNED: Destination("one", self.inbound, None)},
            quarantine_topic=self.quarantine,
            dcp_id="9000000001",
        )


@pytest.fixture()
async def topics(kafka: KafkaUnderTest) -> Topics:
    t = Topics()
    await ensure_topics(kafka.settings(), [t.inbound, t.quarantine], partitions=1)
    return t


@pytest.fixture()
async def producer(kafka: KafkaUnderTest) -> AsyncIterator[AIOKafkaProducer]:
    p = create_producer(kafka.settings(), request_timeout_ms=5000, linger_ms=2)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


def plan(
    topics: Topics, ids: list[str], *, route: Route = ROUTE, replay: bool = False
) -> list[Delivery]:
    body = body_of([publication(route.recipient, t, replay=replay) for t in ids])
    return plan_deliveries(route, parse_publications(orjson.loads(body)), topics.table)


async def consume(settings: KafkaSettings, topic: str, count: int) -> list[ConsumerRecord]:
    """Exactly the first ``count`` records, then proof that no further record follows."""
    return await ingress_fixtures.consume(settings, topic, count, settle_ms=1000)


def ids_of(records: list[ConsumerRecord]) -> list[str]:
    return [dict(r.headers)["dip-transaction-id"].decode() for r in records]


async def test_every_message_is_produced_once_with_its_outcome(
    kafka: KafkaUnderTest, topics: Topics, producer: AIOKafkaProducer
) -> None:
    window = DedupWindow(100)
    deliverer = Deliverer(producer, window, 5.0)
    ids = [tx(), tx(), tx()]
    assert await deliverer.deliver(plan(topics, ids)) == [Outcome.ROUTED] * 3
    assert len(window) == 3
    again = await deliverer.deliver(plan(topics, [ids[1], tx()]))
    assert again == [Outcome.DUPLICATE, Outcome.ROUTED]
    records = await consume(kafka.settings(), topics.inbound, 4)
    assert ids_of(records)[:3] == ids
    assert len(records) == 4 and ids_of(records)[1:].count(ids[1]) == 1
    assert records[0].key == b"2000056535972"
    assert orjson.loads(records[0].value)["CommonBlock"]["D0"]["transactionID"] == ids[0]


async def test_unowned_recipient_is_quarantined(
    kafka: KafkaUnderTest, topics: Topics, producer: AIOKafkaProducer
) -> None:
    deliverer = Deliverer(producer, DedupWindow(100), 5.0)
    lost = tx()
    assert await deliverer.deliver(plan(topics, [lost], route=STRANGER)) == [Outcome.QUARANTINED]
    [record] = await consume(kafka.settings(), topics.quarantine, 1)
    assert dict(record.headers)["dip-quarantine-reason"] == b"unknown_recipient"
    assert ids_of([record]) == [lost]


async def test_identical_copies_in_flight_are_produced_once(
    kafka: KafkaUnderTest, topics: Topics, producer: AIOKafkaProducer
) -> None:
    deliverer = Deliverer(producer, DedupWindow(100), 5.0)
    same = tx()
    first, second, third = await asyncio.gather(
        *(deliverer.deliver(plan(topics, [same])) for _ in range(3))
    )
    assert sorted([*first, *second, *third]) == sorted(
        [Outcome.ROUTED, Outcome.DUPLICATE, Outcome.DUPLICATE]
    )
    assert ids_of(await consume(kafka.settings(), topics.inbound, 1)) == [same]


async def test_a_retry_of_a_push_still_in_flight_is_answered_within_one_bound(
    kafka: KafkaUnderTest, topics: Topics, producer: AIOKafkaProducer
) -> None:
    """The DIP retries a push whose first copy Kafka has not settled (a broker outage: the
    producer retries without end). The retry's messages all wait on that copy, under one
    bound: not one bound each, which kept a 100-message retry (and a push slot) for minutes."""
    deliverer = Deliverer(producer, DedupWindow(100), 0.5)
    retry = plan(topics, [tx() for _ in range(20)])
    first_copy: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    for delivery in retry:  # the first copy's claim, still waiting for Kafka
        deliverer._in_flight[delivery.dedup_key] = first_copy
    async with asyncio.timeout(5):  # 20 bounds one after another would take 10 s
        assert await deliverer.deliver(retry) == [Outcome.FAILED] * 20
    assert not first_copy.done()  # the first copy's wait is not cut short by the retry


async def test_without_a_producer_everything_fails_and_nothing_is_remembered(
    kafka: KafkaUnderTest, topics: Topics, producer: AIOKafkaProducer
) -> None:
    window = DedupWindow(100)
    deliverer = Deliverer(None, window, 1.0)
    ids = [tx(), tx()]
    assert await deliverer.deliver(plan(topics, ids)) == [Outcome.FAILED, Outcome.FAILED]
    assert len(window) == 0
    deliverer.producer = producer  # Kafka reached: the DIP's retry lands
    assert await deliverer.deliver(plan(topics, ids)) == [Outcome.ROUTED, Outcome.ROUTED]
    assert ids_of(await consume(kafka.settings(), topics.inbound, 2)) == ids


async def test_a_stopped_producer_fails_the_push_within_the_bound(
    kafka: KafkaUnderTest, topics: Topics
) -> None:
    producer = create_producer(kafka.settings())
    await producer.start()
    await producer.stop()
    window = DedupWindow(100)
    deliverer = Deliverer(producer, window, 2.0)
    async with asyncio.timeout(5):
        outcomes = await deliverer.deliver(plan(topics, [tx()]))
    assert outcomes == [Outcome.FAILED]
    assert len(window) == 0


async def test_a_replay_is_routed_again_and_then_remembered(
    kafka: KafkaUnderTest, topics: Topics, producer: AIOKafkaProducer
) -> None:
    deliverer = Deliverer(producer, DedupWindow(100), 5.0)
    once = tx()
    assert await deliverer.deliver(plan(topics, [once])) == [Outcome.ROUTED]
    assert await deliverer.deliver(plan(topics, [once], replay=True)) == [Outcome.ROUTED]
    assert await deliverer.deliver(plan(topics, [once])) == [Outcome.DUPLICATE]
    records = await consume(kafka.settings(), topics.inbound, 2)
    assert ids_of(records) == [once, once]
    assert [dict(r.headers)["dip-replay-indicator"] for r in records] == [b"false", b"true"]


async def test_a_zero_window_turns_de_duplication_off(
    kafka: KafkaUnderTest, topics: Topics, producer: AIOKafkaProducer
) -> None:
    deliverer = Deliverer(producer, DedupWindow(0), 5.0)
    same = tx()
    assert await deliverer.deliver(plan(topics, [same])) == [Outcome.ROUTED]
    assert await deliverer.deliver(plan(topics, [same])) == [Outcome.ROUTED]
    assert ids_of(await consume(kafka.settings(), topics.inbound, 2)) == [same, same]
