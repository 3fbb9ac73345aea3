"""Poison-record isolation (gateway/egress/poison.py): the failure counts kept in the committed
offset's metadata, and, end to end with the gateway as its own process on real Kafka, a record
that makes every run fail is dead-lettered after ``egress.poison_crash_limit`` failures while
every other client's messages go through."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from gateway.egress.offsets import OffsetTracker
from gateway.egress.poison import (
    TEST_POISON_VARIABLE,
    PoisonGuard,
    Verdict,
    format_metadata,
    parse_metadata,
)
from gateway.kafka.topics import ensure_topics, gateway_topics
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
    assert guard.dirty() == {TP}
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
    guard.committed({TP: 5})
    assert guard.dirty() == set()
    guard.forget([TP])
    assert guard.verdict(TP, 5) is Verdict.CLEAN


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
            await until_stored(sim, good)
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
