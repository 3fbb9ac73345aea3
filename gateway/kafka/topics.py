"""The topics the configuration names, who uses them, and topic creation for development and
tests (production topics are the platform team's)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Literal, NamedTuple

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from gateway.config import GatewayConfig, KafkaSettings
from gateway.kafka.clients import common_kwargs


class TopicUse(NamedTuple):
    """One topic the configuration names: the field that names it, and how the gateway uses it."""

    field: str  # e.g. "clients[0].topics.results"
    topic: str
    service: Literal["egress", "ingress"]
    writes: bool  # the service produces to it (False: it consumes from it)


async def ensure_topics(
    settings: KafkaSettings,
    names: Iterable[str],
    *,
    partitions: int = 3,
    replication_factor: int | None = None,
    configs: Mapping[str, str] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; return the ones created.

    Replication defaults to three copies, or one per broker on a smaller cluster: a single
    development broker still works, and a test cluster survives losing a broker. ``configs``
    (e.g. ``cleanup.policy``) apply to every topic created.
    """
    async with _admin(settings) as admin:
        missing = await _missing(admin, names)
        if missing:
            if replication_factor is None:
                brokers = (await admin.describe_cluster())["brokers"]
                replication_factor = max(1, min(3, len(brokers)))
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(n, partitions, replication_factor, topic_configs=configs)
                        for n in missing
                    ]
                )
        return missing


async def missing_topics(settings: KafkaSettings, names: Iterable[str]) -> list[str]:
    """The ``names`` the broker does not list (absent, or not visible to this principal)."""
    async with _admin(settings) as admin:
        return await _missing(admin, names)


async def topic_partitions(settings: KafkaSettings, names: Iterable[str]) -> list[TopicPartition]:
    """Every partition of the ``names`` that exist (the others are left out). Only existing
    topics are described: naming a missing one could make a broker create it."""
    async with _admin(settings) as admin:
        existing = set(await admin.list_topics())
        wanted = sorted({n for n in names if n in existing})
        if not wanted:
            return []
        described = await admin.describe_topics(wanted)
    return [
        TopicPartition(t["topic"], p["partition"])
        for t in described
        if t.get("topic") in existing and not t.get("error_code")
        for p in sorted(t.get("partitions", ()), key=lambda p: int(p["partition"]))
    ]


def gateway_topics(config: GatewayConfig) -> list[str]:
    """Every topic the configuration names."""
    return [use.topic for use in gateway_topic_uses(config)]


def gateway_topic_uses(config: GatewayConfig) -> list[TopicUse]:
    """Every topic the configuration names, with its field and its use: egress reads the
    outbound and status topics and writes results and dead letters; ingress writes the inbound,
    status and quarantine topics; both write the ledger's (``audit.topic``) when it is on."""
    k = config.kafka
    uses = [
        TopicUse(f"kafka.outbound_topics[{i}]", t, "egress", False)
        for i, t in enumerate(k.outbound_topics)
    ]
    uses.append(TopicUse("kafka.quarantine_topic", k.quarantine_topic, "ingress", True))
    uses.append(TopicUse("kafka.dead_letter_topic", k.dead_letter_topic, "egress", True))
    if k.status_outbound_topic:
        uses.append(
            TopicUse("kafka.status_outbound_topic", k.status_outbound_topic, "egress", False)
        )
    for i, client in enumerate(config.clients):
        t, field = client.topics, f"clients[{i}].topics"
        if t.inbound:  # required only while ingress is on
            uses.append(TopicUse(f"{field}.inbound", t.inbound, "ingress", True))
        uses.append(TopicUse(f"{field}.results", t.results, "egress", True))
        uses.append(TopicUse(f"{field}.dead_letter", t.dead_letter, "egress", True))
        if t.retry:  # always set once validated (a default per client)
            uses.append(TopicUse(f"{field}.retry", t.retry, "egress", True))
        if t.status:
            uses.append(TopicUse(f"{field}.status", t.status, "ingress", True))
        if client.park_keys and t.parked:
            uses.append(TopicUse(f"{field}.parked", t.parked, "egress", True))
    if config.audit.enabled:  # both services write it; egress when it runs, for the check
        service: Literal["egress", "ingress"] = "egress" if config.egress.enabled else "ingress"
        uses.append(TopicUse("audit.topic", config.audit.topic, service, True))
    return uses


def compacted_topic_uses(config: GatewayConfig) -> list[TopicUse]:
    """The compacted state topics egress needs (created with ``cleanup.policy=compact``):
    the parked keys, when a client parks keys (``gateway.egress.parking``)."""
    k = config.kafka
    if k.parked_keys_topic and any(c.park_keys for c in config.clients):
        return [TopicUse("kafka.parked_keys_topic", k.parked_keys_topic, "egress", True)]
    return []


@contextlib.asynccontextmanager
async def _admin(settings: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(**common_kwargs(settings))
    try:
        await admin.start()
        yield admin
    finally:
        await admin.close()


async def _missing(admin: AIOKafkaAdminClient, names: Iterable[str]) -> list[str]:
    existing = set(await admin.list_topics())
    return sorted({n for n in names if n not in existing})
