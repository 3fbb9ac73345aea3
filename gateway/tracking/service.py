"""The response tracker: reads every client's results and inbound topics, exports the gauges.

No consumer group, on purpose: a request's result and its response publication are on
different topics, keyed differently, so a group would hand them to different pods and neither
could match them. Every pod that runs tracking reads every partition from
``tracking.horizon_hours`` ago (by timestamp, so a restart rebuilds the state without stored
offsets) and exports the same figures; dashboards and alerts aggregate with ``max``.

Tracking is auxiliary: a Kafka error is logged and the consumer started again after a pause;
it never stops the gateway. What it reads is parsed here, off the delivery paths: a result's
``senderCorrelationID`` and ``interfaceID``, a publication's ``D0.initialCorrelationID`` (else
``S1.senderCorrelationID``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from gateway.config import GatewayConfig
from gateway.kafka.clients import common_kwargs
from gateway.kafka.topics import topic_partitions
from gateway.tracking import metrics
from gateway.tracking.awaiting import Awaiting, Group

_log = structlog.get_logger(__name__)

_RETRY_SECONDS = 10.0
_CHANNEL_HEADER = "dip-channel"


class ResponseTracker:
    """``await run(stop)`` until ``stop`` is set."""

    def __init__(self, config: GatewayConfig) -> None:
        settings = config.tracking
        self._kafka = config.kafka
        self._results = {c.topics.results: c.name for c in config.clients}
        self._inbound = {
            c.topics.inbound: c.name for c in config.clients if c.topics.inbound is not None
        }
        self._horizon_ms = int(settings.horizon_hours * 3_600_000)
        self._interval = settings.export_interval_seconds
        self.state = Awaiting(self._horizon_ms)
        self._exported: set[Group] = set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._consume(stop)
            except (KafkaError, OSError) as exc:
                _log.warning("tracking_consumer_failed", error=f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _RETRY_SECONDS)

    async def _consume(self, stop: asyncio.Event) -> None:
        topics = [*self._results, *self._inbound]
        partitions = await topic_partitions(self._kafka, topics)
        consumer = AIOKafkaConsumer(
            **common_kwargs(self._kafka), enable_auto_commit=False, auto_offset_reset="latest"
        )
        await consumer.start()
        try:
            consumer.assign(partitions)
            await self._seek_to_horizon(consumer, partitions)
            exported = 0.0
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batches.items():
                    self._handle(tp.topic, records)
                now = time.monotonic()
                if now - exported >= self._interval:
                    self.export()
                    exported = now
        finally:
            await consumer.stop()

    async def _seek_to_horizon(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
    ) -> None:
        since = int(time.time() * 1000) - self._horizon_ms
        # the ends first: whatever is appended after them is newer than ``since`` anyway,
        # so a partition with nothing that recent starts there and misses nothing
        ends = await consumer.end_offsets(partitions)
        found = await consumer.offsets_for_times({tp: since for tp in partitions})
        for tp in partitions:
            at = found.get(tp)
            consumer.seek(tp, ends[tp] if at is None else at.offset)

    def _handle(self, topic: str, records: list[ConsumerRecord]) -> None:
        state = self.state
        requester = self._results.get(topic)
        if requester is not None:
            for record in records:
                request = _request(record.value)
                if request is not None:
                    interface, correlation = request
                    if state.request(requester, interface, correlation, record.timestamp):
                        metrics.MATCHED.labels(requester, interface).inc()
            return
        receiver = self._inbound[topic]
        for record in records:
            answered = _response(record)
            if answered is not None:
                group = state.response(receiver, answered)
                if group is not None:
                    metrics.MATCHED.labels(*group).inc()

    def export(self) -> None:
        """Expire what is past the horizon, then set every group's gauges."""
        now_ms = int(time.time() * 1000)
        for group, count in self.state.expire(now_ms).items():
            metrics.EXPIRED.labels(*group).inc(count)
        for group, summary in self.state.groups().items():
            metrics.AWAITING.labels(*group).set(summary.awaiting)
            oldest = 0.0 if summary.oldest_ms is None else max(now_ms - summary.oldest_ms, 0) / 1e3
            metrics.OLDEST.labels(*group).set(oldest)


def _request(value: bytes | None) -> tuple[str, str] | None:
    """(interface, correlation ID) of a result record, None without a correlation ID."""
    try:
        doc = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    correlation, interface = doc.get("senderCorrelationID"), doc.get("interfaceID")
    if isinstance(correlation, str) and correlation and isinstance(interface, str):
        return interface, correlation
    return None


def _response(record: ConsumerRecord) -> str | None:
    """The correlation ID a publication answers (status messages answer none)."""
    headers: Mapping[str, bytes] = dict(record.headers or ())
    if headers.get(_CHANNEL_HEADER, b"publication") != b"publication":
        return None
    try:
        payload = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError:
        return None
    common = payload.get("CommonBlock") if isinstance(payload, dict) else None
    if not isinstance(common, dict):
        return None
    for block, field in (("D0", "initialCorrelationID"), ("S1", "senderCorrelationID")):
        found: Any = common.get(block)
        value = found.get(field) if isinstance(found, dict) else None
        if isinstance(value, str) and value:
            return value
    return None
