"""Readiness follows the Kafka cluster.

Neither an idle consumer nor a producer with nothing to send notices that the brokers have
gone: egress just fetches nothing and the webhook learns it only from its next push. So a
small loop asks the cluster for its brokers every few seconds and reports a ``kafka``
component to :class:`~gateway.ops.health.Health`: ``/readyz`` fails while no broker answers
and passes again once one does, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from gateway.config import KafkaSettings
from gateway.kafka.clients import common_kwargs
from gateway.ops.health import Health

_log = structlog.get_logger(__name__)

HEALTH_NAME = "kafka"
_INTERVAL_SECONDS = 3.0
_PROBE_SECONDS = 5.0  # one probe's bound: a broker that does not answer counts as gone


async def watch_kafka(settings: KafkaSettings, health: Health, stop: asyncio.Event) -> None:
    """Probe the cluster until ``stop`` is set; log each change of state once."""
    admin = AIOKafkaAdminClient(**common_kwargs(settings), request_timeout_ms=4000)
    started = False
    reachable: bool | None = None
    try:
        while not stop.is_set():
            try:
                async with asyncio.timeout(_PROBE_SECONDS):
                    if not started:
                        await admin.start()
                        started = True
                    await _ask_for_brokers(admin)
            except (KafkaError, OSError, TimeoutError) as exc:
                detail = f"no broker answers: {str(exc) or type(exc).__name__}"
                health.set(HEALTH_NAME, False, detail)
                if reachable is not False:
                    _log.warning("kafka_unreachable", detail=detail)
                reachable = False
            else:
                health.set(HEALTH_NAME, True, "reachable")
                if reachable is False:
                    _log.info("kafka_reachable_again")
                reachable = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=_INTERVAL_SECONDS)
    finally:
        if started:
            with contextlib.suppress(KafkaError, OSError):
                await admin.close()


async def _ask_for_brokers(admin: AIOKafkaAdminClient) -> None:
    """One Metadata request naming no topic: the brokers answer with themselves only.
    (``describe_cluster()`` asks for every topic's metadata and builds Python objects of it
    all on the event loop: tens of milliseconds every few seconds with a DCP's few hundred
    topics, more on a shared cluster.)"""
    await admin.describe_topics([])
