"""Topic creation for development and tests (production topics are the platform team's)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from gateway.config import GatewayConfig, KafkaSettings
from gateway.kafka.clients import common_kwargs


async def ensure_topics(
    settings: KafkaSettings,
    names: Iterable[str],
    *,
    partitions: int = 3,
    replication_factor: int = 1,
) -> list[str]:
    """Create the topics that do not exist yet; return the ones created."""
    admin = AIOKafkaAdminClient(**common_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = sorted({n for n in names if n not in existing})
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(n, partitions, replication_factor) for n in missing]
                )
        return missing
    finally:
        await admin.close()


async def missing_topics(settings: KafkaSettings, names: Iterable[str]) -> list[str]:
    """The ``names`` the broker does not list (absent, or not visible to this principal)."""
    admin = AIOKafkaAdminClient(**common_kwargs(settings))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    return sorted({n for n in names if n not in existing})


def gateway_topics(config: GatewayConfig) -> list[str]:
    """Every topic the configuration names."""
    return [topic for _, topic in gateway_topic_fields(config)]


def gateway_topic_fields(config: GatewayConfig) -> list[tuple[str, str]]:
    """(configuration field, topic) for every topic the configuration names."""
    k = config.kafka
    out = [(f"kafka.outbound_topics[{i}]", t) for i, t in enumerate(k.outbound_topics)]
    out += [("kafka.quarantine_topic", k.quarantine_topic)]
    out += [("kafka.dead_letter_topic", k.dead_letter_topic)]
    if k.status_outbound_topic:
        out.append(("kafka.status_outbound_topic", k.status_outbound_topic))
    for i, client in enumerate(config.clients):
        t = client.topics
        field = f"clients[{i}].topics"
        out += [(f"{field}.inbound", t.inbound), (f"{field}.results", t.results)]
        out.append((f"{field}.dead_letter", t.dead_letter))
        if t.status:
            out.append((f"{field}.status", t.status))
    return out
