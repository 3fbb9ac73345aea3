"""Checks across sections: each is a plain function of the sections it reads and returns
``(field path, message)`` pairs, so :class:`~gateway.config.GatewayConfig` lists every problem
at once."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from gateway.config._clients import ClientConfig
from gateway.config._sections import (
    AuditSettings,
    DipSettings,
    EgressSettings,
    IngressSettings,
    KafkaSettings,
    TrackingSettings,
    TrustSettings,
)
from gateway.dip.vocabulary import Environment
from gateway.dip.webhook_urls import webhook_path

Problems = list[tuple[str, str]]


def check_unique_clients(clients: Sequence[ClientConfig]) -> None:
    """Client names and DIP IDs are unique: raises ``ValueError`` at the first repeat."""
    seen: dict[str, str] = {}
    names: set[str] = set()
    for client in clients:
        if client.name in names:
            raise ValueError(f"client name {client.name!r} is used twice: names must be unique")
        names.add(client.name)
        for dip in client.dip_ids:
            if dip.dip_id in seen:
                raise ValueError(
                    f"DIP ID {dip.dip_id} is configured for both {seen[dip.dip_id]!r} and "
                    f"{client.name!r}: a DIP ID belongs to exactly one client"
                )
            seen[dip.dip_id] = client.name


def trust_problems(ingress: IngressSettings, trust: TrustSettings) -> Problems:
    """Only ingress verifies publications, so only ingress needs the DIP trust anchor."""
    if not ingress.enabled:
        return []
    if trust.ca_bundle is None and not trust.pinned_sha256:
        return [
            (
                "trust",
                "ingress needs the DIP trust anchor: set trust.ca_bundle or "
                "trust.pinned_sha256 (or disable ingress)",
            )
        ]
    if trust.ca_bundle is not None and not trust.signer_names:
        return [
            (
                "trust.signer_names",
                "required with trust.ca_bundle while ingress is enabled: the DIP CA also "
                "issues every MP's signing certificate, so list the CN or DNS name of the "
                "DIP's publication signing certificate (dcp-gateway pki inspect shows it), "
                "or pin that certificate with trust.pinned_sha256 instead of trust.ca_bundle",
            )
        ]
    return []


def service_problems(egress: EgressSettings, ingress: IngressSettings) -> Problems:
    if not egress.enabled and not ingress.enabled:
        return [
            (
                "egress.enabled",
                "egress and ingress are both disabled, so the gateway would do nothing: "
                "enable at least one of egress.enabled and ingress.enabled",
            )
        ]
    return []


def signing_problems(egress: EgressSettings, clients: Sequence[ClientConfig]) -> Problems:
    """Egress signs every submission with its client's certificate; ingress signs nothing."""
    if not egress.enabled:
        return []
    return [
        (
            f"clients[{i}].signing_pfx",
            f"egress signs every submission of client {client.name!r} with its certificate: "
            "set signing_pfx (or signing_key + signing_cert), or disable egress",
        )
        for i, client in enumerate(clients)
        if not client.signs
    ]


def inbound_problems(ingress: IngressSettings, clients: Sequence[ClientConfig]) -> Problems:
    """Ingress routes each client's publications to its inbound topic; egress needs none."""
    if not ingress.enabled:
        return []
    return [
        (
            f"clients[{i}].topics.inbound",
            f"ingress routes the publications for client {client.name!r} to this topic: "
            "set it, or disable ingress",
        )
        for i, client in enumerate(clients)
        if client.topics.inbound is None
    ]


def environment_problems(environment: Environment, dip: DipSettings) -> Problems:
    if environment is Environment.PRD and not dip.base_url.startswith("https://"):
        return [
            (
                "dip.base_url",
                f"environment PRD needs an https:// DIP URL, not {dip.base_url!r}: "
                "use the DIP's https address",
            )
        ]
    return []


def grace_problems(egress: EgressSettings, kafka: KafkaSettings) -> Problems:
    """A rebalance must not outlast egress's drain, or two members may send the same key."""
    grace_ms = egress.shutdown_grace_seconds * 1000
    if egress.enabled and grace_ms >= kafka.rebalance_timeout_ms:
        return [
            (
                "egress.shutdown_grace_seconds",
                f"{egress.shutdown_grace_seconds:g} s is not below "
                f"kafka.rebalance_timeout_ms ({kafka.rebalance_timeout_ms} ms): on a "
                "rebalance egress drains in-flight work for up to this long before it "
                "rejoins, and a member that has not rejoined when the rebalance times out "
                "loses its partitions while its retries may still reach the DIP after the "
                "new owner's later messages for the same key. Lower "
                "egress.shutdown_grace_seconds or raise kafka.rebalance_timeout_ms",
            )
        ]
    return []


def http2_problems(dip: DipSettings, egress: EgressSettings) -> Problems:
    """HTTP/2 is httpx's alone, and httpx needs the ``h2`` package for it."""
    if not dip.http2:
        return []
    if egress.transport != "httpx":
        return [
            (
                "dip.http2",
                f"HTTP/2 needs egress.transport 'httpx' (the {egress.transport!r} "
                "transport speaks HTTP/1.1): set egress.transport to 'httpx' or dip.http2 "
                "to false",
            )
        ]
    if importlib.util.find_spec("h2") is None:
        return [
            (
                "dip.http2",
                "HTTP/2 needs the h2 package, which is not installed: "
                "pip install 'httpx[http2]', or set dip.http2 to false",
            )
        ]
    return []


def webhook_path_problems(ingress: IngressSettings) -> Problems:
    if not ingress.enabled:
        return []
    # Compared as routing does, segment by segment: /dip/status -> /dip/status/
    publication = webhook_path(ingress.publication_path) + "/"
    status = webhook_path(ingress.status_path) + "/"
    if publication.startswith(status) or status.startswith(publication):
        return [
            (
                "ingress.status_path",
                f"{ingress.status_path!r} overlaps ingress.publication_path "
                f"{ingress.publication_path!r} (one is a prefix of the other), so a "
                "webhook call could match both: use separate paths, e.g. /dip/publications "
                "and /dip/status",
            )
        ]
    return []


def topic_problems(kafka: KafkaSettings, clients: Sequence[ClientConfig]) -> Problems:
    """Each client's topics are its own, and none is a topic the gateway shares."""
    problems: Problems = []
    shared: dict[str, str] = {}
    for i, topic in enumerate(kafka.outbound_topics):
        shared.setdefault(topic, f"kafka.outbound_topics[{i}]")
    if kafka.status_outbound_topic is not None:
        # Egress may read statuses from an outbound topic too: it subscribes once.
        shared.setdefault(kafka.status_outbound_topic, "kafka.status_outbound_topic")
    for name in ("quarantine_topic", "dead_letter_topic"):
        topic = getattr(kafka, name)
        if topic in shared:
            problems.append(
                (
                    f"kafka.{name}",
                    f"topic {topic!r} is also {shared[topic]}: the gateway would read back "
                    f"what it writes there; give kafka.{name} its own topic",
                )
            )
        shared.setdefault(topic, f"kafka.{name}")
    owners: dict[str, str] = {}
    for i, client in enumerate(clients):
        for name in ("inbound", "results", "dead_letter", "status", "retry", "parked"):
            topic = getattr(client.topics, name)
            if topic is None:
                continue
            path = f"clients[{i}].topics.{name}"
            if topic in shared:
                problems.append(
                    (
                        path,
                        f"topic {topic!r} is the shared {shared[topic]}: give client "
                        f"{client.name!r} a topic of its own",
                    )
                )
                continue
            owner = owners.setdefault(topic, client.name)
            if owner != client.name:
                problems.append(
                    (
                        path,
                        f"topic {topic!r} is also a topic of client {owner!r}: each "
                        f"client needs its own topics (one client must never read another's "
                        "messages)",
                    )
                )
    return problems


def audit_problems(
    audit: AuditSettings, kafka: KafkaSettings, clients: Sequence[ClientConfig]
) -> Problems:
    """The ledger's topic holds ledger records only: consumers of a shared topic would read
    them as messages, and the ledger reader would read their messages."""
    if not audit.enabled:
        return []
    used = {t: f"kafka.outbound_topics[{i}]" for i, t in enumerate(kafka.outbound_topics)}
    for name in ("status_outbound_topic", "quarantine_topic", "dead_letter_topic"):
        used.setdefault(getattr(kafka, name), f"kafka.{name}")
    for i, client in enumerate(clients):
        for name in ("inbound", "results", "dead_letter", "status"):
            used.setdefault(getattr(client.topics, name), f"clients[{i}].topics.{name}")
    other = used.get(audit.topic)
    if other is None:
        return []
    return [
        (
            "audit.topic",
            f"topic {audit.topic!r} is also {other}: give the ledger a topic of its own, "
            "e.g. dip.audit",
        )
    ]


def tracking_problems(tracking: TrackingSettings, clients: Sequence[ClientConfig]) -> Problems:
    """Responses arrive on a client's inbound topic: without one nothing could answer."""
    if not tracking.enabled:
        return []
    return [
        (
            f"clients[{i}].topics.inbound",
            f"response tracking (tracking.enabled) reads client {client.name!r}'s inbound "
            "topic: set it, or turn tracking off",
        )
        for i, client in enumerate(clients)
        if client.topics.inbound is None
    ]
