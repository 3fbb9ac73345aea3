"""Helpers shared by the ingress tests: a gateway config and a running webhook, signed pushes,
transaction IDs, and reading what landed on a topic."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import ConsumerRecord

from gateway.config import ClientConfig, GatewayConfig, KafkaSettings, parse_config
from gateway.dip.webhook_urls import publication_callback_url
from gateway.ingress.samples import body_of, publication, sign_push
from gateway.ingress.service import IngressService
from gateway.kafka.clients import create_consumer
from gateway.kafka.topics import ensure_topics, gateway_topics
from gateway.ops.health import Health
from gateway.signing.credentials import SigningCredential


def tx() -> str:
    """A fresh transaction ID in the DIP's shape."""
    return f"T-IF-043-1009012345-REGS-20261123-{uuid.uuid4().hex[:16].upper()}"


async def consume(
    settings: KafkaSettings,
    topic: str | None,
    count: int,
    *,
    settle_ms: int = 0,
    seconds: float = 30.0,
) -> list[ConsumerRecord]:
    """The first ``count`` records of ``topic`` (fails the test if they do not come within
    ``seconds``), plus whatever else arrives within ``settle_ms`` after them (proof that nothing
    follows). ``topic`` may be a config's optional topic: the test fails when it is not set."""
    if topic is None:
        pytest.fail("the configuration names no such topic")
    consumer = create_consumer(settings, topic, group_id=None)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        async with asyncio.timeout(seconds):
            while len(records) < count:
                for part in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(part)
        if settle_ms:
            for part in (await consumer.getmany(timeout_ms=settle_ms)).values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


PUBLIC = "https://dcp-gateway.example.test"


def gateway_config(
    dev_pki: Path, kafka: KafkaSettings, *, tls: bool = False, **ingress: Any
) -> GatewayConfig:
    """The dev PKI's config with fresh topic names, the given Kafka and a port chosen by the OS."""
    data = yaml.safe_load((dev_pki / "gateway.yaml").read_text())
    tag = uuid.uuid4().hex[:8]
    for client in data["clients"]:
        client["topics"] = {
            kind: f"{client['name']}.{kind}.{tag}"
            for kind in ("inbound", "results", "dead_letter", "status")
        }
    data["kafka"] = kafka.model_dump(mode="json") | {"quarantine_topic": f"quarantine.{tag}"}
    data["ingress"] = {
        "listen_host": "127.0.0.1",
        "listen_port": 0,
        "public_base_url": PUBLIC,
        "produce_timeout_seconds": 3,
        **({"tls_cert": "webhook/server.pem", "tls_key": "webhook/server.key"} if tls else {}),
        **ingress,
    }
    data["egress"] = {"enabled": False}
    return parse_config(data, base_dir=dev_pki)


def dip_ids(config: GatewayConfig) -> list[str]:
    return [d.dip_id for c in config.clients for d in c.dip_ids]


def first_webhook(config: GatewayConfig) -> tuple[ClientConfig, str, str]:
    """The first client, its first DIP ID, and that DIP ID's IF-043 publication webhook URL."""
    client = config.clients[0]
    recipient = client.dip_ids[0].dip_id
    return client, recipient, publication_callback_url(config.ingress, "IF-043", recipient)


@asynccontextmanager
async def running(
    config: GatewayConfig, *, create: bool = True
) -> AsyncIterator[tuple[IngressService, httpx.AsyncClient]]:
    """An IngressService with Kafka connected, and an HTTP client aimed at it."""
    if create:
        await ensure_topics(config.kafka, gateway_topics(config), partitions=1)
    health = Health()
    service = IngressService(config, health)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    await service.started.wait()
    await service.connected.wait()
    assert health.readiness()[0]
    verify: ssl.SSLContext | bool = False
    if config.ingress.tls_cert is not None:
        assert config.dip.ca_bundle is not None
        verify = ssl.create_default_context(cafile=str(config.dip.ca_bundle))
    base = f"{service.scheme}://127.0.0.1:{service.port}"
    try:
        async with httpx.AsyncClient(base_url=base, verify=verify, timeout=30) as http:
            yield service, http
    finally:
        stop.set()
        await task


async def push(
    http: httpx.AsyncClient,
    url: str,
    body: bytes,
    signer: SigningCredential,
    *,
    when: datetime | None = None,
    tamper: Callable[[dict[str, str]], None] | None = None,
    send_body: bytes | None = None,
) -> httpx.Response:
    """POST ``body`` signed over the public ``url`` to the local server, as the DIP would."""
    headers = sign_push(signer, url, body, when)
    if tamper is not None:
        tamper(headers)
    return await http.post(
        url.removeprefix(PUBLIC), content=send_body if send_body is not None else body,
        headers=headers,
    )  # fmt: skip


async def sentinel_lands_alone(
    http: httpx.AsyncClient, config: GatewayConfig, signer: SigningCredential
) -> None:
    """Nothing was routed so far: a good sentinel pushed now is accepted and is the first
    record on the first client's inbound topic (test topics have one partition)."""
    client, recipient, url = first_webhook(config)
    sentinel = tx()
    ok = await push(http, url, body_of([publication(recipient, sentinel)]), signer)
    assert ok.status_code == 201
    [record] = await consume(config.kafka, client.topics.inbound, 1)
    assert dict(record.headers)["dip-transaction-id"] == sentinel.encode()
