"""One egress phase: produce, then account for every message from the gateway's result and
dead-letter records, with latencies from Kafka timestamps and the DIP's acknowledgement."""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from gateway.config import GatewayConfig, KafkaSettings
from gateway.ingress.pipeline import H_RECIPIENT
from gateway.kafka.clients import common_kwargs, create_consumer, create_producer
from gateway.loadtest.stats import Latency

_PENDING, _DELIVERED, _DEAD = 0, 1, 2
_WARM = 4  # or-ed into a warm-up record's state: settled and counted, never timed


@dataclass
class Tally:
    """Records produced, and how many of them became final each way."""

    produced: int = 0
    delivered: int = 0
    dead_lettered: int = 0

    @property
    def missing(self) -> int:
        return self.produced - self.delivered - self.dead_lettered

    def as_json(self) -> dict[str, int]:
        return {
            "produced": self.produced,
            "delivered": self.delivered,
            "dead_lettered": self.dead_lettered,
            "missing": self.missing,
        }


class Ledger:
    """Per produced record (topic partition, offset): its Kafka timestamp and what became of
    it. Arrays indexed by offset (the topics are new, so offsets start at 0): a million
    entries in a few MB, where a dict would take a hundred. Warm-up records are marked as
    such, so a late outcome of one is never taken for a measured message's."""

    def __init__(self) -> None:
        self._ts: dict[int, array[float]] = {}
        self._state: dict[int, array[int]] = {}
        self.measured = Tally()
        self.warm_up = Tally()
        self.duplicates = 0  # outcomes for a record already final (at-least-once repeats)
        self.unknown = 0  # outcomes for no record of this phase

    def sent(self, partition: int, offset: int, timestamp_ms: float, warm: bool = False) -> None:
        ts = self._ts.get(partition)
        if ts is None:
            ts = self._ts[partition] = array("d")
            self._state[partition] = array("b")
        if offset >= len(ts):
            grow = offset + 1 - len(ts)
            ts.extend([math.nan] * grow)
            self._state[partition].extend(bytes(grow))
        ts[offset] = timestamp_ms
        self._state[partition][offset] = _WARM if warm else _PENDING
        (self.warm_up if warm else self.measured).produced += 1

    def settle(self, partition: int, offset: int, dead: bool) -> float | None:
        """Mark the record final; its produce timestamp (ms) when it is a measured record,
        None when it is a warm-up record, not ours or already final."""
        ts = self._ts.get(partition)
        if ts is None or offset >= len(ts) or math.isnan(ts[offset]):
            self.unknown += 1
            return None
        state = self._state[partition]
        warm = state[offset] & _WARM
        if state[offset] & ~_WARM != _PENDING:
            self.duplicates += 1
            return None
        state[offset] = warm | (_DEAD if dead else _DELIVERED)
        tally = self.warm_up if warm else self.measured
        if dead:
            tally.dead_lettered += 1
        else:
            tally.delivered += 1
        return None if warm else ts[offset]

    @property
    def produced(self) -> int:
        return self.measured.produced + self.warm_up.produced

    @property
    def delivered(self) -> int:
        return self.measured.delivered + self.warm_up.delivered

    @property
    def missing(self) -> int:
        return self.measured.missing + self.warm_up.missing


@dataclass
class Outcomes:
    """What came back, as the consumer read it. Only measured records are timed and counted
    in ``statuses`` and ``reasons``."""

    ledger: Ledger = field(default_factory=Ledger)
    ack_latency: Latency = field(default_factory=Latency)  # Kafka -> DIP acknowledgement
    result_latency: Latency = field(default_factory=Latency)  # Kafka -> result in Kafka
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    last_at: float = 0.0  # time.time() of the latest outcome record's Kafka timestamp
    #: The topic the phase produced to: an outcome naming another is not one of its records
    #: (the ledger knows partitions and offsets only).
    topic: str | None = None


def _settle_result(out: Outcomes, value: bytes, result_ts_ms: int) -> bool:
    """Settle a result record; whether it was a measured record's first outcome."""
    doc = orjson.loads(value)
    source = doc["source"]
    if out.topic is not None and source["topic"] != out.topic:
        out.ledger.unknown += 1
        return False
    sent_ms = out.ledger.settle(source["partition"], source["offset"], dead=False)
    if sent_ms is None:
        return False
    out.statuses[str(doc.get("dipStatus"))] += 1
    acked = doc.get("acknowledgedAt")
    if acked:
        out.ack_latency.record_ms(datetime.fromisoformat(acked).timestamp() * 1000 - sent_ms)
    out.result_latency.record_ms(result_ts_ms - sent_ms)
    return True


def _settle_dead(out: Outcomes, headers: Sequence[tuple[str, bytes]]) -> bool:
    """Settle a dead-letter record; whether it was a measured record's first outcome."""
    h = dict(headers)
    try:
        partition = int(h["dcpgw-source-partition"])
        offset = int(h["dcpgw-source-offset"])
    except (KeyError, ValueError):
        out.ledger.unknown += 1
        return False
    if out.topic is not None and h.get("dcpgw-source-topic") != out.topic.encode():
        out.ledger.unknown += 1
        return False
    if out.ledger.settle(partition, offset, dead=True) is None:
        return False
    out.statuses[h.get("dcpgw-dip-status", b"none").decode()] += 1
    out.reasons[h.get("dcpgw-reason", b"").decode("utf-8", "replace")[:120]] += 1
    return True


async def partitions(
    settings: KafkaSettings, topics: Sequence[str], within: float = 30.0
) -> dict[str, list[int]]:
    """Each topic's partitions, once the cluster lists them all (topics just created may take
    a moment to appear in every broker's metadata)."""
    admin = AIOKafkaAdminClient(**common_kwargs(settings))
    await admin.start()
    try:
        deadline = time.monotonic() + within
        while True:
            found = {
                t["topic"]: sorted(p["partition"] for p in t["partitions"])
                for t in await admin.describe_topics(list(topics))
                if not t["error_code"]
            }
            if all(found.get(topic) for topic in topics):
                return {topic: found[topic] for topic in topics}
            if time.monotonic() > deadline:
                absent = [topic for topic in topics if not found.get(topic)]
                raise RuntimeError(f"the cluster lists no partitions for {absent}")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


class TopicReader:
    """Every partition of some topics, read from the start by hand (no group). A phase reads
    them when the gateway is done, so reading and parsing take no CPU from it while it is
    measured (the records' Kafka timestamps say when they were written)."""

    def __init__(self, config: GatewayConfig, topics: Iterable[str]) -> None:
        self._settings = config.kafka
        self._consumer: AIOKafkaConsumer | None = None
        self._topics = sorted(set(topics))
        self._parts: list[TopicPartition] = []

    async def start(self) -> None:
        """Assign every partition of the topics (asked of the cluster: a consumer's own
        metadata lists only the topics it already uses)."""
        self._parts = [
            TopicPartition(topic, p)
            for topic, parts in (await partitions(self._settings, self._topics)).items()
            for p in parts
        ]
        consumer = create_consumer(self._settings, group_id=None, enable_auto_commit=False)
        await consumer.start()
        self._consumer = consumer
        consumer.assign(self._parts)
        await consumer.seek_to_beginning(*self._parts)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def __aenter__(self) -> TopicReader:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def read_to_end(self, handle: Callable[[str, Any], None]) -> None:
        """``handle(topic, record)`` for every record up to the current end offsets."""
        consumer = self._consumer
        assert consumer is not None, "start() first"
        ends = await consumer.end_offsets(self._parts)
        left = {tp for tp, end in ends.items() if await consumer.position(tp) < end}
        while left:
            batch = await consumer.getmany(*left, timeout_ms=500, max_records=50_000)
            for tp, records in batch.items():
                for record in records:
                    handle(tp.topic, record)
            left = {tp for tp in left if await consumer.position(tp) < ends[tp]}


class RecordCounter(TopicReader):
    """Distinct messages in some inbound topics, told apart by :func:`message_identity`: a
    record seen again is a duplicate, so duplicates cannot make up for lost messages."""

    def __init__(self, config: GatewayConfig, topics: Iterable[str]) -> None:
        super().__init__(config, topics)
        self._seen: set[bytes] = set()
        self.duplicates = 0
        self.unidentified = 0  # records with no identity: not counted as messages

    @property
    def count(self) -> int:
        return len(self._seen)

    def _add(self, topic: str, record: Any) -> None:
        identity = message_identity(record.value, record.headers)
        if identity is None:
            self.unidentified += 1
        elif identity in self._seen:
            self.duplicates += 1
        else:
            self._seen.add(identity)

    async def count_to_end(self) -> int:
        """Distinct messages read so far (the records up to the current end offsets)."""
        await self.read_to_end(self._add)
        return self.count


def message_identity(value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> bytes | None:
    """What the gateway de-duplicates a publication on: its recipient (the record's header)
    and the DIP's transaction ID (``CommonBlock.D0`` of the value, as the consumer reads it).
    One DIP message published to two recipients is two messages. None for a record without."""
    recipient = next((v for k, v in headers if k == H_RECIPIENT), None)
    try:
        transaction_id = orjson.loads(value or b"")["CommonBlock"]["D0"]["transactionID"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if not recipient or not isinstance(transaction_id, str) or not transaction_id:
        return None
    return recipient + b"\x00" + transaction_id.encode()


class OutcomeReader(TopicReader):
    """The results and dead-letter topics of a phase, settled into ``out``."""

    def __init__(self, config: GatewayConfig, out: Outcomes) -> None:
        self._results = {c.topics.results for c in config.clients}
        dead = {c.topics.dead_letter for c in config.clients} | {config.kafka.dead_letter_topic}
        super().__init__(config, self._results | dead)
        self.out = out

    def _settle(self, topic: str, record: Any) -> None:
        out = self.out
        if topic in self._results:
            measured = _settle_result(out, record.value, record.timestamp)
        else:
            measured = _settle_dead(out, record.headers)
        if measured:
            out.last_at = max(out.last_at, record.timestamp / 1000)

    async def settle(self) -> None:
        await self.read_to_end(self._settle)


async def produce(
    config: GatewayConfig,
    chunks: Iterable[list[tuple[bytes, bytes]]],
    ledger: Ledger,
    rate: float | None,
    on_sent: Callable[[int], None] = lambda n: None,
    *,
    warm: bool = False,
) -> tuple[float, float]:
    """Send every (key, value); open loop at ``rate`` messages/s (the schedule does not wait
    for the gateway), or as fast as the producer goes. Each record's Kafka timestamp is set
    here and kept in ``ledger`` with its partition and offset from the acknowledgement.
    Returns (first send, last acknowledgement) as ``time.time()``."""
    producer = create_producer(config.kafka, linger_ms=5, max_batch_size=256 * 1024)
    topic = config.kafka.outbound_topics[0]
    await producer.start()
    started = time.time()
    try:
        clock0 = time.monotonic()
        offered = 0
        pending: list[asyncio.Future[Any]] = []
        # Open loop: a slice of the schedule every ~5 ms (one message at a time below 200/s),
        # each sent when its slot begins.
        step = max(1, math.ceil(rate * 0.005)) if rate else 0
        for chunk in chunks:
            for i in range(0, len(chunk), step or len(chunk)):
                part = chunk[i : i + step] if step else chunk
                if rate:
                    delay = clock0 + offered / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                now_ms = time.time() * 1000
                for key, value in part:
                    future = await producer.send(topic, value, key=key, timestamp_ms=int(now_ms))
                    pending.append(future)
                offered += len(part)
                if len(pending) >= 2000:
                    await _acked(pending, ledger, on_sent, warm)
        await _acked(pending, ledger, on_sent, warm)
    finally:
        await producer.stop()
    return started, time.time()


async def _acked(
    pending: list[asyncio.Future[Any]],
    ledger: Ledger,
    on_sent: Callable[[int], None],
    warm: bool,
) -> None:
    for meta in await asyncio.gather(*pending):
        stamp = meta.timestamp if meta.timestamp and meta.timestamp > 0 else time.time() * 1000
        ledger.sent(meta.partition, meta.offset, stamp, warm)
    on_sent(len(pending))
    pending.clear()


async def wait_settled(
    reader: OutcomeReader,
    final: Callable[[], Awaitable[float]],
    idle_timeout: float,
    producing: asyncio.Task[Any] | None = None,
    on_progress: Callable[[int], None] = lambda n: None,
    at_final: Callable[[], None] = lambda: None,
) -> None:
    """Until every produced record is final, or nothing has become final for
    ``idle_timeout`` seconds after production ended (the rest are then missing).
    ``at_final`` is called once, as soon as the gateway counts every record final (or gives
    up waiting), before the records are read: the end of the measured window.

    While the gateway works, progress is its own count of final messages (``final``, from its
    metrics: cheaper for it than a consumer in this process, and Tansu's end offsets were seen
    to add up to fewer than the records written); the records are read from Kafka, and only
    they count, once that says all are done."""
    ledger = reader.out.ledger
    last, last_change = -1, time.monotonic()
    ended = False
    while True:
        if producing is not None and producing.done():
            producing.result()  # a failed producer fails the phase
        done = producing is None or producing.done()
        written = int(await final())
        on_progress(written)
        idle = written == last and time.monotonic() - last_change > idle_timeout
        if done and (written >= ledger.produced or idle):
            if not ended:
                ended = True
                at_final()
            await reader.settle()
            if ledger.missing <= 0 or idle:
                return
        if written != last:
            last, last_change = written, time.monotonic()
        await asyncio.sleep(0.2)
