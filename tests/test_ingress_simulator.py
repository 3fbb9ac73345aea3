"""Ingress and the DIP admin commands against the DIP simulator: its signed pushes over mutual
TLS, its retries, its pubconfig registrations and its paged replay; real Kafka throughout.

The admin commands run through the real CLI (``gateway.cli.main``) in a worker thread, with a
config file pointing at the simulator and the webhook.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from dipsim import Simulator, SimulatorConfig, run_simulator
from dipsim.samples import sample_payload
from gateway.cli import main as cli_main
from gateway.config import GatewayConfig, KafkaSettings, load_config
from gateway.dip.admin import desired_webhooks
from gateway.ingress.service import IngressService
from gateway.kafka.embedded import free_port
from gateway.kafka.topics import ensure_topics, gateway_topics
from gateway.schema import default_registry
from tests import dip_payloads
from tests.dipsim_fixtures import dev_pki, simulator  # noqa: F401
from tests.ingress_fixtures import consume
from tests.kafka_fixtures import KafkaUnderTest, RestartableBroker


def write_config(
    dev_pki: Path,  # noqa: F811
    sim: Simulator,
    kafka: KafkaSettings,
    *,
    port: int,
    publications: list[str] | None = None,
) -> Path:
    """A gateway config next to the dev PKI (its relative paths keep working): the simulator as
    the DIP, fresh topics, and an HTTPS webhook that requires the DIP's client certificate."""
    data: dict[str, Any] = yaml.safe_load((dev_pki / "gateway.yaml").read_text())
    tag = uuid.uuid4().hex[:8]
    for client in data["clients"]:
        client["topics"] = {
            kind: f"{client['name']}.{kind}.{tag}"
            for kind in ("inbound", "results", "dead_letter", "status")
        }
        if publications is not None:
            for dip in client["dip_ids"]:
                dip["publications"] = publications
    data["dip"]["base_url"] = sim.base_url
    data["kafka"] = kafka.model_dump(mode="json") | {"quarantine_topic": f"quarantine.{tag}"}
    data["ingress"] |= {
        "listen_host": "127.0.0.1",
        "listen_port": port,
        "public_base_url": f"https://127.0.0.1:{port}",
        "tls_client_ca": data["trust"]["ca_bundle"],
        "produce_timeout_seconds": 2,
    }
    data["egress"] = {"enabled": False}
    path = dev_pki / f"gateway-ingress-{tag}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@asynccontextmanager
async def webhook(config: GatewayConfig) -> AsyncIterator[IngressService]:
    await ensure_topics(config.kafka, gateway_topics(config), partitions=1)
    service = IngressService(config)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    await service.started.wait()
    await service.connected.wait()
    try:
        yield service
    finally:
        stop.set()
        await task


def patient_simulator(dev_pki: Path) -> SimulatorConfig:  # noqa: F811
    """A simulator that retries a push every 0.5-1 s for minutes, as the DIP does through an
    outage on the gateway's side."""
    return SimulatorConfig.from_dev_pki(
        dev_pki, push_backoff_initial_seconds=0.5, push_backoff_max_seconds=1.0,
        push_max_attempts=200,
    )  # fmt: skip


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(cli_main, list(argv))


def printed_json(out: str) -> Any:
    """The indented JSON document a command printed (in-process log lines may surround it)."""
    start = out.index("[\n")
    return orjson.loads(out[start : out.index("\n]\n", start) + 2])


def registrations(sim: Simulator) -> set[tuple[str, str, str]]:
    return {(k, r, w.callback_url) for (k, r), w in sim.state.webhooks.items()}


def payloads(interface: str, recipient: str, count: int) -> list[dict[str, Any]]:
    return [
        sample_payload(interface, recipient, seq=i, mpan=f"20000000{i % 7:05d}")
        for i in range(count)
    ]


async def test_sync_registers_what_the_config_implies_idempotently_and_pushes_land(
    kafka: KafkaUnderTest,
    dev_pki: Path,  # noqa: F811
    simulator: Simulator,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_config(dev_pki, simulator, kafka.settings(), port=free_port())
    config = load_config(path)
    expected = {(t.channel, t.dip_id, t.callback_url) for t in desired_webhooks(config)}
    assert len(expected) == 3 * 3  # IF-043, IF-021 and status, for each of 3 DIP IDs

    assert await cli("dip", "webhooks", "sync", "--config", str(path), "--dry-run") == 0
    assert registrations(simulator) == set()
    assert "9 to register" in capsys.readouterr().out
    assert await cli("dip", "webhooks", "sync", "--config", str(path)) == 0
    assert registrations(simulator) == expected
    assert await cli("dip", "webhooks", "sync", "--config", str(path)) == 0
    assert registrations(simulator) == expected

    first, second = config.clients[0], config.clients[1]
    a, b = first.dip_ids[0].dip_id, second.dip_ids[0].dip_id
    async with webhook(config):
        pubs_a = simulator.publish("IF-043", a, payloads("IF-043", a, 7))
        pubs_b = simulator.publish("IF-021", b, payloads("IF-021", b, 3))
        await simulator.wait_pushes()
        records_a = await consume(config.kafka, first.topics.inbound, 7)
        records_b = await consume(config.kafka, second.topics.inbound, 3)
    delivered = simulator.state.deliveries_for(None, None)
    assert {d.status for d in delivered} == {"Delivered"}
    assert [dict(r.headers)["dip-transaction-id"].decode() for r in records_a] == [
        p.transaction_id for p in pubs_a
    ]
    assert {dict(r.headers)["dip-transaction-id"].decode() for r in records_b} == {
        p.transaction_id for p in pubs_b
    }
    headers = dict(records_b[0].headers)
    assert headers["dip-interface"] == b"IF-021"
    assert headers["dip-recipient-dip-id"] == b.encode()
    assert headers["dip-publication-id"] == b"PUB-021"
    assert records_b[0].key == pubs_b[0].mpan.encode()  # type: ignore[union-attr]


async def test_sync_with_state_removes_what_the_config_no_longer_implies(
    kafka: KafkaUnderTest,
    dev_pki: Path,  # noqa: F811
    simulator: Simulator,  # noqa: F811
    tmp_path: Path,
) -> None:
    port = free_port()
    state = tmp_path / "webhooks.json"
    wide = write_config(dev_pki, simulator, kafka.settings(), port=port)
    narrow = write_config(dev_pki, simulator, kafka.settings(), port=port, publications=["IF-043"])
    assert await cli("dip", "webhooks", "sync", "--config", str(wide), "--state", str(state)) == 0
    assert len(registrations(simulator)) == 9
    code = await cli("dip", "webhooks", "sync", "--config", str(narrow), "--state", str(state))
    assert code == 0
    expected = {
        (t.channel, t.dip_id, t.callback_url) for t in desired_webhooks(load_config(narrow))
    }
    assert registrations(simulator) == expected
    assert {k for k, _, _ in expected} == {"IF-043", "status"}
    code = await cli("dip", "webhooks", "sync", "--config", str(narrow), "--state", str(state))
    assert code == 0
    assert registrations(simulator) == expected


async def test_replay_across_pages_lands_every_message_once(
    kafka: KafkaUnderTest,
    dev_pki: Path,  # noqa: F811
    simulator: Simulator,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_config(dev_pki, simulator, kafka.settings(), port=free_port())
    config = load_config(path)
    client = config.clients[2]
    recipient = client.dip_ids[0].dip_id
    await ensure_topics(config.kafka, gateway_topics(config), partitions=1)
    published = simulator.publish("IF-043", recipient, payloads("IF-043", recipient, 230))
    assert simulator.config.replay_page_size == 100  # so 230 messages take three pages
    start = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    end = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    argv = ["--config", str(path), "--interface", "IF-043", "--dip-id", recipient]
    assert await cli("dip", "replay", *argv, "--from", start, "--to", end) == 0
    out = capsys.readouterr().out
    assert "replayed 230 message(s) in 3 page(s): 230 produced" in out
    records = await consume(config.kafka, client.topics.inbound, 230)
    ids = [dict(r.headers)["dip-transaction-id"].decode() for r in records]
    assert sorted(ids) == sorted(p.transaction_id for p in published)
    assert {dict(r.headers)["dip-replay-indicator"] for r in records} == {b"true"}
    assert {dict(r.headers)["dip-source"] for r in records} == {b"replay"}


async def test_requeue_the_operator_asked_for_lands_again_as_replays(
    kafka: KafkaUnderTest,
    dev_pki: Path,  # noqa: F811
    simulator: Simulator,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_config(dev_pki, simulator, kafka.settings(), port=free_port())
    config = load_config(path)
    client = config.clients[0]
    recipient = client.dip_ids[0].dip_id
    assert await cli("dip", "webhooks", "sync", "--config", str(path)) == 0
    argv = ["--config", str(path), "--interface", "IF-043", "--dip-id", recipient]
    async with webhook(config):
        first = simulator.publish("IF-043", recipient, payloads("IF-043", recipient, 4))
        await simulator.wait_pushes()
        capsys.readouterr()
        assert await cli("dip", "requeue", *argv) == 0
        requeue_id = capsys.readouterr().out.strip().rsplit(" ", 1)[-1]
        await simulator.wait_pushes()
        assert await cli("dip", "requeue-status", *argv, "--requeue-id", requeue_id) == 0
        status = printed_json(capsys.readouterr().out)
        sentinel = simulator.publish("IF-043", recipient, payloads("IF-043", recipient, 1))
        await simulator.wait_pushes()
        records = await consume(config.kafka, client.topics.inbound, 9)
    assert status[0]["requeueId"] == requeue_id
    assert status[0]["status"] == "Completed"
    # Replays are routed again (gateway.ingress.deliver): the operator asked for them.
    ids = [p.transaction_id for p in first]
    assert [
        (dict(r.headers)["dip-transaction-id"].decode(), dict(r.headers)["dip-replay-indicator"])
        for r in records
    ] == [
        *((t, b"false") for t in ids),
        *((t, b"true") for t in ids),
        (sentinel[0].transaction_id, b"false"),
    ]


async def test_push_during_kafka_outage_gets_503_and_the_dip_retry_lands(
    dev_pki: Path,  # noqa: F811
    own_broker: RestartableBroker,
) -> None:
    async with run_simulator(patient_simulator(dev_pki)) as sim:
        settings = own_broker.kafka.settings()
        path = write_config(dev_pki, sim, settings, port=free_port())
        config = load_config(path)
        await ensure_topics(settings, gateway_topics(config), partitions=1)
        client = config.clients[1]
        recipient = client.dip_ids[0].dip_id
        assert await cli("dip", "webhooks", "sync", "--config", str(path)) == 0
        async with webhook(config):
            await asyncio.to_thread(own_broker.stop)
            [pub] = sim.publish("IF-043", recipient, payloads("IF-043", recipient, 1))
            delivery = sim.state.delivery(pub)
            async with asyncio.timeout(30):
                while not delivery.history:  # noqa: ASYNC110 - simulator state has no event
                    await asyncio.sleep(0.1)
            assert delivery.history[0].status == 503
            await asyncio.to_thread(own_broker.start)
            await ensure_topics(settings, gateway_topics(config), partitions=1)
            await sim.wait_pushes(timeout=60)
            records = await consume(settings, client.topics.inbound, 1, settle_ms=1000)
        assert delivery.status == "Delivered"
        # The push answered 503 lands after all (its produce outlived the answer; Apache Kafka
        # keeps it across the outage, Tansu lost it): the DIP's retries wait on that copy
        # instead of queueing one more each (5 copies once), and are told it is stored.
        [record] = records
        assert dict(record.headers)["dip-transaction-id"] == pub.transaction_id.encode()


async def test_publications_without_a0_or_m0_are_routed_by_the_webhook_path(
    kafka: KafkaUnderTest,
    dev_pki: Path,  # noqa: F811
    simulator: Simulator,  # noqa: F811
) -> None:
    """One publication per interface family that the document allows without A0 (and, for
    IF-019/020, with M1; for IF-022/023/047 and REP-*, with no MPAN block): the DIP pushes
    each to the recipient's webhook, and ingress routes it by that path to the client's topic
    (per-MPAN key where there is one)."""
    interfaces = list(dip_payloads.INTERFACES)
    path = write_config(
        dev_pki, simulator, kafka.settings(), port=free_port(), publications=interfaces
    )
    config = load_config(path)
    client = config.clients[0]
    recipient = client.dip_ids[0].dip_id
    assert await cli("dip", "webhooks", "sync", "--config", str(path)) == 0
    published = {}
    async with webhook(config):
        for interface in interfaces:
            payload = dip_payloads.payload(interface, config.clients[1].dip_ids[0].dip_id)
            assert "A0" not in payload["CommonBlock"]
            assert default_registry().validate(payload) == []
            [pub] = simulator.publish(interface, recipient, [payload])
            published[pub.transaction_id] = interface
        await simulator.wait_pushes()
        records = await consume(config.kafka, client.topics.inbound, len(interfaces))
    assert {d.status for d in simulator.state.deliveries_for(recipient, None)} == {"Delivered"}
    routed = {
        dict(r.headers)["dip-transaction-id"].decode(): (
            dict(r.headers)["dip-interface"].decode(),
            r.key.decode(),
        )
        for r in records
    }
    assert routed == {
        txid: (
            interface,
            dip_payloads.PRINCIPAL_MPAN if interface in dip_payloads.M1_INTERFACES else txid,
        )
        for txid, interface in published.items()
    }
