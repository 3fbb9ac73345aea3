"""Egress end to end: real Kafka (the ``kafka`` fixture) -> EgressService -> DIP simulator.

The simulator checks every request the way the DIP does (mTLS client certificate, API key,
signature, and that the signing certificate is the one registered for the sender), so an
accepted message proves it was signed with the right client's key over the shared connection.
Message counts are small and backoffs short to keep the suite fast; nothing here is timed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from cryptography import x509
from prometheus_client import REGISTRY

from dipsim import SimulatorConfig, run_simulator
from dipsim.server import Simulator
from gateway.config import GatewayConfig, parse_config
from gateway.dip import DipClient
from gateway.egress import records as records_module
from gateway.egress import service as service_module
from gateway.egress.service import EgressService
from gateway.egress.writer import OutcomeWriter
from gateway.kafka.clients import common_kwargs, create_producer
from gateway.kafka.topics import ensure_topics, gateway_topics
from gateway.keys import build_keystore, load_dcp_credential
from gateway.ops.collector import young_threshold
from gateway.ops.health import Health
from gateway.schema.samples import sample_payload
from gateway.signing.pki import DevPkiOptions, create_dev_pki
from gateway.signing.trust import fingerprint_sha256
from tests.kafka_fixtures import KafkaUnderTest
from tests.secrets_scan import SECRET_BODY_MARKER, note_output

pytestmark = pytest.mark.timeout(240)

CLIENTS = 3
RECIPIENT = "2300000900"
ROLES = {1: "SUP", 2: "SDS", 3: "MSA"}  # unused by the simulator beyond the reference pattern


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("egress-pki")
    create_dev_pki(folder, DevPkiOptions(clients=CLIENTS, bits=2048))
    yield folder


def _dip_id(client: int) -> str:
    return f"14{client:04d}0001"


def _payload(client: int, seq: int, interface: str = "IF-043", **kw: Any) -> dict[str, Any]:
    """A message of ``client``; its free text carries the secret-body marker, which no output
    may show (tests/secrets_scan.py)."""
    payload = sample_payload(
        interface,
        sender_dip_id=_dip_id(client),
        sender_role="SUP",
        recipients=[RECIPIENT],
        seq=seq,
        **kw,
    )
    payload["CommonBlock"]["S1"]["subText"] = SECRET_BODY_MARKER
    return payload


def _sur(payload: dict[str, Any]) -> str:
    value: str = payload["CommonBlock"]["S1"]["senderUniqueReference"]
    return value


def _gateway_config(
    pki: Path, kafka: KafkaUnderTest, sim: Simulator, **egress: Any
) -> GatewayConfig:
    data = yaml.safe_load((pki / "gateway.yaml").read_text())
    tag = uuid.uuid4().hex[:8]
    data["dip"]["base_url"] = sim.base_url
    data["ingress"] = {"enabled": False}
    data["kafka"] = kafka.settings(
        outbound_topics=[f"out-{tag}"],
        status_outbound_topic=f"status-{tag}",
        dead_letter_topic=f"dlq-{tag}",
    ).model_dump(mode="json")
    data["egress"] = {
        "linger_ms": 50,
        "max_batch_messages": 50,
        "backoff_initial_ms": 10,
        "backoff_max_ms": 100,
        "max_attempts": 30,
        "shutdown_grace_seconds": 5,
        **egress,
    }
    for client in data["clients"]:
        name = client["name"]
        client["topics"] = {
            "inbound": f"{name}-in-{tag}",
            "results": f"{name}-results-{tag}",
            "dead_letter": f"{name}-dlq-{tag}",
        }
    return parse_config(data, base_dir=pki)


@dataclass
class Outcome:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    @property
    def reason(self) -> str:
        return self.headers.get("dcpgw-reason", b"").decode()


@dataclass
class Outcomes:
    results: list[Outcome] = field(default_factory=list)
    dead: list[Outcome] = field(default_factory=list)

    def result_refs(self) -> Counter[str]:
        return Counter(orjson.loads(o.value or b"")["senderUniqueReference"] for o in self.results)


class Gateway:
    """One EgressService run on its own task, with the config's DipClient and key store."""

    def __init__(self, config: GatewayConfig, health: Health | None = None) -> None:
        self.config = config
        self.health = health
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._stack = contextlib.AsyncExitStack()

    async def start(self) -> None:
        keystore = build_keystore(self.config)
        dip = await self._stack.enter_async_context(
            DipClient.over_mtls(self.config.dip, load_dcp_credential(self.config.dcp), keystore)
        )
        service = EgressService(self.config, keystore, dip, self.health)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(service.run(self.stop))

    async def stop_gracefully(self) -> None:
        self.stop.set()
        assert self.task is not None
        await self.task
        await self._stack.aclose()

    async def failure(self) -> service_module.EgressFailed:
        """Wait for the service to stop by itself with EgressFailed; return it."""
        assert self.task is not None
        with pytest.raises(service_module.EgressFailed) as info:
            async with asyncio.timeout(60):
                await self.task
        await self._stack.aclose()
        return info.value

    async def kill(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self._stack.aclose()


async def _produce(
    config: GatewayConfig, records: Sequence[tuple[str, bytes | None, bytes]]
) -> None:
    producer = create_producer(config.kafka)
    await producer.start()
    try:
        futures = [await producer.send(t, v, key=k) for t, k, v in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _collect(config: GatewayConfig, expected: int, wait_seconds: float = 60.0) -> Outcomes:
    """Read every result and dead-letter topic from the start until ``expected`` outcomes."""
    results = {c.topics.results for c in config.clients}
    dead = {c.topics.dead_letter for c in config.clients} | {config.kafka.dead_letter_topic}
    consumer = AIOKafkaConsumer(
        *(results | dead),
        **common_kwargs(config.kafka),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out = Outcomes()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while len(out.results) + len(out.dead) < expected and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    o = Outcome(r.topic, r.key, r.value, dict(r.headers or ()))
                    (out.results if r.topic in results else out.dead).append(o)
        # Anything beyond what was expected would be a duplicate outcome: give it a moment.
        for records in (await consumer.getmany(timeout_ms=300)).values():
            for r in records:
                o = Outcome(r.topic, r.key, r.value, dict(r.headers or ()))
                (out.results if r.topic in results else out.dead).append(o)
    finally:
        await consumer.stop()
    headers = (f"{k}: {v.decode('latin-1')}" for o in out.dead for k, v in o.headers.items())
    note_output(f"dead-letter headers on {sorted(dead)}", "\n".join(headers))
    return out


async def _committed(config: GatewayConfig) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(
        **common_kwargs(config.kafka),
        group_id=config.kafka.consumer_group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        topic = config.kafka.outbound_topics[0]
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in parts}
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def _simulator(pki: Path, **faults: Any) -> AsyncIterator[Simulator]:
    async with run_simulator(SimulatorConfig.from_dev_pki(pki, seed=7)) as sim:
        if faults:
            sim.set_faults(seed=7, **faults)
        yield sim


def _signer_fingerprints(pki: Path) -> dict[str, str]:
    manifest = orjson.loads((pki / "dev-pki.json").read_bytes())
    out = {}
    for client in manifest["clients"]:
        cert = x509.load_pem_x509_certificate((pki / client["signing_cert"]).read_bytes())
        for d in client["dip_ids"]:
            out[d["dip_id"]] = fingerprint_sha256(cert)
    return out


def _status(reference: str) -> dict[str, Any]:
    """A status message (``StandardResponseBodyType``) from client 1 about ``reference``."""
    return {
        "transactionID": None,
        "senderUniqueReference": reference,
        "correlationID": None,
        "sentTimestamp": "2026-11-23T10:00:00+00:00",
        "senderID": _dip_id(1),
        "recipientID": RECIPIENT,
        "DIPConnectionProviderID": None,
        "message": "MSG0000 - Success",
        "help": None,
        "serviceTicketURL": None,
    }


async def test_a_topic_that_is_both_outbound_and_status_carries_both_kinds(
    pki: Path, kafka: KafkaUnderTest
) -> None:
    """The configuration allows the status topic to be an outbound topic: each record is then a
    DIP message or a status message by its shape, and each reaches its own DIP endpoint."""
    async with _simulator(pki) as sim:
        config = _gateway_config(pki, kafka, sim)
        topic = config.kafka.outbound_topics[0]
        config = config.model_copy(
            update={"kafka": config.kafka.model_copy(update={"status_outbound_topic": topic})}
        )
        await ensure_topics(config.kafka, gateway_topics(config))
        sent = [_payload(1, seq) for seq in range(4)]
        statuses = [_status(f"S-IF-043-{_dip_id(1)}-SUP-20261123-status{n}") for n in range(2)]
        values = [
            orjson.dumps(sent[0]),
            orjson.dumps(statuses[0]),
            orjson.dumps({"payload": sent[1]}),
            orjson.dumps({"payload": statuses[1]}),
            *(orjson.dumps(p) for p in sent[2:]),
        ]
        await _produce(config, [(topic, None, v) for v in values])
        gateway = Gateway(config)
        await gateway.start()
        outcomes = await _collect(config, len(values))
        await gateway.stop_gracefully()

        assert outcomes.dead == []
        assert sorted(m.sender_unique_reference for m in sim.state.messages) == sorted(
            _sur(p) for p in sent
        )
        assert len(sim.state.status_messages) == len(statuses)
        assert outcomes.result_refs() == Counter(
            [*(_sur(p) for p in sent), *(s["senderUniqueReference"] for s in statuses)]
        )


@pytest.mark.tansu
async def test_clients_share_one_connection_and_batch_by_sender_and_interface(
    pki: Path, kafka: KafkaUnderTest
) -> None:
    async with _simulator(pki) as sim:
        config = _gateway_config(pki, kafka, sim, linger_ms=1000, max_batch_messages=100)
        await ensure_topics(config.kafka, gateway_topics(config))
        topic = config.kafka.outbound_topics[0]
        sent = [
            _payload(c, seq, iface)
            for c in range(1, CLIENTS + 1)
            for iface in ("IF-043", "IF-044")
            for seq in range(4)
        ]
        status = _status(_sur(_payload(1, 99)))
        records: list[tuple[str, bytes | None, bytes]] = [
            # both shapes: bare payloads and {"payload": ...} wrappers
            (topic, None, orjson.dumps(p if i % 2 else {"payload": p}))
            for i, p in enumerate(sent)
        ]
        records.append((config.kafka.status_outbound_topic or "", None, orjson.dumps(status)))
        await _produce(config, records)
        gateway = Gateway(config)
        await gateway.start()
        outcomes = await _collect(config, len(records))
        await gateway.stop_gracefully()

        assert outcomes.dead == []
        assert outcomes.result_refs() == Counter(_sur(p) for p in [*sent, _payload(1, 99)])
        stored = sim.state.messages
        assert sorted(m.sender_unique_reference for m in stored) == sorted(_sur(p) for p in sent)
        fingerprints = _signer_fingerprints(pki)
        assert all(m.signer_fingerprint == fingerprints[m.sender] for m in stored)
        assert len({m.client_cert_fingerprint for m in stored}) == 1  # one DCP mTLS identity
        assert all(m.payload["CommonBlock"]["S1"]["DIPConnectionProviderID"] for m in stored)
        # One request per (sender, interface): 3 clients x 2 interfaces.
        assert sim.state.requests["submit"] == CLIENTS * 2
        assert len(sim.state.status_messages) == 1
        result = orjson.loads(outcomes.results[0].value or b"")
        assert result["dipStatus"] == 201 and result["transactionID"]
        assert result["source"]["topic"] in (topic, config.kafka.status_outbound_topic)
        committed = await _committed(config)
        assert sum(c or 0 for c in committed.values()) == len(sent)


async def test_partial_results_and_bad_records_are_dead_lettered(
    pki: Path, kafka: KafkaUnderTest
) -> None:
    async with _simulator(pki, rate_partial=0.4) as sim:
        config = _gateway_config(pki, kafka, sim, max_batch_messages=10)
        await ensure_topics(config.kafka, gateway_topics(config))
        topic = config.kafka.outbound_topics[0]
        good = [_payload(1 + seq % 2, seq) for seq in range(20)]
        invalid = _payload(1, 100)
        invalid["CommonBlock"]["M0"]["MPANCore"] = "12"
        bad: list[tuple[bytes, str, bool]] = [  # value, reason fragment, gateway-wide topic
            (b"{not json", "malformed JSON", True),
            (orjson.dumps(_payload(1, 101) | {"CommonBlock": None}), "CommonBlock", True),
            (
                orjson.dumps(
                    sample_payload(
                        "IF-043",
                        sender_dip_id="5555555555",
                        sender_role="SUP",
                        recipients=[RECIPIENT],
                        seq=1,
                    )
                ),
                "unknown sender",
                True,
            ),
            (orjson.dumps(_payload(2, 102, environment_tag="PRD")), "environmentTag 'PRD'", False),
            (orjson.dumps(invalid), "MSG1001 - Schema Failure", False),
            (orjson.dumps(_payload(1, 103, dcp_id="9999999999")), "does not overwrite", False),
        ]
        records = [(topic, b"key-" + str(i).encode(), orjson.dumps(p)) for i, p in enumerate(good)]
        records += [(topic, b"bad", value) for value, _, _ in bad]
        await _produce(config, records)
        gateway = Gateway(config)
        await gateway.start()
        outcomes = await _collect(config, len(records))
        await gateway.stop_gracefully()

        accepted = {m.sender_unique_reference for m in sim.state.messages}
        assert 0 < len(accepted) < len(good)  # the fault really produced partial answers
        assert set(outcomes.result_refs()) == accepted
        rejected_by_dip = [o for o in outcomes.dead if o.headers.get("dcpgw-dip-status")]
        assert {
            orjson.loads(o.value or b"")["CommonBlock"]["S1"]["senderUniqueReference"]
            for o in rejected_by_dip
        } == {_sur(p) for p in good} - accepted
        assert all(o.headers["dcpgw-dip-status"] in (b"207", b"400") for o in rejected_by_dip)
        assert all(
            o.reason.startswith("MSG1001 - Schema Failure: fault injection")
            for o in rejected_by_dip
        )
        assert all(o.topic.startswith(("client-1-dlq", "client-2-dlq")) for o in rejected_by_dip)
        refused = [o for o in outcomes.dead if not o.headers.get("dcpgw-dip-status")]
        assert len(refused) == len(bad)
        for value, fragment, gateway_wide in bad:
            match = [o for o in refused if o.value == value]
            assert len(match) == 1, fragment
            assert fragment in match[0].reason
            assert (match[0].topic == config.kafka.dead_letter_topic) is gateway_wide
            assert (
                match[0].key == b"bad" and match[0].headers["dcpgw-source-topic"] == topic.encode()
            )
            assert match[0].headers["dcpgw-source-offset"].isdigit()
        # Nothing refused before sending reached the simulator.
        assert sim.state.stats()["rejectedMessages"].keys() <= {"MSG1001 - Schema Failure"}


async def test_retries_under_faults_keep_per_key_order_without_loss(
    pki: Path, kafka: KafkaUnderTest
) -> None:
    async with _simulator(
        pki, rate_429=0.25, rate_503=0.15, rate_reset=0.1, retry_after_seconds=0
    ) as sim:
        config = _gateway_config(pki, kafka, sim, max_batch_messages=3, linger_ms=0)
        await ensure_topics(config.kafka, gateway_topics(config))
        topic = config.kafka.outbound_topics[0]
        keys = [f"mpan-{k}".encode() for k in range(4)]
        # The ordering scope is (sender, key) by default: a client held off by a 429 (its
        # records diverted to its retry topic and read back) never holds another's.
        sent: dict[tuple[int, bytes], list[str]] = defaultdict(list)
        records = []
        for seq in range(40):
            key = keys[seq % len(keys)]
            p = _payload(1 + seq % CLIENTS, seq)
            sent[(seq % CLIENTS, key)].append(_sur(p))
            records.append((topic, key, orjson.dumps(p)))
        await _produce(config, records)
        gateway = Gateway(config)
        await gateway.start()
        outcomes = await _collect(config, len(records))
        await gateway.stop_gracefully()

        hits = sim.faults.snapshot()["hits"]
        assert hits.get("429", 0) + hits.get("503", 0) + hits.get("reset", 0) > 0
        assert outcomes.dead == []
        assert outcomes.result_refs() == Counter(s for refs in sent.values() for s in refs)
        assert sim.state.stats()["duplicatesTotal"] == 0
        arrival = [
            m.sender_unique_reference for m in sorted(sim.state.messages, key=lambda m: m.seq)
        ]
        for scope, refs in sent.items():
            assert [s for s in arrival if s in set(refs)] == refs, scope


@pytest.mark.tansu
async def test_stop_and_kill_mid_stream_then_restart_loses_nothing(
    pki: Path, kafka: KafkaUnderTest
) -> None:
    async with _simulator(pki, latency_ms=150) as sim:
        config = _gateway_config(
            pki,
            kafka,
            sim,
            max_batch_messages=1,
            linger_ms=0,
            max_concurrent_requests=1,
            max_in_flight_messages=4,
        )
        await ensure_topics(config.kafka, gateway_topics(config))
        topic = config.kafka.outbound_topics[0]
        payloads = [_payload(1 + seq % CLIENTS, seq) for seq in range(40)]
        records = [
            (topic, f"k{seq % 7}".encode(), orjson.dumps(p)) for seq, p in enumerate(payloads)
        ]
        await _produce(config, records)

        async def until_stored(count: int) -> None:
            while len(sim.state.messages) < count:  # noqa: ASYNC110 (the simulator has no event)
                await asyncio.sleep(0.01)

        first = Gateway(config)
        await first.start()
        await asyncio.wait_for(until_stored(6), 60)
        await first.stop_gracefully()  # graceful: finishes in-flight work, commits what is final

        second = Gateway(config)
        await second.start()
        await asyncio.wait_for(until_stored(len(sim.state.messages) + 6), 60)
        await second.kill()  # abrupt: in-flight work abandoned, not committed

        third = Gateway(config)
        await third.start()
        await asyncio.wait_for(until_stored(len(payloads)), 60)
        expected_refs = {_sur(p) for p in payloads}
        outcomes = await _collect(config, len(payloads))
        # Wait until every record's outcome is committed, then stop.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while sum(c or 0 for c in (await _committed(config)).values()) < len(payloads):
            assert loop.time() < deadline, "offsets never committed"
            await asyncio.sleep(0.2)
        await third.stop_gracefully()
        outcomes = await _collect(config, len(payloads))

        # The DIP got every message exactly once (it refuses repeated references as duplicates).
        stored = Counter(m.sender_unique_reference for m in sim.state.messages)
        assert set(stored) == expected_refs and max(stored.values()) == 1
        # Every record reached a result; a re-sent one the DIP refused as a duplicate of its
        # earlier copy is a result flagged delivered earlier, not a dead letter.
        assert not outcomes.dead, [o.reason for o in outcomes.dead]
        assert set(outcomes.result_refs()) == expected_refs
        for o in outcomes.results:
            if "dcpgw-delivered-earlier" in o.headers:
                assert orjson.loads(o.value or b"")["dipMessage"].startswith("MSG1002")


def _small_window_config(
    pki: Path, kafka: KafkaUnderTest, sim: Simulator, limit: int
) -> GatewayConfig:
    """Batches of 2, one request at a time, ``limit`` records in flight: the window fills."""
    return _gateway_config(
        pki,
        kafka,
        sim,
        max_batch_messages=2,
        linger_ms=0,
        max_concurrent_requests=1,
        max_in_flight_messages=limit,
    )


async def test_in_flight_records_never_exceed_the_limit_and_nothing_is_lost(
    pki: Path, kafka: KafkaUnderTest
) -> None:
    """A slow DIP fills the in-flight window: the consumer holds at the limit, then takes
    records again at the low-water mark; every record still arrives once."""
    async with _simulator(pki, latency_ms=40) as sim:
        limit = 6
        config = _small_window_config(pki, kafka, sim, limit)
        await ensure_topics(config.kafka, gateway_topics(config))
        topic = config.kafka.outbound_topics[0]
        payloads = [_payload(1 + seq % CLIENTS, seq) for seq in range(60)]
        await _produce(
            config, [(topic, f"k{seq}".encode(), orjson.dumps(p)) for seq, p in enumerate(payloads)]
        )
        seen_in_flight: list[float] = []
        seen_stopped: list[float] = []
        seen_young: set[int] = set()
        thresholds_before = gc.get_threshold()

        async def sample() -> None:
            while True:
                seen_in_flight.append(_gauge("dcpgw_egress_in_flight_messages"))
                seen_stopped.append(_gauge("dcpgw_egress_fetch_paused"))
                seen_young.add(gc.get_threshold()[0])
                await asyncio.sleep(0.005)

        gateway = Gateway(config)
        sampler = asyncio.create_task(sample())
        await gateway.start()
        try:
            outcomes = await _collect(config, len(payloads))
        finally:
            sampler.cancel()
            await gateway.stop_gracefully()
        assert outcomes.dead == []
        assert outcomes.result_refs() == Counter(_sur(p) for p in payloads)
        assert max(seen_in_flight) == limit  # reached, never passed
        assert 1.0 in seen_stopped  # the consumer did hold back
        stored = Counter(m.sender_unique_reference for m in sim.state.messages)
        assert max(stored.values()) == 1
        assert young_threshold(limit) in seen_young  # the collector was set for streaming
        assert gc.get_threshold() == thresholds_before  # and restored on stop


async def test_a_long_hold_pauses_the_partitions_and_keeps_the_group_membership(
    pki: Path, kafka: KafkaUnderTest
) -> None:
    """A DIP slower than the hold time: partitions are paused and getmany keeps being called,
    so the member is not dropped from the group (max_poll_interval_ms 2 s; each answer takes
    2.5 s, during which no record may be taken)."""
    async with _simulator(pki, latency_ms=2500) as sim:
        config = _small_window_config(pki, kafka, sim, 2)
        config = config.model_copy(
            update={"kafka": config.kafka.model_copy(update={"max_poll_interval_ms": 2000})}
        )
        await ensure_topics(config.kafka, gateway_topics(config))
        topic = config.kafka.outbound_topics[0]
        payloads = [_payload(1, seq) for seq in range(4)]
        await _produce(config, [(topic, b"one-key", orjson.dumps(p)) for p in payloads])
        with structlog.testing.capture_logs() as logs:
            gateway = Gateway(config)
            await gateway.start()
            try:
                outcomes = await _collect(config, len(payloads))
            finally:
                await gateway.stop_gracefully()
        events = [e["event"] for e in logs]
        assert "egress_fetch_paused" in events
        assert events.index("egress_fetch_resumed") > events.index("egress_fetch_paused")
        assert "egress_partitions_revoked" not in events  # never left the group
        assert outcomes.dead == []
        assert outcomes.result_refs() == Counter(_sur(p) for p in payloads)
        stored = [
            m.sender_unique_reference for m in sorted(sim.state.messages, key=lambda m: m.seq)
        ]
        assert stored == [_sur(p) for p in payloads]  # one key: offset order, each once


async def test_a_bug_in_a_batch_stops_egress_without_committing_or_reordering_its_key(
    pki: Path, kafka: KafkaUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception after the DIP answered (here: building the result records) must
    neither let later messages with the same key overtake the failed batch's, nor commit its
    records: egress stops with the error, and a restart sends the rest in order."""
    calls = 0
    real_outcome_records = records_module.outcome_records

    def buggy_outcome_records(deliveries: Any, *rest: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError("a bug")
        return real_outcome_records(deliveries, *rest)

    monkeypatch.setattr(service_module, "outcome_records", buggy_outcome_records)
    async with _simulator(pki) as sim:
        config = _gateway_config(pki, kafka, sim, max_batch_messages=1, linger_ms=1)
        await ensure_topics(config.kafka, gateway_topics(config))
        topic = config.kafka.outbound_topics[0]
        payloads = [_payload(1, seq) for seq in range(3)]
        await _produce(config, [(topic, b"meter-1", orjson.dumps(p)) for p in payloads])

        gateway = Gateway(config)
        await gateway.start()
        failure = await gateway.failure()
        assert "internal error in batch" in str(failure)
        assert isinstance(failure.__cause__, KeyError)
        # The first message reached the DIP; the two behind it on its key were held back.
        assert [m.sender_unique_reference for m in sim.state.messages] == [_sur(payloads[0])]
        assert set((await _committed(config)).values()) <= {None, 0}

        gateway = Gateway(config)  # the restart: the outcome step works again
        await gateway.start()
        outcomes = await _collect(config, len(payloads))
        await gateway.stop_gracefully()
        stored = [m.sender_unique_reference for m in sim.state.messages]
        # At-least-once: the first is sent again (the simulator refuses the duplicate reference,
        # so its result says it was delivered earlier), then the other two, in offset order.
        assert stored[-2:] == [_sur(p) for p in payloads[1:]]
        assert outcomes.result_refs() == Counter(_sur(p) for p in payloads)
        assert not outcomes.dead
        [earlier] = [o for o in outcomes.results if "dcpgw-delivered-earlier" in o.headers]
        assert orjson.loads(earlier.value or b"")["senderUniqueReference"] == _sur(payloads[0])
        assert sum(c or 0 for c in (await _committed(config)).values()) == len(payloads)


async def test_a_bug_writing_a_dead_letter_stops_egress_without_committing_the_record(
    pki: Path, kafka: KafkaUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = OutcomeWriter.write

    async def buggy_write(self: Any, records: Any) -> None:
        if any(r.topic == config.kafka.dead_letter_topic for r in records):
            raise TypeError("a bug")
        await real_write(self, records)

    monkeypatch.setattr(OutcomeWriter, "write", buggy_write)
    async with _simulator(pki) as sim:
        config = _gateway_config(pki, kafka, sim)
        await ensure_topics(config.kafka, gateway_topics(config))
        topic = config.kafka.outbound_topics[0]
        await _produce(config, [(topic, b"k", b"{not json")])
        gateway = Gateway(config)
        await gateway.start()
        failure = await gateway.failure()
        assert "dead letter of" in str(failure)
        assert isinstance(failure.__cause__, TypeError)
        assert set((await _committed(config)).values()) <= {None, 0}


def _gauge(name: str) -> float:
    """A gauge as a scrape shows it (the registry's public API, not the metric's internals)."""
    value = REGISTRY.get_sample_value(name)
    assert value is not None, name
    return value


async def test_outcome_writes_the_broker_refuses_make_egress_unready_until_they_succeed(
    pki: Path, kafka: KafkaUnderTest
) -> None:
    """A results topic whose records the broker refuses (here: too large for the topic) stalls
    the partition's commits: the pod says so on /readyz, and recovers once writes succeed."""
    if kafka.kind == "tansu":
        pytest.skip("Tansu does not enforce a topic's max.message.bytes")
    async with _simulator(pki) as sim:
        config = _gateway_config(pki, kafka, sim)
        results = config.clients[0].topics.results
        admin = AIOKafkaAdminClient(**common_kwargs(config.kafka))
        await admin.start()
        try:
            small = NewTopic(results, 1, 1, topic_configs={"max.message.bytes": "100"})
            await admin.create_topics([small])
            await ensure_topics(config.kafka, gateway_topics(config))
            health = Health()
            gateway = Gateway(config, health)
            await gateway.start()
            topic = config.kafka.outbound_topics[0]
            await _produce(config, [(topic, b"meter-1", orjson.dumps(_payload(1, 0)))])

            def egress_state() -> str:
                return health.readiness()[1].get("egress", "")

            failing = "not ready: outcome writes failing"
            async with asyncio.timeout(60):
                while not egress_state().startswith(failing):  # noqa: ASYNC110 (no event)
                    await asyncio.sleep(0.1)
            roomy = ConfigResource(
                ConfigResourceType.TOPIC, results, configs={"max.message.bytes": "1048588"}
            )
            await admin.alter_configs([roomy])
            async with asyncio.timeout(60):
                while egress_state() != "ok":  # noqa: ASYNC110 (Health has no event)
                    await asyncio.sleep(0.1)
            outcomes = await _collect(config, 1)
            await gateway.stop_gracefully()
        finally:
            await admin.close()
    assert outcomes.result_refs() == Counter({_sur(_payload(1, 0)): 1})


async def test_a_dead_letter_too_large_for_its_topic_is_written_without_its_value(
    pki: Path, kafka: KafkaUnderTest
) -> None:
    """The outbound topic takes a record the dead-letter topic refuses for its size: the dead
    letter is written without the value, pointing at the source offset, and the partition
    moves on (it was retried for ever). A dead letter is written to that partition before it:
    the broker's refusal must not cost the producer the partition's next writes (aiokafka's
    own producer then failed each with OutOfOrderSequenceNumber, see gateway/kafka/producer)."""
    if kafka.kind == "tansu":
        pytest.skip("Tansu does not enforce a topic's max.message.bytes")
    async with _simulator(pki) as sim:
        config = _gateway_config(pki, kafka, sim)
        admin = AIOKafkaAdminClient(**common_kwargs(config.kafka))
        await admin.start()
        try:
            small = {"max.message.bytes": "2000"}
            dlq = config.kafka.dead_letter_topic
            await admin.create_topics([NewTopic(dlq, 1, 1, topic_configs=small)])
        finally:
            await admin.close()
        await ensure_topics(config.kafka, gateway_topics(config))
        topic = config.kafka.outbound_topics[0]
        huge = b"{not json" + base64.b64encode(random.Random(7).randbytes(15_000))  # incompressible
        good = _payload(1, 0)
        await _produce(config, [(topic, b"meter-1", b"{not json either")])
        dropped = REGISTRY.get_sample_value(
            "dcpgw_egress_dead_letter_values_dropped_total", {"topic": dlq}
        )
        gateway = Gateway(config)
        await gateway.start()
        await _collect(config, 1)  # the dead-letter partition has a record before the refusal
        await _produce(config, [(topic, b"meter-1", huge), (topic, b"meter-1", orjson.dumps(good))])
        outcomes = await _collect(config, 3)
        await gateway.stop_gracefully()
        committed = await _committed(config)
    assert outcomes.result_refs() == Counter({_sur(good): 1})
    first, dead = outcomes.dead
    assert first.topic == dlq and first.value == b"{not json either"
    assert dead.topic == dlq and dead.value is None and dead.key == b"meter-1"
    assert dead.headers["dcpgw-source-topic"] == topic.encode()
    assert dead.headers["dcpgw-source-offset"] == b"1"
    assert dead.headers["dcpgw-value-size"] == str(len(huge)).encode()
    assert b"MessageSizeTooLargeError" in dead.headers["dcpgw-value-dropped"]
    assert "malformed JSON" in dead.reason
    after = REGISTRY.get_sample_value(
        "dcpgw_egress_dead_letter_values_dropped_total", {"topic": dlq}
    )
    assert after == (dropped or 0) + 1
    assert sum(c or 0 for c in committed.values()) == 3
