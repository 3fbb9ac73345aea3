"""aiokafka client construction from :class:`~gateway.config.KafkaSettings`.

One place turns the typed settings (TLS files, SASL password file, idempotence) into the
keyword arguments aiokafka wants, so egress, ingress, the CLI and the tests all connect the
same way.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

from gateway.config import KafkaSettings


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
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed" if settings.enable_idempotence else "read_uncommitted",
    )
    kwargs.update(overrides)
    return kwargs


def create_producer(settings: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(**producer_kwargs(settings, **overrides))


def create_consumer(settings: KafkaSettings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **consumer_kwargs(settings, **overrides))
