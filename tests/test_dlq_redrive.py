"""Dead-letter re-drive end to end on real Kafka, the DIP simulator and the gateway as its own
process: a client's DIP ID is configured as effective only from next month, so its messages are
dead-lettered as ``not_effective``; the dates are corrected and the gateway restarted;
``dcp-gateway dlq redrive`` shows what it would do, re-drives, and the messages are delivered;
a second run sends nothing. (Not a 401: egress holds a client whose credentials the DIP refuses
for ``egress.hold_budget_seconds`` before dead-lettering.)"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from gateway.cli import main
from gateway.config import GatewayConfig, KafkaSettings, load_config, parse_config
from gateway.egress.envelope import RecordRef
from gateway.egress.reasons import DeadLetterReason
from gateway.egress.records import dead_letter
from gateway.kafka.clients import common_kwargs, create_producer
from gateway.kafka.topics import ensure_topics, gateway_topics
from tests.gateway_process import GatewayProcess
from tests.ingress_fixtures import consume
from tests.kafka_fixtures import KafkaUnderTest
from tests.sim_checks import stored_references, until_stored
from tests.test_egress_e2e import _collect, _gateway_config, _payload, _produce, _simulator, _sur

pytestmark = pytest.mark.timeout(300)

STALE = 6  # client 1's messages refused while its DIP ID is not effective


def _not_effective_yet(config: GatewayConfig, pki: Path) -> GatewayConfig:
    """Client 1's only DIP ID effective from next month (a typo in the onboarding date)."""
    data = config.model_dump(mode="json")
    later = date.today() + timedelta(days=31)
    data["clients"][0]["dip_ids"][0]["effective_from"] = later.isoformat()
    return parse_config(data, base_dir=pki)


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    """``dcp-gateway`` as an operator runs it (its own event loop, in a thread)."""
    code = await asyncio.to_thread(main, list(argv))
    return code, capsys.readouterr().out.splitlines()


async def _end_offsets(settings: KafkaSettings, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(**common_kwargs(settings), group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(parts)).items()}
    finally:
        await consumer.stop()


async def _cleanup_policy(settings: KafkaSettings, topic: str) -> str:
    admin = AIOKafkaAdminClient(**common_kwargs(settings))
    await admin.start()
    try:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
        # (error, message, type, name, entries); an entry starts with its name and value
        # (the field names differ between protocol versions).
        entries = response.resources[0][4]
        return str(next(e[1] for e in entries if e[0] == "cleanup.policy"))
    finally:
        await admin.close()


def _row(lines: list[str], reason_class: str) -> list[int]:
    """The counts of a summary row: re-drive, already re-driven, refused, no target."""
    (line,) = [line for line in lines if line.startswith(reason_class + " ")]
    return [int(cell) for cell in line.split()[1:5]]


async def test_dead_letters_of_a_config_mistake_are_delivered_after_the_fix_and_only_once(
    dev_pki: Path, kafka: KafkaUnderTest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with _simulator(dev_pki) as sim:
        fixed = _gateway_config(dev_pki, kafka, sim)
        log_topic = f"redrives-{uuid.uuid4().hex[:8]}"  # the broker may be shared
        fixed = fixed.model_copy(
            update={"kafka": fixed.kafka.model_copy(update={"redrive_log_topic": log_topic})}
        )
        broken = _not_effective_yet(fixed, dev_pki)
        kafka_settings = fixed.kafka
        await ensure_topics(kafka_settings, gateway_topics(fixed))
        topic = kafka_settings.outbound_topics[0]
        client_1 = fixed.clients[0]
        stale = [(f"mpan-{seq % 3}".encode(), _payload(1, seq)) for seq in range(STALE)]
        fine = [(b"mpan-9", _payload(2, seq)) for seq in range(3)]
        await _produce(fixed, [(topic, k, orjson.dumps(p)) for k, p in [*stale, *fine]])

        # 1. The wrong date: client 1's messages are dead-lettered, client 2's delivered.
        gateway = GatewayProcess(broken, tmp_path, "broken")
        try:
            await gateway.start()
            first = await _collect(broken, len(stale) + len(fine))
            assert await gateway.terminate() == 0, gateway.tail()
        finally:
            gateway.ensure_stopped()
        assert first.result_refs() == Counter(_sur(p) for _, p in fine)
        classes = Counter(o.headers["dcpgw-reason-class"] for o in first.dead)
        assert classes == {b"not_effective": STALE}
        assert {o.topic for o in first.dead} == {client_1.topics.dead_letter}
        assert not stored_references(sim) & {_sur(p) for _, p in stale}

        # 2. The date fixed, the gateway restarted: it carries on from its committed offsets.
        gateway = GatewayProcess(fixed, tmp_path, "fixed")
        try:
            await gateway.start()
            config_file = str(gateway.config_file)
            dlq = ("dlq", "redrive", "--config", config_file, "--client", client_1.name)
            before = await _end_offsets(kafka_settings, topic)

            # 3. A dry run says what it would do and sends nothing.
            code, lines = await _cli(capsys, *dlq)
            assert code == 0
            assert _row(lines, "not_effective") == [STALE, 0, 0, 0]
            assert lines[-1] == f"dry run: nothing sent; --execute re-drives {STALE}"
            assert await _end_offsets(kafka_settings, topic) == before

            # 4. The re-drive: every not_effective dead letter delivered, once.
            code, lines = await _cli(capsys, *dlq, "--execute")
            assert code == 0
            assert lines[-1].startswith(f"re-drove {STALE} of {STALE} ")
            await until_stored(sim, {_sur(p) for _, p in stale}, seconds=90, running=[gateway])
            outcomes = await _collect(fixed, len(stale) + len(fine) + STALE)
            assert outcomes.result_refs() == Counter(_sur(p) for _, p in [*stale, *fine])
            assert len(outcomes.dead) == STALE  # no new dead letter

            # 5. A second identical run finds them in the log and sends nothing.
            after = await _end_offsets(kafka_settings, topic)
            code, lines = await _cli(capsys, *dlq, "--execute")
            assert code == 0
            assert _row(lines, "not_effective") == [0, STALE, 0, 0]
            assert lines[-1] == f"re-drove 0 of {STALE}: nothing to send"
            assert await _end_offsets(kafka_settings, topic) == after
            code, lines = await _cli(
                capsys, "dlq", "list", *dlq[2:], "--reason-class", "not_effective"
            )
            assert code == 0
            assert sum("[already re-driven]" in line for line in lines) == STALE
            code, lines = await _cli(capsys, "dlq", "list", *dlq[2:], "--limit", "2")
            assert code == 0 and sum(" [" in line for line in lines) == 2
            assert _row(lines, "not_effective") == [0, STALE, 0, 0]  # the summary counts all
            assert await gateway.terminate() == 0, gateway.tail()
        finally:
            gateway.ensure_stopped()

    # The re-driven records: original key and value, where they came from, counted once.
    produced = await consume(kafka_settings, topic, len(stale) + len(fine) + STALE, seconds=60)
    redriven = [r for r in produced if any(k.startswith("dcpgw-") for k, _ in r.headers)]
    assert len(redriven) == STALE
    originals = {orjson.dumps(p): key for key, p in stale}
    for record in redriven:
        headers = dict(record.headers)
        assert originals[record.value] == record.key
        assert headers["dcpgw-redrive-count"] == b"1"
        assert headers["dcpgw-redriven-from"].startswith(client_1.topics.dead_letter.encode())
        assert "dcpgw-reason" not in headers
    # Each key kept its order: mpan-0's re-driven records in production order.
    keyed = [orjson.loads(r.value)["CommonBlock"]["S1"]["senderUniqueReference"] for r in redriven]
    for key in (b"mpan-0", b"mpan-1", b"mpan-2"):
        expected = [_sur(p) for k, p in stale if k == key]
        assert [s for s in keyed if s in expected] == expected
    log = await consume(kafka_settings, kafka_settings.redrive_log_topic, STALE, seconds=60)
    assert {orjson.loads(r.value)["reasonClass"] for r in log} == {"not_effective"}
    assert await _cleanup_policy(kafka_settings, kafka_settings.redrive_log_topic) == "compact"


def _plain_config(pki: Path, kafka: KafkaUnderTest, folder: Path, **overrides: Any) -> Path:
    """The dev PKI's configuration on this broker with fresh topic names, as a file."""
    tag = uuid.uuid4().hex[:8]
    data = yaml.safe_load((pki / "gateway.yaml").read_text())
    data["ingress"] = {"enabled": False}
    data["kafka"] = kafka.settings(
        outbound_topics=[f"out-{tag}"],
        dead_letter_topic=f"dlq-{tag}",
        redrive_log_topic=f"redrives-{tag}",
        **overrides,
    ).model_dump(mode="json")
    config = parse_config(data, base_dir=pki)
    path = folder / f"gateway-{tag}.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path


async def test_forced_and_repeated_redrives_are_counted_and_logged_and_need_a_log_topic(
    dev_pki: Path, kafka: KafkaUnderTest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On the gateway-wide dead-letter topic: an unreadable record is refused unless forced; a
    run whose log topic is missing (and may not be created) sends nothing; ``--again`` re-sends
    and counts on."""
    no_create = _plain_config(dev_pki, kafka, tmp_path, create_topics=False)
    config = load_config(no_create)
    settings = config.kafka
    topic, dlq = settings.outbound_topics[0], settings.dead_letter_topic
    await ensure_topics(settings, [topic, dlq])
    unknown_sender = orjson.dumps(_payload(1, 1) | {"note": "onboarded since"})
    letters = [
        dead_letter(
            dlq,
            RecordRef(topic, 0, 10, b"k-1", b"{not json"),
            "malformed JSON",
            0,
            None,
            None,
            None,
            DeadLetterReason.ENVELOPE,
        ),
        dead_letter(
            dlq,
            RecordRef(topic, 0, 11, b"k-2", unknown_sender),
            "unknown sender",
            0,
            None,
            "1400010001",
            "IF-043",
            DeadLetterReason.ROUTING,
        ),
    ]
    producer = create_producer(settings)
    await producer.start()
    try:
        for letter in letters:
            await producer.send_and_wait(dlq, letter.value, key=letter.key, headers=letter.headers)
    finally:
        await producer.stop()
    dlq_args = ("--config", str(no_create), "--unrouted")

    code, lines = await _cli(capsys, "dlq", "redrive", *dlq_args)
    assert code == 0
    assert _row(lines, "envelope") == [0, 0, 1, 0] and _row(lines, "routing") == [1, 0, 0, 0]

    # No log topic, and kafka.create_topics off: nothing is sent.
    code = await asyncio.to_thread(main, ["dlq", "redrive", *dlq_args, "--execute"])
    err = capsys.readouterr().err
    assert code == 2 and "kafka.redrive_log_topic" in err and "cleanup.policy=compact" in err
    assert sum((await _end_offsets(settings, topic)).values()) == 0

    await ensure_topics(
        settings, [settings.redrive_log_topic], configs={"cleanup.policy": "compact"}
    )
    code, lines = await _cli(capsys, "dlq", "redrive", *dlq_args, "--execute")
    assert code == 0 and lines[-1].startswith("re-drove 1 of 2 ")
    code, lines = await _cli(capsys, "dlq", "redrive", *dlq_args, "--execute", "--force")
    assert code == 0 and lines[-1].startswith("re-drove 1 of 2 ")  # routing: already done
    assert _row(lines, "routing") == [0, 1, 0, 0]
    again = ("--execute", "--again", "--reason-class", "routing")
    code, lines = await _cli(capsys, "dlq", "redrive", *dlq_args, *again)
    assert code == 0 and lines[-1].startswith("re-drove 1 of 1 ")

    produced = await consume(settings, topic, 3, seconds=60)
    sent = [(r.key, r.value, dict(r.headers)["dcpgw-redrive-count"]) for r in produced]
    assert sorted(sent) == sorted(
        [
            (b"k-1", b"{not json", b"1"),
            (b"k-2", unknown_sender, b"1"),
            (b"k-2", unknown_sender, b"2"),
        ]
    )
    logged = await consume(settings, settings.redrive_log_topic, 3, seconds=60)
    log = [orjson.loads(r.value) for r in logged]
    assert sorted((e["reasonClass"], e["redriveCount"], e["forced"]) for e in log) == [
        ("envelope", 1, True),
        ("routing", 1, False),
        ("routing", 2, False),
    ]
    assert len({e["run"] for e in log}) == 3

    code = await asyncio.to_thread(
        main, ["dlq", "list", "--config", str(no_create), "--client", "x"]
    )
    assert code == 2 and "no client 'x'" in capsys.readouterr().err
