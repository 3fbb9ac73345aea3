"""Smoke test: the broker the fixture picked really stores and returns records."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from gateway.config import KafkaSettings
from gateway.kafka.clients import (
    common_kwargs,
    consumer_kwargs,
    create_consumer,
    create_producer,
    producer_kwargs,
)
from gateway.kafka.embedded import EmbeddedBroker
from gateway.kafka.topics import ensure_topics
from tests.kafka_fixtures import KafkaUnderTest, unique

pytestmark = pytest.mark.tansu  # the broker basics make run's embedded Tansu must keep


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


async def test_a_stopped_consumer_leaves_its_group(kafka: KafkaUnderTest) -> None:
    """Including from the first generation, which Tansu numbers 0 (aiokafka only leaves from
    generation 1 up): a member that stays behind keeps a restarted gateway waiting about two
    session timeouts for its partitions."""
    settings = kafka.settings()
    topic = unique("leave")
    await ensure_topics(settings, [topic])
    admin = AIOKafkaAdminClient(**common_kwargs(settings))
    await admin.start()
    try:
        for _ in range(2):  # first generation (0 on Tansu, 1 on Kafka), then the next one
            consumer = create_consumer(settings, topic)
            await consumer.start()
            try:
                async with asyncio.timeout(30):
                    while not consumer.assignment():
                        await consumer.getmany(timeout_ms=100)
                assert await _members(admin, settings.consumer_group) == 1
            finally:
                await consumer.stop()
            assert await _members(admin, settings.consumer_group) == 0
    finally:
        await admin.close()


async def test_on_tansu_without_the_compat_patch_a_stopped_first_member_lingers(
    tansu: EmbeddedBroker,
) -> None:
    """Why ``kafka.tansu_compat`` exists (and stays off the production path): on Tansu the
    first generation is 0, so plain aiokafka skips LeaveGroup and the stopped member stays in
    the group until its session expires."""
    plain = KafkaUnderTest(tansu.bootstrap_servers, "tansu", False).settings(
        tansu_compat=False, session_timeout_ms=30_000, heartbeat_interval_ms=1000
    )
    topic = unique("linger")
    await ensure_topics(plain, [topic])
    consumer = create_consumer(plain, topic)
    assert type(consumer) is AIOKafkaConsumer  # the production path: no patch
    admin = AIOKafkaAdminClient(**common_kwargs(plain))
    await admin.start()
    try:
        await consumer.start()
        try:
            async with asyncio.timeout(30):
                while not consumer.assignment():
                    await consumer.getmany(timeout_ms=100)
        finally:
            await consumer.stop()
        assert await _members(admin, plain.consumer_group) == 1, "it left after all"
    finally:
        await admin.close()


async def _members(admin: AIOKafkaAdminClient, group: str) -> int:
    response = (await admin.describe_consumer_groups([group]))[0]
    (described,) = response.groups
    assert described[0] == 0, described  # error code
    return len(described[5])  # members


def test_consumer_group_timing_reaches_the_consumer() -> None:
    settings = KafkaSettings(
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        rebalance_timeout_ms=30_000,
        max_poll_interval_ms=120_000,
    )
    kwargs = consumer_kwargs(settings)
    assert kwargs["session_timeout_ms"] == 6000
    assert kwargs["heartbeat_interval_ms"] == 1000
    assert kwargs["rebalance_timeout_ms"] == 30_000
    assert kwargs["max_poll_interval_ms"] == 120_000
    assert kwargs["check_crcs"] is True, "on by default, as Apache Kafka's check.crcs"
    assert consumer_kwargs(KafkaSettings(check_crcs=False))["check_crcs"] is False
    with pytest.raises(ValidationError, match="at most a third of session_timeout_ms"):
        KafkaSettings(session_timeout_ms=6000, heartbeat_interval_ms=3000)


def test_embedded_broker_dies_with_a_killed_parent() -> None:
    """A test run or demo killed outright (SIGKILL: no clean-up runs) leaves no broker behind."""
    script = (
        "import sys, time\n"
        "from gateway.kafka.embedded import EmbeddedBroker\n"
        "broker = EmbeddedBroker()\n"
        "broker.start()\n"
        "print(broker._proc.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    try:
        broker_pid = int(parent.stdout.readline())
        assert Path(f"/proc/{broker_pid}").exists()
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
    deadline = time.monotonic() + 10
    while _alive(broker_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _alive(broker_pid)
    if alive:
        os.kill(broker_pid, signal.SIGKILL)
    assert not alive, "the broker outlived its killed parent"


def _alive(pid: int) -> bool:
    """Running (a zombie reaped by init counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("codec", ["default", "gzip", None])
async def test_records_round_trip_with_each_codec_the_gateway_may_produce(
    kafka: KafkaUnderTest, codec: str | None
) -> None:
    """zstd is the default (its library, cramjam, comes with the package); gzip and none stay
    available for brokers or consumers older than Kafka 2.1."""
    settings = kafka.settings() if codec == "default" else kafka.settings(compression_type=codec)
    if codec == "default":
        assert settings.compression_type == "zstd"
    assert producer_kwargs(settings)["compression_type"] == settings.compression_type
    topic = unique(f"codec-{codec}")
    await ensure_topics(settings, [topic], partitions=1)
    values = [orjson.dumps({"n": i, "text": "the same words again " * 8}) for i in range(200)]
    producer = create_producer(settings)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, v, key=b"k") for v in values])
    finally:
        await producer.stop()
    consumer = create_consumer(settings, topic)
    await consumer.start()
    try:
        got: list[bytes] = []
        async with asyncio.timeout(30):
            while len(got) < len(values):
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    got += [r.value for r in records if r.value is not None]
    finally:
        await consumer.stop()
    assert got == values
