"""Poison-record isolation (gateway/egress/poison.py): the failure counts kept in the committed
offset's metadata, and, end to end with the gateway as its own process on real Kafka, a record
that makes every run fail is dead-lettered after ``egress.poison_crash_limit`` failures while
every other client's messages go through."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from dipsim import Simulator
from gateway.dip import DipClient, MemoryTransport, TransportRequest, TransportResponse
from gateway.egress import EgressService
from gateway.egress import poison as poison_module
from gateway.egress import service as service_module
from gateway.egress.offsets import OffsetTracker
from gateway.egress.poison import (
    TEST_POISON_VARIABLE,
    PoisonGuard,
    Verdict,
    format_metadata,
    parse_metadata,
)
from gateway.kafka.clients import common_kwargs, create_consumer
from gateway.kafka.topics import ensure_topics, gateway_topics
from gateway.keys import build_keystore
from gateway.signing.pki import DevPkiOptions, create_dev_pki
from tests.gateway_process import GatewayProcess
from tests.kafka_fixtures import KafkaUnderTest
from tests.sim_checks import assert_in_order_per_key, until_stored
from tests.test_egress_e2e import (
    _collect,
    _committed,
    _gateway_config,
    _payload,
    _produce,
    _simulator,
    _sur,
)

TP = ("out", 3)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("poison-pki")
    create_dev_pki(folder, DevPkiOptions(clients=2, bits=2048))
    return folder


def _restarted(guard: PoisonGuard, position: int) -> PoisonGuard:
    """What the next process reads back from the metadata committed at ``position``."""
    again = PoisonGuard(guard.limit)
    again.load(TP, guard.metadata(TP, position))
    return again


def test_a_record_is_suspect_after_a_failure_and_poison_at_the_limit() -> None:
    guard = PoisonGuard(limit=3)
    assert guard.verdict(TP, 10) is Verdict.CLEAN
    guard.failed([(TP, 10), (TP, 11)], "KeyError('a bug')")
    assert guard.take_dirty() == {TP}
    assert guard.take_dirty() == set()
    guard = _restarted(guard, 10)
    assert [guard.verdict(TP, o) for o in (9, 10, 11, 12)] == [
        Verdict.CLEAN,
        Verdict.SUSPECT,
        Verdict.SUSPECT,
        Verdict.CLEAN,
    ]
    guard.failed([(TP, 11)], "KeyError('a bug')")  # 10 went through alone; 11 failed alone
    guard = _restarted(guard, 11)
    assert guard.verdict(TP, 11) is Verdict.SUSPECT
    guard.failed([(TP, 11)], "KeyError('the bug')")
    guard = _restarted(guard, 11)
    assert guard.verdict(TP, 11) is Verdict.POISON
    assert guard.reason(TP, 11) == (
        "egress failed 3 times with this record in the batch (internal error; "
        "last: KeyError('the bug')); not sent again"
    )
    # The first commit past it drops the count: nothing is left to carry.
    assert guard.metadata(TP, 12) == ""
    assert guard.verdict(TP, 11) is Verdict.CLEAN


def test_counts_are_per_partition_and_dropped_on_revoke() -> None:
    guard = PoisonGuard(limit=1)
    guard.failed([(TP, 5)], "boom")
    assert guard.verdict(("out", 4), 5) is Verdict.CLEAN
    assert guard.verdict(TP, 5) is Verdict.POISON
    assert guard.take_dirty() == {TP}
    guard.forget([TP])
    assert guard.verdict(TP, 5) is Verdict.CLEAN


def test_a_failure_counted_while_a_commit_is_in_flight_stays_to_be_committed() -> None:
    """A commit takes the changed partitions and builds their metadata before it awaits Kafka;
    a batch that fails in that await must still have its count written by the next commit
    (a lost count lets a poison record crash the gateway once more per loss)."""
    guard = PoisonGuard(limit=2)
    guard.failed([(TP, 5)], "first")
    taken = guard.take_dirty()
    in_flight = guard.metadata(TP, 5)  # what the commit in flight carries
    guard.failed([(TP, 5), (TP, 6)], "second")  # counted during its await
    assert taken == {TP} and parse_metadata(in_flight).failures == {5: 1}
    assert guard.take_dirty() == {TP}
    assert parse_metadata(guard.metadata(TP, 5)).failures == {5: 2, 6: 1}


def test_counts_a_failed_commit_did_not_write_are_given_back() -> None:
    guard = PoisonGuard(limit=2)
    guard.failed([(TP, 5)], "boom")
    taken = guard.take_dirty()
    guard.not_committed(taken)
    assert guard.take_dirty() == {TP}


def test_foreign_or_damaged_metadata_reads_as_no_suspects() -> None:
    guard = PoisonGuard(limit=1)
    for metadata in (None, "", "someone else's", "dcpgw-suspects/1 x:y,-1:2,7:0 | e"):
        guard.load(TP, metadata)
        assert guard.verdict(TP, 7) is Verdict.CLEAN, metadata


def test_the_metadata_stays_under_kafkas_default_limit_keeping_the_lowest_offsets() -> None:
    guard = PoisonGuard(limit=2)
    guard.failed([(TP, o) for o in range(1_000_000, 1_002_000)], "x" * 10_000)
    metadata = guard.metadata(TP, 0)
    assert len(metadata.encode()) <= 4096
    suspects = parse_metadata(metadata)
    assert min(suspects.failures) == 1_000_000
    assert len(suspects.error) == 300
    assert format_metadata(suspects) == metadata


def test_new_counts_are_committed_where_a_restart_resumes_even_if_nothing_moved() -> None:
    """The failed batch's partition may have nothing final: its counts still go out, with the
    first offset consumed in this assignment (what a restart would read from anyway)."""
    tracker = OffsetTracker()
    generation = tracker.track(TP, 10)
    tracker.track(TP, 11)
    assert tracker.committable() == {} and tracker.resume_position(TP) == 10
    tracker.finish(TP, 10, generation)
    assert tracker.resume_position(TP) == 11
    assert tracker.resume_position(("other", 0)) is None


async def test_a_failure_during_a_commit_in_flight_is_committed_by_the_next(
    pki: Path, kafka: KafkaUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race that lost a count: a batch finishes and its commit goes out; while Kafka has
    it, the poison's batch fails. The poison's count must reach the committed metadata, or the
    restarted gateway sends the poison again and fails once more than the limit says.

    In-process, so the order is forced: the DIP answers the poison's batch only once the first
    commit is in flight, and that commit reaches Kafka only after the failure is counted."""
    committing, failed = asyncio.Event(), asyncio.Event()
    config = _gateway_config(
        pki, kafka, cast(Simulator, SimpleNamespace(base_url="https://127.0.0.1:9")), linger_ms=0
    )
    await ensure_topics(config.kafka, gateway_topics(config))
    topic = config.kafka.outbound_topics[0]
    clean, poison = _payload(2, 0), _payload(1, 1)  # two senders: two batches, one partition
    await _produce(config, [(topic, b"meter-1", orjson.dumps(p)) for p in (clean, poison)])
    monkeypatch.setattr(poison_module, "_TEST_POISON", _sur(poison))

    async def dip(request: TransportRequest) -> TransportResponse:
        if _sur(poison).encode() in request.body:
            await committing.wait()
        return TransportResponse(201, {}, b"")  # no body: every message accepted

    def consumer_with_a_slow_first_commit(*args: Any, **kwargs: Any) -> AIOKafkaConsumer:
        consumer = create_consumer(*args, **kwargs)
        commit = consumer.commit

        async def slow_first_commit(offsets: Any = None) -> None:
            if not committing.is_set():
                committing.set()
                async with asyncio.timeout(60):
                    await failed.wait()
            await commit(offsets)

        consumer.commit = slow_first_commit
        return consumer

    monkeypatch.setattr(service_module, "create_consumer", consumer_with_a_slow_first_commit)
    count = PoisonGuard.failed

    def count_and_tell(guard: PoisonGuard, records: Any, error: str) -> None:
        count(guard, records, error)
        failed.set()

    monkeypatch.setattr(PoisonGuard, "failed", count_and_tell)
    keystore = build_keystore(config)
    async with DipClient(config.dip.base_url, keystore, MemoryTransport(dip)) as client:
        service = EgressService(config, keystore, client)
        with pytest.raises(service_module.EgressFailed, match="TestPoisonError"):
            async with asyncio.timeout(60):
                await service.run(asyncio.Event())
    assert committing.is_set() and failed.is_set()
    admin = AIOKafkaAdminClient(**common_kwargs(config.kafka))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(config.kafka.consumer_group)
    finally:
        await admin.close()
    [committed] = [c for tp, c in offsets.items() if tp.topic == topic]
    assert committed.offset == 1  # past the clean message, at the poison
    assert parse_metadata(committed.metadata).failures == {1: 1}


async def test_a_poison_record_is_dead_lettered_after_the_limit_and_other_clients_flow(
    pki: Path, tmp_path: Path, kafka: KafkaUnderTest
) -> None:
    """Client 1's poison record fails every batch it is in (a test-only hook raises while its
    batch's outcomes are built): the process exits each time, and is started again. After
    ``poison_crash_limit`` (2) failures it is dead-lettered (class ``internal``) and the
    messages behind it on its key follow in order; client 2 is not held back."""
    async with _simulator(pki) as sim:
        config = _gateway_config(
            pki, kafka, sim, max_batch_messages=10, linger_ms=20, poison_crash_limit=2
        )
        await ensure_topics(config.kafka, gateway_topics(config))
        topic = config.kafka.outbound_topics[0]
        sent = [(f"meter-{seq % 6}".encode(), _payload(1 + seq % 2, seq)) for seq in range(40)]
        poison_key, poison = sent[8]
        assert poison_key == b"meter-2"
        await _produce(config, [(topic, key, orjson.dumps(p)) for key, p in sent])
        env = {TEST_POISON_VARIABLE: _sur(poison)}
        for run in (1, 2):
            gateway = GatewayProcess(config, tmp_path, f"gateway-{run}", env)
            try:
                code = await gateway.run_until_exit()
            finally:
                gateway.ensure_stopped()
            assert code != 0, gateway.tail()
            assert "TestPoisonError" in gateway.log.read_text()
        gateway = GatewayProcess(config, tmp_path, "gateway-3", env)
        try:
            await gateway.start()
            good = {_sur(p) for _, p in sent} - {_sur(poison)}
            await until_stored(sim, good, running=[gateway])
            outcomes = await _collect(config, len(good) + 1)
            assert await gateway.readyz() == 200  # it did not fail again
            dead_lettered = await gateway.metric("dcpgw_egress_messages_dead_lettered")
            await gateway.terminate()
        finally:
            gateway.ensure_stopped()
        committed = await _committed(config)
    assert set(outcomes.result_refs()) == good
    [dead] = outcomes.dead
    assert dead.topic == config.clients[0].topics.dead_letter
    assert dead.headers["dcpgw-reason-class"] == b"internal"
    assert dead.reason.startswith("egress failed 2 times with this record in the batch")
    assert "TestPoisonError" in dead.reason
    assert orjson.loads(dead.value or b"") == poison and dead.key == poison_key
    assert dead_lettered == 1
    assert_in_order_per_key(sim, [(k, _sur(p)) for k, p in sent if p is not poison])
    assert sum(c or 0 for c in committed.values()) == len(sent)
    assert Counter(k for k, _ in sent)[poison_key] > 1  # messages behind it on its key went
