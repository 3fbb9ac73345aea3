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


def gateway_topics(config: GatewayConfig) -> list[str]:
    """Every topic the configuration names."""
    k = config.kafka
    names = [*k.outbound_topics, k.quarantine_topic, k.dead_letter_topic]
    if k.status_outbound_topic:
        names.append(k.status_outbound_topic)
    for client in config.clients:
        t = client.topics
        names += [t.inbound, t.results, t.dead_letter]
        if t.status:
            names.append(t.status)
    return names
