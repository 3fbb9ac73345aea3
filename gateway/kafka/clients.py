"""aiokafka client construction from :class:`~gateway.config.KafkaSettings`.

One place turns the typed settings (TLS files, SASL password file, idempotence) into the
keyword arguments aiokafka wants, so egress, ingress, the CLI and the tests all connect the
same way.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.group import LeaveGroupRequest

from gateway.config import KafkaSettings
from gateway.kafka.producer import SequenceKeepingProducer

_log = structlog.get_logger(__name__)


def common_kwargs(settings: KafkaSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = create_ssl_context(
            cafile=settings.ssl_ca_file,
            certfile=settings.ssl_cert_file,
            keyfile=settings.ssl_key_file,
        )
    if settings.security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = settings.sasl_mechanism
        kwargs["sasl_plain_username"] = settings.sasl_username
        if settings.sasl_password_file is not None:
            kwargs["sasl_plain_password"] = settings.sasl_password_file.read_text().strip()
    return kwargs


def producer_kwargs(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """Durable defaults: acks from all in-sync replicas, idempotence when the broker has it."""
    kwargs = common_kwargs(settings)
    kwargs.update(
        acks="all",
        enable_idempotence=settings.enable_idempotence,
        compression_type=settings.compression_type,
        linger_ms=5,
        max_batch_size=256 * 1024,
        max_request_size=16 * 1024 * 1024,
    )
    kwargs.update(overrides)
    return kwargs


def consumer_kwargs(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """Manual commits only: offsets move when outcomes are final, never on a timer."""
    kwargs = common_kwargs(settings)
    kwargs.update(
        group_id=settings.consumer_group,
        group_instance_id=settings.group_instance_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed" if settings.enable_idempotence else "read_uncommitted",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        rebalance_timeout_ms=settings.rebalance_timeout_ms,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        check_crcs=settings.check_crcs,
    )
    kwargs.update(overrides)
    return kwargs


class TansuGroupConsumer(AIOKafkaConsumer):  # type: ignore[misc]
    """An :class:`AIOKafkaConsumer` whose ``stop()`` leaves the group from generation 0 too,
    for the embedded Tansu broker only (``kafka.tansu_compat``).

    aiokafka sends LeaveGroup on stop only when the generation is above 0, as Apache Kafka
    numbers generations from 1. Tansu numbers the first generation 0, so there the first member
    of a group never left: it stayed a member until its session expired, and whoever joined next
    (a restarted gateway) waited about two session timeouts for its partitions. It wraps a
    private aiokafka method, so it stays off the production path.
    """

    async def stop(self) -> None:
        coordinator = getattr(self, "_coordinator", None)
        if isinstance(coordinator, GroupCoordinator) and not self._closed:
            _leave_from_generation_zero(coordinator)
        await super().stop()


def _leave_from_generation_zero(coordinator: Any) -> None:
    """Wrap the coordinator's leave step (run by ``close()`` once heartbeats have stopped)."""
    original = coordinator._maybe_leave_group

    async def maybe_leave_group() -> None:
        if coordinator.generation == 0 and coordinator._group_instance_id is None:
            request = LeaveGroupRequest(coordinator.group_id, coordinator.member_id)
            try:
                await coordinator._send_req(request)
            except KafkaError as exc:
                _log.warning("kafka_leave_group_failed", generation=0, error=str(exc))
            else:
                _log.info("kafka_left_group", generation=0, group=coordinator.group_id)
        await original()

    coordinator._maybe_leave_group = maybe_leave_group


def create_producer(settings: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """A producer whose batches the broker refuses leave no gap in its sequence numbers
    (:mod:`gateway.kafka.producer`)."""
    return SequenceKeepingProducer(**producer_kwargs(settings, **overrides))


def create_consumer(settings: KafkaSettings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    kind = TansuGroupConsumer if settings.tansu_compat else AIOKafkaConsumer
    return kind(*topics, **consumer_kwargs(settings, **overrides))
