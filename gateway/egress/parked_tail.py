"""Follow the parked-keys state topic (``kafka.parked_keys_topic``): the thin shell of
:mod:`gateway.egress.parking`.

One consumer without a group reads every partition from the beginning: first to the end offsets
read at start (``loaded`` is set then: egress takes no records before), then on, so releases by
``dcp-gateway dlq release`` and parks by other replicas are seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from gateway.config import KafkaSettings
from gateway.egress.parking import ParkedKeys
from gateway.kafka.clients import common_kwargs

_log = structlog.get_logger(__name__)

_RETRY_SECONDS = 1.0


class ParkedTail:
    """Applies the state topic to ``parked`` and calls ``changed(client)`` on every change."""

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        parked: ParkedKeys,
        changed: Callable[[str], None],
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._parked = parked
        self._changed = changed
        self.loaded = asyncio.Event()

    async def run(self) -> None:
        """Until cancelled; a Kafka error starts the read over (applying twice is harmless)."""
        while True:
            try:
                await self._follow()
            except KafkaError as exc:
                _log.warning("egress_parked_keys_read_failed", topic=self._topic, error=str(exc))
                await asyncio.sleep(_RETRY_SECONDS)

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(
            **common_kwargs(self._settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            partitions = await self._partitions()
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            end = await consumer.end_offsets(partitions)
            pending = {tp for tp in partitions if end[tp] > 0}
            while True:
                data = await consumer.getmany(timeout_ms=200)
                for records in data.values():
                    for r in records:
                        applied = self._parked.apply(r.key, r.value, r.headers)
                        if applied is not None and applied[1]:
                            self._changed(applied[0])
                if not self.loaded.is_set():
                    for tp in list(pending):
                        if await consumer.position(tp) >= end[tp]:
                            pending.discard(tp)
                    if not pending:
                        _log.info("egress_parked_keys_loaded", keys=len(self._parked))
                        self.loaded.set()
        finally:
            await consumer.stop()

    async def _partitions(self) -> list[TopicPartition]:
        """The topic's partitions (from the admin API: a group-less consumer's metadata lists
        only the topics it has been assigned)."""
        while True:
            admin = AIOKafkaAdminClient(**common_kwargs(self._settings))
            await admin.start()
            try:
                (described,) = await admin.describe_topics([self._topic])
            finally:
                await admin.close()
            numbers = sorted(int(p["partition"]) for p in described.get("partitions") or ())
            if not described.get("error_code") and numbers:
                return [TopicPartition(self._topic, n) for n in numbers]
            _log.warning("egress_parked_keys_topic_missing", topic=self._topic)
            await asyncio.sleep(_RETRY_SECONDS)
