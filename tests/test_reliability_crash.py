"""Crash and restart loop: while messages for five clients flow end to end, the gateway
process is killed (SIGKILL) or stopped (SIGTERM) at random points and started again.

Counted at the end: every message accepted by the DIP simulator or dead-lettered with a reason,
nothing missing, per-key order at the DIP, and how many reached the DIP twice against how many
were in flight at each crash. ``DCP_GATEWAY_RELIABILITY_REPORT=FILE`` appends each run's figures
(JSON lines) for ``docs/reliability.md``. The long variants are marked ``slow``:
``pytest -m slow tests/test_reliability_crash.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

import orjson
import pytest

from gateway.kafka.topics import ensure_topics, gateway_topics
from gateway.signing.pki import DevPkiOptions, create_dev_pki
from tests.gateway_process import GatewayProcess
from tests.kafka_fixtures import KafkaUnderTest
from tests.sim_checks import assert_in_order_per_key, until_stored
from tests.test_egress_e2e import _collect, _gateway_config, _payload, _produce, _simulator, _sur

pytestmark = pytest.mark.timeout(900)

CLIENTS = 5


@pytest.fixture(scope="module")
def pki5(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("crash-pki")
    create_dev_pki(folder, DevPkiOptions(clients=CLIENTS, bits=2048))
    yield folder


@dataclass
class CrashRun:
    """One run's figures (a row of the table in docs/reliability.md)."""

    signal: str
    static_membership: bool
    messages: int
    bad: int
    crashes: int
    delivered: int = 0
    dead_lettered: int = 0
    dead_letters_written: int = 0  # a bad record re-read after a crash is dead-lettered again
    delivered_earlier: int = 0  # results flagged: the DIP refused a re-send as a duplicate
    duplicates_at_dip: int = 0
    in_flight_at_crashes: list[int] = field(default_factory=list)
    takeover_seconds: list[float] = field(default_factory=list)  # crash -> partitions assigned
    resumed_after_seconds: list[float] = field(default_factory=list)  # crash -> DIP gets more
    lost: int = 0


def _messages(count: int, bad_every: int) -> list[tuple[bytes, bytes, str, bool]]:
    """(key, value, reference, good): MPAN-like keys shared across clients, one in
    ``bad_every`` unreadable (dead-lettered by egress before any DIP request)."""
    out = []
    for seq in range(count):
        payload = _payload(1 + seq % CLIENTS, seq)
        ref = _sur(payload)
        key = f"{1900000000000 + seq % 400:013d}".encode()
        good = seq % bad_every != bad_every - 1
        value = orjson.dumps(payload) if good else orjson.dumps(payload)[:-7]  # truncated
        out.append((key, value, ref, good))
    return out


async def _crash_loop(
    pki: Path,
    kafka: KafkaUnderTest,
    tmp_path: Path,
    *,
    messages: int,
    crashes: int,
    how: Literal["SIGKILL", "SIGTERM"],
    static: bool = True,
) -> tuple[CrashRun, list[str]]:
    rng = random.Random(20261207)
    run = CrashRun(how, static, messages, messages // 50, crashes)
    records = _messages(messages, 50)
    good = {ref for _, _, ref, ok in records if ok}
    async with _simulator(pki, latency_ms=150) as sim:  # the DIP answers in ~150 ms
        config = _gateway_config(pki, kafka, sim, max_batch_messages=50, linger_ms=20)
        if static:
            kafka_settings = config.kafka.model_copy(update={"group_instance_id": "gateway-0"})
            config = config.model_copy(update={"kafka": kafka_settings})
        topic = config.kafka.outbound_topics[0]
        await ensure_topics(config.kafka, [topic], partitions=6)
        await ensure_topics(config.kafka, gateway_topics(config))

        async def produce_steadily() -> None:
            """Spread over about as long as the crashes take, so each lands mid-stream."""
            chunks = range(0, messages, 100)
            pause = crashes * 3.0 / len(chunks)
            for start in chunks:
                chunk = records[start : start + 100]
                await _produce(config, [(topic, k, v) for k, v, _, _ in chunk])
                await asyncio.sleep(pause)

        gateway = GatewayProcess(config, tmp_path, "gateway")
        try:
            await gateway.start()
            producing = asyncio.create_task(produce_steadily())
            for _ in range(crashes):
                await asyncio.sleep(rng.uniform(0.5, 2.5))
                run.in_flight_at_crashes.append(
                    int(await gateway.metric("dcpgw_egress_in_flight_messages"))
                )
                stored = len(sim.state.messages)
                crashed_at = time.time()
                code = await (gateway.kill() if how == "SIGKILL" else gateway.terminate())
                assert code == (-9 if how == "SIGKILL" else 0), gateway.tail()
                await gateway.start()
                async with asyncio.timeout(120):
                    while len(sim.state.messages) == stored < len(good):  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                run.resumed_after_seconds.append(round(time.time() - crashed_at, 2))
                assigned = _last_assignment(gateway.log)
                if assigned is not None and assigned > crashed_at:
                    run.takeover_seconds.append(round(assigned - crashed_at, 2))
            await producing
            await until_stored(sim, good, seconds=300, running=[gateway])
            outcomes = await _collect(config, messages)
            assert await gateway.terminate() == 0, gateway.tail()
        finally:
            gateway.ensure_stopped()
        run.duplicates_at_dip = sum(sim.state.duplicates.values())

    stored_once = Counter(m.sender_unique_reference for m in sim.state.messages)
    assert max(stored_once.values()) == 1  # the simulator stores a reference once
    run.delivered = len(good & set(stored_once))
    reference_of = {value: ref for _, value, ref, _ in records}  # the original bytes
    dead_refs = Counter(
        ref for o in outcomes.dead if (ref := reference_of.get(o.value or b"")) is not None
    )
    bad = {ref for _, _, ref, ok in records if not ok}
    run.dead_lettered = len(set(dead_refs) & bad)
    run.dead_letters_written = sum(dead_refs.values())
    run.delivered_earlier = sum(
        1 for o in outcomes.results if "dcpgw-delivered-earlier" in o.headers
    )
    run.lost = len((good - set(stored_once)) | (bad - set(dead_refs)))
    assert_in_order_per_key(sim, [(key, ref) for key, _, ref, ok in records if ok])
    unexplained = [o.topic for o in outcomes.dead if not o.reason]  # a dead letter without why
    return run, unexplained


def _last_assignment(log: Path) -> float | None:
    """When the gateway last logged that it was assigned partitions (Unix time)."""
    found = None
    for line in log.read_text(errors="replace").splitlines():
        if '"egress_partitions_assigned"' in line:
            stamp = orjson.loads(line)["timestamp"]
            found = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    return found


def _report(run: CrashRun) -> None:
    target = os.environ.get("DCP_GATEWAY_RELIABILITY_REPORT")
    if target:
        with open(target, "a") as out:
            out.write(json.dumps(asdict(run)) + "\n")


@pytest.mark.parametrize(
    ("how", "static", "messages", "crashes"),
    [
        pytest.param("SIGKILL", True, 3000, 5, id="sigkill-short"),
        pytest.param("SIGTERM", True, 3000, 5, id="sigterm-short"),
        pytest.param("SIGKILL", True, 20_000, 6, id="sigkill-long", marks=pytest.mark.slow),
        pytest.param("SIGTERM", True, 20_000, 6, id="sigterm-long", marks=pytest.mark.slow),
        pytest.param(
            "SIGKILL", False, 20_000, 6, id="sigkill-long-dynamic", marks=pytest.mark.slow
        ),
    ],
)
async def test_crash_and_restart_loop_loses_nothing(
    pki5: Path,
    kafka: KafkaUnderTest,
    tmp_path: Path,
    how: Literal["SIGKILL", "SIGTERM"],
    static: bool,
    messages: int,
    crashes: int,
) -> None:
    run, unexplained = await _crash_loop(
        pki5, kafka, tmp_path, messages=messages, crashes=crashes, how=how, static=static
    )
    _report(run)
    print(asdict(run))
    assert run.lost == 0, run
    assert run.delivered == messages - run.bad
    assert run.dead_lettered == run.bad
    assert not unexplained
    # A re-send the DIP refused is a flagged result, never a failure (a refusal whose result
    # was not written before the next crash is sent, and refused, once more).
    assert 0 < run.delivered_earlier <= run.duplicates_at_dip or run.duplicates_at_dip == 0
    if how == "SIGTERM":
        assert run.duplicates_at_dip == 0, "a graceful stop re-sent messages"
        assert run.dead_letters_written == run.bad
    else:
        assert run.duplicates_at_dip <= sum(run.in_flight_at_crashes)
