"""The webhook end to end with the gateway's own signed pushes: real HTTP (and TLS), real RSA,
real Kafka. The simulator-driven tests live in ``test_ingress_simulator.py``.

Test topics have one partition, so "nothing was routed" is proven by pushing a good sentinel
after the refused pushes and finding it first and alone on the topic.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import structlog

from gateway.dip.webhook_urls import publication_callback_url, status_callback_url
from gateway.ingress import app as ingress_app
from gateway.ingress.dedup import DedupWindow
from gateway.ingress.deliver import Deliverer
from gateway.ingress.pipeline import Delivery, Outcome
from gateway.ingress.samples import body_of, publication, sign_push, status_message
from gateway.ingress.service import IngressServerFailed, IngressService
from gateway.kafka.clients import create_producer
from gateway.kafka.embedded import free_port
from gateway.kafka.topics import ensure_topics, gateway_topics
from gateway.ops.health import Health
from gateway.ops.logging import LogLimiter
from gateway.ops.server import start_ops_server
from gateway.signing.credentials import SigningCredential, load_credential
from gateway.signing.pki import DevPkiOptions, Purpose, create_ca, create_dev_pki, issue
from gateway.signing.scheme import content_hash
from tests.ingress_fixtures import (
    PUBLIC,
    consume,
    dip_ids,
    first_webhook,
    gateway_config,
    push,
    running,
    sentinel_lands_alone,
    tx,
)
from tests.kafka_fixtures import KafkaUnderTest, RestartableBroker


@pytest.fixture(scope="module")
def dev_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ingress-pki")
    create_dev_pki(folder, DevPkiOptions(clients=2, bits=2048))
    return folder


@pytest.fixture(scope="module")
def dip_signer(dev_pki: Path) -> SigningCredential:
    return load_credential(dev_pki / "dip" / "signing.pfx")


async def test_signed_push_over_tls_lands_on_the_client_topic_with_headers(
    kafka: KafkaUnderTest, dev_pki: Path, dip_signer: SigningCredential
) -> None:
    config = gateway_config(dev_pki, kafka.settings(), tls=True)
    [first, second] = config.clients
    recipient = first.dip_ids[0].dip_id
    url = publication_callback_url(config.ingress, "IF-043", recipient)
    txs = [tx() for _ in range(3)]
    mpans = ["2000000000001", "2000000000002", "2000000000001"]
    body = body_of([publication(recipient, t, mpan=m) for t, m in zip(txs, mpans, strict=True)])
    async with running(config) as (_, http):
        response = await push(http, url, body, dip_signer)
        assert response.status_code == 201, response.text
        answer = response.json()
        assert [e["transactionID"] for e in answer["messageArray"]] == txs
        assert {e["message"] for e in answer["messageArray"]} == {"MSG0000 - Success"}
        records = await consume(config.kafka, first.topics.inbound, 3)
    assert [r.key for r in records] == [m.encode() for m in mpans]
    headers = dict(records[0].headers)
    assert headers["dip-interface"] == b"IF-043"
    assert headers["dip-transaction-id"] == txs[0].encode()
    assert headers["dip-publication-id"] == b"PUB-043"
    assert headers["dip-replay-indicator"] == b"false"
    assert headers["dip-sender-dip-id"] == b"1009012345"
    assert headers["dip-recipient-dip-id"] == recipient.encode()
    assert headers["dip-event-code"] == b"[ConnectionTypeChange]"
    assert orjson.loads(records[0].value)["CommonBlock"]["D0"]["transactionID"] == txs[0]
    assert second.topics.inbound != first.topics.inbound


async def test_every_bad_push_is_refused_and_nothing_is_routed(
    kafka: KafkaUnderTest, dev_pki: Path, dip_signer: SigningCredential
) -> None:
    config = gateway_config(dev_pki, kafka.settings(), max_body_bytes=4096)
    _, recipient, url = first_webhook(config)
    other = config.clients[1].dip_ids[0].dip_id
    good = body_of([publication(recipient, tx())])
    stranger_ca = create_ca("Not the DIP CA", bits=2048)
    stranger = issue(stranger_ca, "dip-signing.dev.test", Purpose.SIGNING, bits=2048)
    untrusted = SigningCredential(stranger.key, stranger.cert, "stranger")

    def bad_hash(h: dict[str, str]) -> None:
        h["X-DIP-Content-Hash"] = "A" * 43 + "="

    def bad_signature(h: dict[str, str]) -> None:
        h["X-DIP-Signature"] = h["X-DIP-Signature"][::-1]

    async with running(config) as (_, http):
        cases = {
            "tampered body": await push(
                http, url, good, dip_signer, send_body=good.replace(b"_K", b"_A")
            ),
            "tampered hash": await push(http, url, good, dip_signer, tamper=bad_hash),
            "bad signature": await push(http, url, good, dip_signer, tamper=bad_signature),
            "untrusted signer": await push(http, url, good, untrusted),
            "stale date": await push(
                http, url, good, dip_signer, when=datetime.now(UTC) - timedelta(hours=2)
            ),
            "wrong recipient": await push(
                http, url, body_of([publication(other, tx())]), dip_signer
            ),
            "oversized": await push(
                http, url, body_of([publication(recipient, tx()) for _ in range(10)]), dip_signer
            ),
            "malformed json": await push(http, url, b'[{"payload": {', dip_signer),
            "unknown path": await http.post("/elsewhere", content=good),
        }
        statuses = {name: r.status_code for name, r in cases.items()}
        assert statuses == {
            "tampered body": 401,
            "tampered hash": 401,
            "bad signature": 401,
            "untrusted signer": 401,
            "stale date": 401,
            "wrong recipient": 422,
            "oversized": 413,
            "malformed json": 400,
            "unknown path": 404,
        }
        reasons = {name: r.json()["messageArray"][0]["message"] for name, r in cases.items()}
        assert reasons["untrusted signer"] == "401 untrusted_certificate"
        assert reasons["stale date"] == "401 date_out_of_skew"
        assert reasons["tampered body"] == "401 bad_content_hash"
        await sentinel_lands_alone(http, config, dip_signer)


async def test_duplicate_pushes_are_routed_once(
    kafka: KafkaUnderTest, dev_pki: Path, dip_signer: SigningCredential
) -> None:
    config = gateway_config(dev_pki, kafka.settings())
    client, recipient, url = first_webhook(config)
    repeated = tx()
    body = body_of([publication(recipient, repeated)])
    async with running(config) as (_, http):
        answers = await asyncio.gather(*(push(http, url, body, dip_signer) for _ in range(3)))
        assert [a.status_code for a in answers] == [201, 201, 201]
        again = await push(http, url, body, dip_signer)
        assert "duplicate" in again.json()["messageArray"][0]["message"]
        sentinel = tx()
        await push(http, url, body_of([publication(recipient, sentinel)]), dip_signer)
        records = await consume(config.kafka, client.topics.inbound, 2)
    assert [dict(r.headers)["dip-transaction-id"] for r in records] == [
        repeated.encode(),
        sentinel.encode(),
    ]


async def test_unowned_recipient_goes_to_quarantine_and_status_to_status_topic(
    kafka: KafkaUnderTest, dev_pki: Path, dip_signer: SigningCredential
) -> None:
    config = gateway_config(dev_pki, kafka.settings())
    client = config.clients[0]
    recipient = client.dip_ids[0].dip_id
    stranger = "1888888888"
    assert stranger not in dip_ids(config)
    async with running(config) as (_, http):
        url = publication_callback_url(config.ingress, "IF-043", stranger)
        lost = tx()
        answer = await push(http, url, body_of([publication(stranger, lost)]), dip_signer)
        assert answer.status_code == 201
        status_url = status_callback_url(config.ingress, recipient)
        item = status_message(recipient, tx(), "MSG1001 - Schema Failure")
        status_answer = await push(http, status_url, body_of([item]), dip_signer)
        assert status_answer.status_code == 201
        [quarantined] = await consume(config.kafka, config.kafka.quarantine_topic, 1)
        [status] = await consume(config.kafka, client.topics.status or "", 1)
    headers = dict(quarantined.headers)
    assert headers["dip-quarantine-reason"] == b"unknown_recipient"
    assert headers["dip-transaction-id"] == lost.encode()
    assert dict(status.headers)["dip-status-message"] == b"MSG1001 - Schema Failure"
    assert orjson.loads(status.value)["recipientID"] == recipient


@pytest.mark.tansu
async def test_kafka_outage_gives_503_and_the_retry_lands_after_recovery(
    dev_pki: Path, dip_signer: SigningCredential, own_broker: RestartableBroker
) -> None:
    settings = own_broker.kafka.settings()
    config = gateway_config(dev_pki, settings, produce_timeout_seconds=2)
    await ensure_topics(settings, gateway_topics(config), partitions=1)
    client, recipient, url = first_webhook(config)
    transaction = tx()
    body = body_of([publication(recipient, transaction)])
    async with running(config) as (_, http):
        await asyncio.to_thread(own_broker.stop)
        down = await push(http, url, body, dip_signer)
        assert down.status_code == 503
        assert "retry" in down.json()["messageArray"][0]["message"]
        await asyncio.to_thread(own_broker.start)
        await ensure_topics(settings, gateway_topics(config), partitions=1)
        retried = await push(http, url, body, dip_signer)
        while retried.status_code == 503:  # the producer reconnects on its own schedule
            await asyncio.sleep(0.5)
            retried = await push(http, url, body, dip_signer)
        assert retried.status_code == 201
        records = await consume(settings, client.topics.inbound, 1, settle_ms=1000)
    # The push answered 503 lands after all (its produce outlived the answer, and Apache Kafka
    # keeps it across the outage): the retries waited on that copy instead of adding their own.
    [record] = records
    assert dict(record.headers)["dip-transaction-id"] == transaction.encode()
    assert record.value is not None
    assert orjson.loads(record.value)["CommonBlock"]["A0"]["primaryRecipients"] == [recipient]


# -- liveness, failures, guards ---------------------------------------------------------------


async def test_idle_ingress_stays_live_past_the_stall_window_and_stalls_once_stopped(
    kafka: KafkaUnderTest, dev_pki: Path
) -> None:
    config = gateway_config(dev_pki, kafka.settings())
    await ensure_topics(config.kafka, gateway_topics(config), partitions=1)
    health = Health(stall_seconds=0.6)
    ops_port = free_port()
    runner = await start_ops_server(health, "127.0.0.1", ops_port)
    service = IngressService(config, health)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ops_port}") as ops:
            await service.connected.wait()
            await asyncio.sleep(2.0)  # over three stall windows with no push at all
            assert health.liveness() == (True, {"ingress": "ok"})
            livez = await ops.get("/livez")
            assert livez.status_code == 200, livez.text
            assert livez.json() == {"ok": True, "components": {"ingress": "ok"}}
            stop.set()
            await task
            await asyncio.sleep(1.0)  # the heartbeat stopped with the service
            ok, report = health.liveness()
            assert not ok
            assert report["ingress"].startswith("stalled")
            assert (await ops.get("/livez")).status_code == 503
    finally:
        stop.set()
        await task
        await runner.cleanup()


def test_health_judges_only_components_that_beat() -> None:
    health = Health(stall_seconds=0.05)
    health.set("reports-only", True, "ok")
    health.beat("beats")
    assert health.beat_interval == pytest.approx(0.0125)
    time.sleep(0.1)
    ok, report = health.liveness()
    assert not ok
    assert report["reports-only"] == "ok"
    assert report["beats"].startswith("stalled")
    health.beat("beats")
    assert health.liveness() == (True, {"reports-only": "ok", "beats": "ok"})


async def test_port_in_use_makes_run_raise(kafka: KafkaUnderTest, dev_pki: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = gateway_config(dev_pki, kafka.settings(), listen_port=port)
        service = IngressService(config, Health())
        open_before = len(os.listdir("/proc/self/fd"))
        with pytest.raises(OSError) as info:
            await asyncio.wait_for(service.run(asyncio.Event()), 10)
        # The socket that failed to bind is closed now, not when the traceback is collected.
        assert len(os.listdir("/proc/self/fd")) == open_before, info.value
    assert not service.started.is_set()


async def test_server_that_cannot_start_makes_run_raise(
    kafka: KafkaUnderTest, dev_pki: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    config = gateway_config(
        dev_pki, kafka.settings(), tls_cert=str(broken), tls_key=str(dev_pki / "webhook/server.key")
    )
    health = Health()
    service = IngressService(config, health)
    with pytest.raises(IngressServerFailed, match="failed to start"):
        await asyncio.wait_for(service.run(asyncio.Event()), 10)
    assert health.readiness() == (False, {"ingress": "not ready: stopped"})


async def test_server_that_stops_on_its_own_makes_run_raise(
    kafka: KafkaUnderTest, dev_pki: Path
) -> None:
    config = gateway_config(dev_pki, kafka.settings())
    service = IngressService(config, Health())
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    await service.started.wait()
    assert service.server is not None
    service.server.should_exit = True  # uvicorn's main loop ends without the gateway asking
    with pytest.raises(IngressServerFailed, match="stopped unexpectedly"):
        await asyncio.wait_for(task, 10)
    assert not stop.is_set()


class _ExplodingDeliverer(Deliverer):
    """A delivery bug: the handler must still answer, with a 500."""

    async def deliver(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        raise RuntimeError("bug in delivery with secret detail")


async def test_unexpected_error_is_a_logged_500_not_a_hung_request(
    kafka: KafkaUnderTest, dev_pki: Path, dip_signer: SigningCredential
) -> None:
    config = gateway_config(dev_pki, kafka.settings())
    _, recipient, url = first_webhook(config)
    body = body_of([publication(recipient, tx())])
    async with running(config) as (service, http):
        service.handler.deliverer = _ExplodingDeliverer(None, DedupWindow(10), 1.0)
        with structlog.testing.capture_logs() as logs:
            answer = await asyncio.wait_for(push(http, url, body, dip_signer), 10)
        assert answer.status_code == 500
        entry = answer.json()["messageArray"][0]
        assert entry["message"] == "500 internal_error"
        assert entry["help"] == "RuntimeError; see the log"
        assert "secret detail" not in answer.text
        assert [e["event"] for e in logs if e["log_level"] == "error"] == ["ingress_internal_error"]
        assert service.app.active == 0
        again = await push(http, url, body, dip_signer)  # the server still answers
        assert again.status_code == 500


async def test_pushes_over_the_concurrency_cap_get_503_with_retry_after(
    kafka: KafkaUnderTest, dev_pki: Path, dip_signer: SigningCredential
) -> None:
    config = gateway_config(
        dev_pki, kafka.settings(), max_concurrent_pushes=1, busy_retry_after_seconds=7
    )
    client, recipient, url = first_webhook(config)
    slow_tx = tx()
    body = body_of([publication(recipient, slow_tx)])
    headers = sign_push(dip_signer, url, body)
    release = asyncio.Event()

    async def trickle() -> AsyncIterator[bytes]:
        yield body[:10]
        await release.wait()
        yield body[10:]

    async with running(config) as (service, http):
        slow = asyncio.create_task(
            http.post(url.removeprefix(PUBLIC), content=trickle(), headers=headers)
        )
        async with asyncio.timeout(10):
            while service.app.active == 0:  # noqa: ASYNC110 (a counter, no event to wait on)
                await asyncio.sleep(0.01)
        other = body_of([publication(recipient, tx())])
        busy = await push(http, url, other, dip_signer)
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "7"
        assert busy.json()["messageArray"][0]["message"] == "503 busy"
        release.set()
        assert (await slow).status_code == 201
        assert service.app.active == 0
        [record] = await consume(config.kafka, client.topics.inbound, 1)
    assert dict(record.headers)["dip-transaction-id"] == slow_tx.encode()


async def test_rejections_do_not_echo_the_body_or_the_string_to_sign(
    kafka: KafkaUnderTest,
    dev_pki: Path,
    dip_signer: SigningCredential,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The rejection log is rate-limited per process: earlier tests may have used its burst.
    monkeypatch.setattr(ingress_app, "_rejections_log", LogLimiter())
    config = gateway_config(dev_pki, kafka.settings())
    _, recipient, url = first_webhook(config)
    body = body_of([publication(recipient, tx())])

    def other_date(h: dict[str, str]) -> None:  # signature over another date: bad_signature
        h["X-DIP-Signature-Date"] = h["X-DIP-Signature-Date"][:-4] + "999Z"

    async with running(config) as (_, http):
        with structlog.testing.capture_logs() as logs:
            answer = await push(http, url, body, dip_signer, tamper=other_date)
    assert answer.status_code == 401
    entry = answer.json()["messageArray"][0]
    assert entry["message"] == "401 bad_signature"
    assert "X-DIP-Signature does not verify" in entry["help"]
    assert url.lower() not in answer.text
    assert content_hash(body) not in answer.text
    assert body.decode() not in answer.text and recipient not in answer.text
    [logged] = [e for e in logs if e["event"] == "ingress_rejected"]
    assert f"POST;{url.lower()};" in logged["detail"]  # the operator still sees it in the log


async def test_operator_replay_lands_again_but_an_ordinary_repush_does_not(
    kafka: KafkaUnderTest, dev_pki: Path, dip_signer: SigningCredential
) -> None:
    config = gateway_config(dev_pki, kafka.settings())
    client, recipient, url = first_webhook(config)
    once = tx()
    original = body_of([publication(recipient, once)])
    replayed = body_of([publication(recipient, once, replay=True)])
    async with running(config) as (_, http):
        assert (await push(http, url, original, dip_signer)).status_code == 201
        repush = await push(http, url, original, dip_signer)
        assert "duplicate" in repush.json()["messageArray"][0]["message"]
        replay = await push(http, url, replayed, dip_signer)
        assert replay.json()["messageArray"][0]["message"] == "MSG0000 - Success"
        retry = await push(http, url, original, dip_signer)  # a DIP retry: still de-duplicated
        assert "duplicate" in retry.json()["messageArray"][0]["message"]
        sentinel = tx()
        await push(http, url, body_of([publication(recipient, sentinel)]), dip_signer)
        records = await consume(config.kafka, client.topics.inbound, 3)
    assert [
        (dict(r.headers)["dip-transaction-id"], dict(r.headers)["dip-replay-indicator"])
        for r in records
    ] == [(once.encode(), b"false"), (once.encode(), b"true"), (sentinel.encode(), b"false")]


async def test_an_mp_signing_cert_from_the_dip_ca_cannot_push_publications(
    kafka: KafkaUnderTest, dev_pki: Path, dip_signer: SigningCredential
) -> None:
    config = gateway_config(dev_pki, kafka.settings())
    assert config.trust.signer_names == ("dip-signing.dev.test",)
    _, recipient, url = first_webhook(config)
    mp = load_credential(dev_pki / "clients" / "client-2" / "signing.pfx")  # same DIP CA
    async with running(config) as (_, http):
        forged = await push(http, url, body_of([publication(recipient, tx())]), mp)
        assert forged.status_code == 401
        assert forged.json()["messageArray"][0]["message"] == "401 signer_not_allowed"
        await sentinel_lands_alone(http, config, dip_signer)


async def test_stopping_while_kafka_does_not_answer_closes_the_producer(
    kafka: KafkaUnderTest, dev_pki: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop that lands while the producer is still connecting must close that producer
    (its connections and tasks), not abandon it to the garbage collector."""
    made: list[Any] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        made.append(create_producer(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr("gateway.ingress.service.create_producer", recording)
    with socket.socket() as silent:  # takes the connection (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        settings = kafka.settings(bootstrap_servers=f"127.0.0.1:{silent.getsockname()[1]}")
        service = IngressService(gateway_config(dev_pki, settings), Health())
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        await service.started.wait()
        async with asyncio.timeout(10):
            while not made:  # noqa: ASYNC110 (no event marks the producer's creation)
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # start() now waits for a metadata answer that never comes
        stop.set()
        await asyncio.wait_for(task, 15)
    assert not service.connected.is_set()
    assert [p._closed for p in made] == [True]
