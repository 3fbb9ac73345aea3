"""The submission ledger end to end: the whole gateway (``run_gateway``: egress and ingress with
``audit.enabled``) against the DIP simulator and real Kafka, then ``dcp-gateway audit show``.

Client 1 submits messages addressed to client 2, so the simulator pushes each one back to the
gateway's webhook: one reference is both sent (egress records, one per attempt, 503 faults
included) and received (ingress records). What the ledger says is checked against what the
simulator saw: content hash of the body it stored, the signing and mTLS certificates it
verified, its transaction IDs, and its count of answers per status.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cryptography import x509
from prometheus_client import REGISTRY

from dipsim import Simulator
from dipsim.samples import sample_payload as publication
from gateway.app import ServiceFailed, run_gateway
from gateway.cli import main as cli_main
from gateway.config import ConfigError, GatewayConfig, load_config, parse_config
from gateway.dip import (
    DipClient,
    DipTransportError,
    MemoryTransport,
    TransportRequest,
    TransportResponse,
)
from gateway.dip.exchange import DipExchange
from gateway.kafka.clients import common_kwargs, create_consumer, create_producer
from gateway.kafka.embedded import free_port
from gateway.kafka.topics import ensure_topics, gateway_topics
from gateway.keys import build_keystore
from gateway.ledger import records
from gateway.ledger.publisher import Ledger, LedgerError
from gateway.ledger.reader import read_ledger
from gateway.schema.samples import sample_payload
from gateway.signing.trust import fingerprint_sha256
from tests.dipsim_fixtures import DevPki
from tests.ingress_fixtures import consume
from tests.kafka_fixtures import KafkaUnderTest
from tests.test_egress_e2e import _committed

pytestmark = pytest.mark.timeout(240)


def config_file(
    pki: DevPki, sim: Simulator, kafka: KafkaUnderTest, **sections: dict[str, Any]
) -> Path:
    """Egress and ingress with the ledger on, fresh topics, the simulator as the DIP;
    ``sections`` replace whole sections."""
    data: dict[str, Any] = yaml.safe_load((pki.root / "gateway.yaml").read_text())
    tag = uuid.uuid4().hex[:8]
    for client in data["clients"]:
        client["topics"] = {
            kind: f"{client['name']}.{kind}.{tag}"
            for kind in ("inbound", "results", "dead_letter", "status")
        }
    data["dip"]["base_url"] = sim.base_url
    data["kafka"] = kafka.settings(
        outbound_topics=[f"out.{tag}"],
        status_outbound_topic=f"status-out.{tag}",
        dead_letter_topic=f"dlq.{tag}",
        quarantine_topic=f"quarantine.{tag}",
    ).model_dump(mode="json")
    port = free_port()
    data["ingress"] |= {
        "listen_host": "127.0.0.1",
        "listen_port": port,
        "public_base_url": f"https://127.0.0.1:{port}",
        "tls_client_ca": data["trust"]["ca_bundle"],
        "produce_timeout_seconds": 5,
    }
    data["egress"] = {
        "linger_ms": 20,
        "max_batch_messages": 2,
        "backoff_initial_ms": 10,
        "backoff_max_ms": 50,
        "max_attempts": 50,
        "shutdown_grace_seconds": 5,
    }
    data["ops"] = {"health_port": 0, "log_format": "console"}
    data["audit"] = {"enabled": True, "topic": f"audit.{tag}"}
    data.update(sections)
    path = pki.root / f"gateway-ledger-{tag}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextlib.asynccontextmanager
async def running_gateway(config: GatewayConfig) -> AsyncIterator[asyncio.Task[None]]:
    """``run_gateway`` on a task, ready (services started) when entered."""
    stop, ready = asyncio.Event(), asyncio.Event()

    async def on_ready() -> None:
        ready.set()

    task = asyncio.create_task(run_gateway(config, stop, on_ready=on_ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    try:
        yield task
    finally:
        stop.set()
        with contextlib.suppress(ServiceFailed):
            await task


def _payloads(pki: DevPki, count: int) -> list[dict[str, Any]]:
    """Client 1's IF-043 messages to client 2 (so the simulator pushes them to our webhook)."""
    return [
        sample_payload(
            "IF-043",
            sender_dip_id=pki.dip_id(0),
            sender_role="SUP",
            recipients=[pki.dip_id(1)],
            seq=seq,
        )
        for seq in range(count)
    ]


def _reference(payload: Mapping[str, Any]) -> str:
    value: str = payload["CommonBlock"]["S1"]["senderUniqueReference"]
    return value


async def produce(config: GatewayConfig, values: list[bytes]) -> None:
    producer = create_producer(config.kafka)
    await producer.start()
    try:
        topic = config.kafka.outbound_topics[0]
        await asyncio.gather(*[await producer.send(topic, v) for v in values])
    finally:
        await producer.stop()


async def _raw_ledger(config: GatewayConfig) -> list[bytes]:
    """Every value on the audit topic, as bytes (for what must never be in it)."""
    consumer = create_consumer(config.kafka, config.audit.topic, group_id=None)
    await consumer.start()
    values: list[bytes] = []
    try:
        for part in (await consumer.getmany(timeout_ms=2000)).values():
            values.extend(r.value or b"" for r in part)
    finally:
        await consumer.stop()
    return values


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(cli_main, list(argv))


async def test_every_request_and_push_is_on_the_ledger_and_audit_show_tells_both(
    kafka: KafkaUnderTest,
    pki: DevPki,
    simulator: Simulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = config_file(pki, simulator, kafka)
    config = load_config(path)
    assert await cli("dip", "webhooks", "sync", "--config", str(path)) == 0
    sent = _payloads(pki, 10)
    references = [_reference(p) for p in sent]
    before = Counter(simulator.state.status_codes)
    simulator.set_faults(rate_503=0.5, seed=1)  # retries: each attempt is a record of its own
    async with running_gateway(config):
        await produce(config, [orjson.dumps(p) for p in sent])
        results = await consume(config.kafka, config.clients[0].topics.results, len(sent))
        await simulator.wait_pushes()
        inbound = await consume(config.kafka, config.clients[1].topics.inbound, len(sent))
    simulator.clear_faults()
    answered = Counter(simulator.state.status_codes) - before
    assert answered[503] > 0, answered  # the faults were hit, so retries happened
    assert len(results) == len(inbound) == len(sent)

    found = await read_ledger(config.kafka, config.audit.topic, lambda r: True)
    egress = [r for r in found if r["direction"] == "egress"]
    ingress = [r for r in found if r["direction"] == "ingress"]

    # One record per request the simulator answered, with the status it answered.
    assert Counter(r["status"] for r in egress) == answered
    signer, dip_signer = pki.signer(0), pki.dip_signer()
    mtls = (pki.root / str(pki.manifest["dcp_mtls"]["cert"])).read_bytes()
    for record in egress:
        assert record["client"] == "client-1"
        assert record["dip_id"] == pki.dip_id(0)
        assert record["interface"] == "IF-043"
        assert record["signer_serial"] == format(signer.certificate.serial_number, "x")
        assert record["signer_fingerprint"] == signer.fingerprint_sha256
        assert set(record["references"]) <= set(references)
    accepted = [r for r in egress if r["status"] == 201]
    by_reference = {a["reference"]: (a, r) for r in accepted for a in r["answers"]}
    assert sorted(by_reference) == sorted(references)
    stored_messages = {m.sender_unique_reference: m for m in simulator.state.messages}
    for reference in references:
        answer, record = by_reference[reference]
        stored = stored_messages[reference]
        assert answer["transaction_id"] == stored.transaction_id
        # the body the simulator stored is the one whose hash the ledger holds
        assert record["content_hash"] == _b64_sha256(stored.request.body)
        assert record["signer_fingerprint"] == stored.signer_fingerprint
        assert record["mtls_fingerprint"] == stored.client_cert_fingerprint
    assert {r["mtls_fingerprint"] for r in egress} == {
        fingerprint_sha256(x509.load_pem_x509_certificate(mtls))
    }

    # Every pushed message is on an ingress record with the DIP's verified signer.
    received = {m["reference"]: m for r in ingress for m in r["messages"]}
    assert sorted(received) == sorted(references)
    headers = {dict(r.headers)["dip-sender-unique-reference"]: r for r in inbound}
    for record in ingress:
        assert record["client"] == "client-2"
        assert record["dip_id"] == pki.dip_id(1)
        assert record["signer_fingerprint"] == dip_signer.fingerprint_sha256
        assert record["signer_serial"] == format(dip_signer.certificate.serial_number, "x")
        assert len(base64.b64decode(record["content_hash"])) == 32
    for reference, message in received.items():
        kafka_record = headers[reference.encode()]
        transaction_id = dict(kafka_record.headers)["dip-transaction-id"].decode()
        assert message["transaction_id"] == transaction_id
        assert message["outcome"] in ("routed", "duplicate")

    # Never a body, an API key or a signature.
    raw = b"\n".join(await _raw_ledger(config))
    for secret in (pki.api_key(0), pki.api_key(0, secondary=True), pki.api_key(1)):
        assert secret.encode() not in raw
    assert b"CustomBlock" not in raw and b"CommonBlock" not in raw
    assert b"X-DIP-Signature" not in raw and b"BEGIN CERTIFICATE" not in raw

    # The operator's question, through the real CLI.
    capsys.readouterr()
    one = references[3]
    argv = ["audit", "show", "--config", str(path), "--reference", one]
    assert await cli(*argv) == 0
    out = capsys.readouterr().out
    answer, record = by_reference[one]
    assert "SENT POST /dip-channel/IF-043" in out and "DIP answered 201" in out
    assert f"{one}: transaction_id={answer['transaction_id']}" in out
    assert record["content_hash"] in out
    assert "RECEIVED publication client=client-2" in out
    assert dip_signer.fingerprint_sha256 in out
    assert await cli(*argv, "--client", "client-1", "--json") == 0
    shown = [orjson.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert shown and {r["direction"] for r in shown} == {"egress"}
    assert await cli("audit", "show", "--config", str(path), "--reference", "S-none") == 1
    assert "no ledger record mentions S-none" in capsys.readouterr().out


async def test_a_ledger_record_kafka_refuses_stops_egress_before_anything_is_committed(
    kafka: KafkaUnderTest, pki: DevPki, simulator: Simulator
) -> None:
    """The audit topic takes records of at most 100 bytes, so the broker refuses every ledger
    record: the DIP has the batch, but egress writes no result and commits no offset (it is
    sent again after the restart) and the gateway stops with the reason."""
    path = config_file(pki, simulator, kafka)
    config = load_config(path)
    config = config.model_copy(
        update={"ingress": config.ingress.model_copy(update={"enabled": False})}
    )
    await _tiny_audit_topic(config)
    await ensure_topics(config.kafka, gateway_topics(config))
    sent = _payloads(pki, 2)
    await produce(config, [orjson.dumps(p) for p in sent])
    stop = asyncio.Event()
    with pytest.raises(ServiceFailed) as info:
        async with asyncio.timeout(120):
            await run_gateway(config, stop)
    assert "ledger record was not written" in str(info.value)
    stored = {m.sender_unique_reference for m in simulator.state.messages}
    assert {_reference(p) for p in sent} <= stored  # the DIP got them
    results = await _raw_topic(config, config.clients[0].topics.results)
    assert results == []
    # No offset moved past a record (a commit at 0 only carries the poison-isolation failure
    # counts in its metadata).
    assert all(offset in (None, 0) for offset in (await _committed(config)).values())


async def test_a_push_whose_ledger_record_kafka_refuses_is_answered_as_not_stored(
    kafka: KafkaUnderTest, pki: DevPki, simulator: Simulator
) -> None:
    """Ingress answers a push only once its ledger record is written: with every record
    refused, each push is answered 503 (the DIP keeps retrying it) although its messages reached
    the inbound topic (at least once, as for any push answered 503)."""
    path = config_file(pki, simulator, kafka, egress={"enabled": False})
    config = load_config(path)
    await _tiny_audit_topic(config)
    assert await cli("dip", "webhooks", "sync", "--config", str(path)) == 0
    recipient = pki.dip_id(1)
    async with running_gateway(config):
        simulator.publish("IF-043", recipient, [publication("IF-043", recipient, seq=1)])
        await consume(config.kafka, config.clients[1].topics.inbound, 1)
        async with asyncio.timeout(60):
            while simulator.state.pushes["failed"] < 2:  # noqa: ASYNC110  (retried: refused)
                await asyncio.sleep(0.1)
    assert simulator.state.pushes["ok"] == 0
    refused = REGISTRY.get_sample_value(
        "dcpgw_ledger_records_total", {"direction": "ingress", "outcome": "failed"}
    )
    # At least the first push's record was refused; a retry whose messages are all already on
    # Kafka (duplicates) stores nothing, so it may be answered 503 without a record of its own.
    assert refused is not None and refused >= 1


async def test_one_refused_record_fails_only_its_own_push_and_not_egress(
    kafka: KafkaUnderTest, pki: DevPki, simulator: Simulator
) -> None:
    """A push's record Kafka refuses (too large here) fails that push alone: the next push's
    record is written and its wait succeeds, and egress's barrier is not tripped by it (before,
    every later push was answered 503 until a restart, and egress stopped)."""
    config = load_config(config_file(pki, simulator, kafka))
    await _tiny_audit_topic(config, max_bytes=1000)
    producer = create_producer(config.kafka)
    await producer.start()
    try:
        async with Ledger(config, producer=producer) as ledger:
            with pytest.raises(LedgerError, match="not written"):
                await ledger.write("ingress", "1400010001", {"pad": _incompressible()})
            await ledger.write("ingress", "1400010001", {"pad": "x"})
            await ledger.settled()  # egress's barrier: no egress record failed
            with pytest.raises(LedgerError, match="not written"):  # any record's own fate
                await ledger.write("egress", "1400010001", {"pad": _incompressible()})
            with pytest.raises(LedgerError, match="not written"):
                await ledger.settled()  # an egress record refused: egress must stop
            await ledger.write("ingress", "1400010001", {"pad": "y"})
            gives_up = asyncio.create_task(ledger.write("ingress", "1400010001", {"pad": "z"}))
            await asyncio.sleep(0)  # handed over, now waiting for Kafka: its waiter gives up
            gives_up.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gives_up
            with pytest.raises(LedgerError):  # (the refused egress record's, as above)
                await ledger.settled()
            assert not ledger._watched  # the record that lost its waiter left nothing behind
    finally:
        await producer.stop()
    assert [orjson.loads(v) for v in await _raw_topic(config, config.audit.topic)] == [
        {"pad": "x"},
        {"pad": "y"},
        {"pad": "z"},
    ]


def _incompressible() -> str:
    """Over the topic's 1,000 bytes even compressed (the producer compresses batches)."""
    return base64.b64encode(os.urandom(3000)).decode()


async def _tiny_audit_topic(config: GatewayConfig, max_bytes: int = 100) -> None:
    """The audit topic, made to refuse every ledger record over ``max_bytes`` (by default,
    every one)."""
    admin = AIOKafkaAdminClient(**common_kwargs(config.kafka))
    await admin.start()
    try:
        configs = {"max.message.bytes": str(max_bytes)}
        await admin.create_topics([NewTopic(config.audit.topic, 1, 1, topic_configs=configs)])
    finally:
        await admin.close()


async def _raw_topic(config: GatewayConfig, topic: str) -> list[bytes]:
    consumer = create_consumer(config.kafka, topic, group_id=None)
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=1500)
        return [r.value or b"" for part in batches.values() for r in part]
    finally:
        await consumer.stop()


# -- the pure parts --------------------------------------------------------------------------


def test_the_ledger_topic_must_be_its_own(pki: DevPki) -> None:
    data: dict[str, Any] = yaml.safe_load((pki.root / "gateway.yaml").read_text())
    data["audit"] = {"enabled": True, "topic": data["clients"][0]["topics"]["results"]}
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=pki.root)
    assert "audit.topic" in str(info.value) and "clients[0].topics.results" in str(info.value)
    data["audit"]["enabled"] = False  # off: the field is not checked against the others
    assert not parse_config(data, base_dir=pki.root).audit.enabled


def test_answers_and_decoding_take_only_what_they_understand() -> None:
    assert records.answers(b"") == []
    assert records.answers(b"<html>502</html>") == []
    assert records.answers(b'{"messageArray": "x"}') == []
    long = "MSG1001 - Schema Failure" + "!" * 500
    body = orjson.dumps(
        {
            "messageArray": [
                {"senderUniqueReference": "S-1", "transactionID": "T-1", "message": long},
                {"senderUniqueReference": "S-2", "transactionID": "T-2",
                 "message": "MSG0000 - Success"},
                "junk",
            ]
        }
    )  # fmt: skip
    rejected, accepted = records.answers(body)
    assert rejected == {"reference": "S-1", "transaction_id": "T-1", "message": long[:200]}
    assert accepted == {"reference": "S-2", "transaction_id": "T-2"}  # the status says it
    assert records.decode(b"not json") is None
    assert records.decode(b'{"direction": "sideways"}') is None
    assert records.interface_of("/dip-channel/IF-021") == "IF-021"
    assert records.interface_of("/statusmessage") == "statusmessage"


class _Recorder:
    def __init__(self) -> None:
        self.seen: list[DipExchange] = []

    def observe(self, exchange: DipExchange) -> None:
        self.seen.append(exchange)

    async def settled(self) -> None:
        return None


async def test_the_client_tells_its_observer_of_every_request_answered_or_not(
    pki: DevPki,
) -> None:
    keystore = build_keystore(load_config(pki.root / "gateway.yaml"))
    answers: list[TransportResponse | DipTransportError] = [
        TransportResponse(201, {}, b'{"messageArray": []}'),
        DipTransportError("reset by peer"),
    ]

    async def answer(request: TransportRequest) -> TransportResponse:
        next_one = answers.pop(0)
        if isinstance(next_one, DipTransportError):
            raise next_one
        return next_one

    recorder = _Recorder()
    path, sender = "/dip-channel/IF-043", pki.dip_id(0)
    transport = MemoryTransport(answer)
    async with DipClient("https://dip.test", keystore, transport, observer=recorder) as client:
        await client.request("POST", path, sender, b"[]", references=["S-1"])
        with pytest.raises(DipTransportError):
            await client.request("POST", path, sender, b"[]")
        await client.settled()
    first, second = recorder.seen
    assert (first.status, first.references, first.error) == (201, ["S-1"], None)
    assert first.response == b'{"messageArray": []}'
    assert first.signature["X-DIP-Content-Hash"] == _b64_sha256(b"[]")
    assert first.credential.fingerprint_sha256 == pki.signer(0).fingerprint_sha256
    assert second.status is None and second.error == "DipTransportError: reset by peer"
