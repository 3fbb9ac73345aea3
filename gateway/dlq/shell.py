"""The Kafka side of the re-drive: read a topic to its end as of the call, produce and wait.

Thin on purpose: what to do with each dead letter is decided in ``gateway.dlq.plan``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from gateway.config import KafkaSettings
from gateway.dlq.letters import Coordinates, DeadLetter
from gateway.dlq.plan import Action, Decision, LogEntry, RedriveLog
from gateway.egress.parking import Park, ParkedKeys, release_record, state_record
from gateway.kafka.clients import common_kwargs, create_producer
from gateway.kafka.topics import ensure_topics, missing_topics

_IDLE_SECONDS = 30.0
"""A read that makes no progress this long stops with an error instead of hanging."""


class RedriveError(Exception):
    """A user-facing failure of the dlq command (the CLI prints it as one line)."""


async def read_letters(settings: KafkaSettings, topic: str) -> list[DeadLetter]:
    """Every record of ``topic`` up to its end at the time of the call, partition by
    partition in offset order."""
    letters: list[DeadLetter] = []
    partitions = await _partitions(settings, topic)
    if partitions is None:
        raise RedriveError(f"topic {topic} does not exist (or this principal cannot see it)")
    consumer = _consumer(settings)
    await consumer.start()
    try:
        async for tp, records in _to_end(consumer, partitions):
            for r in records:
                letters.append(
                    DeadLetter(
                        Coordinates(tp.topic, tp.partition, r.offset),
                        r.timestamp if r.timestamp is not None else -1,
                        r.key,
                        r.value,
                        tuple(r.headers or ()),
                    )
                )
    finally:
        await consumer.stop()
    letters.sort(key=lambda letter: (letter.at.partition, letter.at.offset))
    return letters


async def read_log(settings: KafkaSettings) -> RedriveLog | None:
    """The re-drive log to its end, or None if its topic does not exist yet."""
    log = RedriveLog()
    found = await _read_state(
        settings, settings.redrive_log_topic, lambda key, value, _: log.add(key, value)
    )
    return log if found else None


async def read_parks(settings: KafkaSettings, topic: str) -> ParkedKeys:
    """The parked keys (``kafka.parked_keys_topic``) to its end; empty if it does not exist."""
    parked = ParkedKeys()
    await _read_state(settings, topic, parked.apply)
    return parked


async def _read_state(
    settings: KafkaSettings,
    topic: str,
    apply: Callable[[bytes | None, bytes | None, Sequence[tuple[str, bytes]]], object],
) -> bool:
    """Feed a state topic's records, keyed, to ``apply`` to its end; False: no such topic.
    Order matters only per key, and a key always lands on the same partition."""
    partitions = await _partitions(settings, topic)
    if partitions is None:
        return False
    consumer = _consumer(settings)
    await consumer.start()
    try:
        async for _, records in _to_end(consumer, partitions):
            for r in records:
                apply(r.key, r.value, r.headers)
    finally:
        await consumer.stop()
    return True


async def unpark(
    settings: KafkaSettings, topic: str, client: str, key: bytes, park_id: str
) -> Park | None:
    """Release park ``park_id`` of ``client``'s ``key`` (a tombstone naming it) and wait for
    Kafka to have it. If the key was parked again meanwhile (the re-driven head failed again)
    that park stays, and is returned: its record is written once more, after the tombstone,
    so that compaction, which keeps a key's last record, keeps the park and not the
    tombstone."""
    release = release_record(topic, client, key, park_id)
    producer = create_producer(settings)
    await producer.start()
    try:
        try:
            await (
                await producer.send(release.topic, None, key=release.key, headers=release.headers)
            )
        except KafkaError as exc:
            raise RedriveError(
                f"re-drove the parked records but could not release the key on {topic} "
                f"({exc!r}): run the release again (it skips what it re-drove)"
            ) from exc
        try:
            again = (await read_parks(settings, topic)).get(client, key)
            if again is not None:
                record = state_record(topic, client, key, again)
                await (await producer.send(record.topic, record.value, key=record.key))
        except (KafkaError, RedriveError) as exc:
            raise RedriveError(
                f"released park {park_id}, but could not check whether the key was parked "
                f"again meanwhile ({exc}): `dlq release` without --execute shows whether it is"
            ) from exc
        return again
    finally:
        await producer.stop()


async def ensure_log_topic(settings: KafkaSettings) -> None:
    """The log must exist before anything is re-driven, or the run could not be recorded."""
    topic = settings.redrive_log_topic
    if not await missing_topics(settings, [topic]):
        return
    if not settings.create_topics:
        raise RedriveError(
            f"kafka.redrive_log_topic {topic} does not exist: create it (cleanup.policy=compact) "
            "or set kafka.create_topics: true"
        )
    await ensure_topics(settings, [topic], configs={"cleanup.policy": "compact"})


async def execute(
    settings: KafkaSettings, decisions: Sequence[Decision], run: str, by: str, now: datetime
) -> list[LogEntry]:
    """Produce every REDRIVE decision's record, wait for Kafka to acknowledge all of them, then
    log each one and wait again. Records first: a crash in between re-sends them on the next
    run, which the DIP refuses as duplicates of delivered references (a result, flagged
    ``dcpgw-delivered-earlier``), where logging first could lose them."""
    chosen = [d for d in decisions if d.action is Action.REDRIVE and d.record is not None]
    if not chosen:
        return []
    producer = create_producer(settings)  # acks=all, idempotent (kafka.enable_idempotence)
    await producer.start()
    try:
        try:
            futures = []
            for decision in chosen:
                record = decision.record
                assert record is not None
                futures.append(
                    await producer.send(
                        record.topic, record.value, key=record.key, headers=record.headers
                    )
                )
            landed = await asyncio.gather(*futures)
        except KafkaError as exc:
            raise RedriveError(
                f"producing the re-driven records failed ({exc!r}); some may have been sent, none "
                "was logged: a re-run sends them all again, and the DIP refuses the ones it "
                "already has as duplicates"
            ) from exc
        entries = [
            LogEntry(
                dead_letter=decision.letter.at,
                to=Coordinates(meta.topic, meta.partition, meta.offset),
                redrive_count=decision.count,
                reason_class=decision.letter.reason_class_label,
                sender_unique_reference=decision.letter.sender_unique_reference,
                forced=decision.forced,
                run=run,
                at=now,
                by=by,
            )
            for decision, meta in zip(chosen, landed, strict=True)
        ]
        try:
            logged = [
                await producer.send(settings.redrive_log_topic, e.value(), key=e.key())
                for e in entries
            ]
            await asyncio.gather(*logged)
        except KafkaError as exc:
            raise RedriveError(
                f"re-drove {len(entries)} records but could not log them on "
                f"{settings.redrive_log_topic} ({exc!r}): a second run would re-send them"
            ) from exc
    finally:
        await producer.stop()
    return entries


def _consumer(settings: KafkaSettings) -> AIOKafkaConsumer:
    """No group: nothing is committed, the read is the command's own."""
    return AIOKafkaConsumer(
        **common_kwargs(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def _partitions(settings: KafkaSettings, topic: str) -> list[TopicPartition] | None:
    """The topic's partitions, or None if the broker does not list it (listed first: a
    metadata request for a missing topic may create it where auto-creation is on)."""
    admin = AIOKafkaAdminClient(**common_kwargs(settings))
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return None
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"]:
        raise RedriveError(f"cannot describe topic {topic}: Kafka error {described['error_code']}")
    numbers = sorted(int(p["partition"]) for p in described["partitions"])
    return [TopicPartition(topic, n) for n in numbers]


async def _to_end(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> AsyncIterator[tuple[TopicPartition, list[ConsumerRecord[bytes, bytes]]]]:
    """Yield ``(partition, records)`` from the beginning to the end offsets read first: records
    added during the read are left for the next call."""
    end = await consumer.end_offsets(partitions)
    start = await consumer.beginning_offsets(partitions)
    pending = {tp for tp in partitions if end[tp] > start[tp]}
    if not pending:
        return
    consumer.assign(list(pending))
    await consumer.seek_to_beginning(*pending)
    loop = asyncio.get_running_loop()
    last_progress = loop.time()
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=500)
        for tp, records in batch.items():
            wanted = [r for r in records if r.offset < end[tp]]
            if wanted:
                last_progress = loop.time()
                yield tp, wanted
        for tp in list(pending):
            if await consumer.position(tp) >= end[tp]:
                pending.discard(tp)
                last_progress = loop.time()
        if pending and loop.time() - last_progress > _IDLE_SECONDS:
            names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(pending))
            raise RedriveError(f"no progress reading {names} for {_IDLE_SECONDS:.0f} s")
