"""The load-test tool's bookkeeping without a run: the per-record ledger, the headline figures,
the charts' latency points and ``--kafka-config``. The whole tool runs in test_loadtest.py."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.cli import CliError
from gateway.cli.loadtest_command import kafka_connection
from gateway.loadtest.charts import _p99_under_load
from gateway.loadtest.egress import Outcomes, _settle_dead, _settle_result, wait_settled
from gateway.loadtest.report import headline, summary, targets
from gateway.loadtest.scenarios import EgressPhase, custom

REPO = Path(__file__).resolve().parent.parent


def _result(partition: int, offset: int, topic: str = "out") -> bytes:
    """A result record acknowledged 100 ms after 2026-12-08T01:00:00Z."""
    source = {"topic": topic, "partition": partition, "offset": offset}
    acked = "2026-12-08T01:00:00.100000+00:00"
    return orjson.dumps({"source": source, "dipStatus": 201, "acknowledgedAt": acked})


def test_warm_up_records_are_settled_apart_and_never_timed() -> None:
    out = Outcomes(topic="out")
    sent_ms = 1_796_691_600_000.0  # 2026-12-08T01:00:00Z
    for offset in range(3):
        out.ledger.sent(0, offset, sent_ms, warm=True)
    for offset in range(3, 8):
        out.ledger.sent(0, offset, sent_ms)
    # a measured record's result, a warm-up record's result arriving late, a dead letter
    assert _settle_result(out, _result(0, 3), 0)
    assert not _settle_result(out, _result(0, 1), 0)
    source = [("dcpgw-source-topic", b"out"), ("dcpgw-source-partition", b"0")]
    assert _settle_dead(out, [*source, ("dcpgw-source-offset", b"4")])
    assert not _settle_result(out, _result(0, 3), 0)  # again: a duplicate
    assert not _settle_result(out, _result(1, 0), 0)  # not ours
    # the same partition and offset in another topic (a retry topic's copy) is not ours
    assert not _settle_result(out, _result(0, 5, "retry"), 0)
    assert not _settle_dead(
        out, [("dcpgw-source-topic", b"retry"), *source[1:], ("dcpgw-source-offset", b"6")]
    )

    assert out.ledger.measured.as_json() == {
        "produced": 5,
        "delivered": 1,
        "dead_lettered": 1,
        "missing": 3,
    }
    assert out.ledger.warm_up.as_json() == {
        "produced": 3,
        "delivered": 1,
        "dead_lettered": 0,
        "missing": 2,
    }
    assert out.ledger.missing == 5 and out.ledger.produced == 8
    assert (out.ledger.duplicates, out.ledger.unknown) == (1, 3)
    assert sum(out.statuses.values()) == 2  # the measured two only
    assert out.ack_latency.summary_ms()["count"] == 1
    assert out.ack_latency.summary_ms()["max"] == pytest.approx(100.0, abs=1.0)


class _Reader:
    """An outcome reader with nothing to read (what a phase with no records has)."""

    def __init__(self) -> None:
        self.out = Outcomes()
        self.reads = 0

    async def settle(self) -> None:
        self.reads += 1


def test_waiting_for_a_phase_that_produced_nothing_ends() -> None:
    reader = _Reader()

    async def final() -> float:
        return 0.0

    async def wait() -> None:
        await asyncio.wait_for(wait_settled(reader, final, 30.0), 5)  # type: ignore[arg-type]

    asyncio.run(wait())
    assert reader.reads == 1


def _phase(label: str, rate: float, preloaded: bool, **extra: Any) -> dict[str, Any]:
    latency = {"p50": 1.0, "p95": 2.0, "p99": 3.0, "max": 4.0, "count": 10}
    if preloaded:
        latency = {k: v * 1000 for k, v in latency.items()}
    return {
        "kind": "egress",
        "label": label,
        "batch": 500 if preloaded else 1,
        "messages_per_second": rate,
        "signatures_per_second": rate / (500 if preloaded else 1),
        "preloaded": preloaded,
        "backlog": preloaded,
        "dip_latency_ms": 0.0,
        "offered_rate": None,
        "produced": 10,
        "delivered": 10,
        "dead_lettered": 0,
        "missing": 0,
        "peak_rss_bytes": 1,
        "latency_ms": latency,
        **extra,
    }


def test_headline_latency_comes_from_a_live_phase_and_missing_counts_warm_ups() -> None:
    doc = {
        "phases": [
            _phase("batched", 20_000.0, True),
            _phase("batch 1", 500.0, False, warmup={"missing": 2}, round_trip={"missing": 1}),
        ],
        "raw_signing": {"signatures_per_second_n": 1000.0, "signatures_per_second_1": 600.0},
    }
    top = headline(doc)
    assert top["headline_phase"] == "batched" and top["messages_per_second"] == 20_000.0
    assert top["latency_phase"] == "batch 1" and top["latency_ms"]["p99"] == 3.0
    assert top["missing"] == 3
    assert top["signatures_vs_raw"] == {"batched": 0.04, "batch 1": 0.5}


def test_the_summary_says_which_phase_failed() -> None:
    doc = {"phases": [], "failed": {"phase": "batch 500", "error": "RuntimeError: gone"}}
    result = {
        **headline(doc),
        "targets": [],
        **doc,
        "scenario": "batch",
        "description": "d",
        "command": "dcp-gateway loadtest",
        "broker": "b",
        "simulator": "s",
        "machine": {"load_average": [0.0, 0.0, 0.0]},
        "versions": {},
        "charts": [],
    }
    assert "phase batch 500 failed: RuntimeError: gone" in summary(result)


def test_batch_chart_has_no_latency_under_load_for_a_backlog() -> None:
    live, backlog = _phase("batch 1", 500.0, False), _phase("batch 500", 1.0, True)
    assert _p99_under_load(None, live) == 3.0
    assert math.isnan(_p99_under_load(None, backlog))
    assert _p99_under_load(live, backlog) == 3.0  # the half-of-max phase, when there is one


def test_kafka_config_takes_connection_settings_and_resolves_their_paths(tmp_path: Path) -> None:
    given = tmp_path / "kafka.yaml"
    given.write_text("security_protocol: SSL\nssl_ca_file: certs/ca.pem\nclient_id: lt\n")
    assert kafka_connection(given) == {
        "security_protocol": "SSL",
        "ssl_ca_file": str((tmp_path / "certs" / "ca.pem").resolve()),
        "client_id": "lt",
    }
    given.write_text("security_protocol: SSL\noutbound_topics: [x]\n")
    with pytest.raises(CliError, match="outbound_topics cannot be set here"):
        kafka_connection(given)
    given.write_text("- SSL\n")
    with pytest.raises(CliError, match="expected a mapping"):
        kafka_connection(given)


def test_cli_refuses_a_phase_of_no_messages(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "loadtest", "--output", str(tmp_path), "--messages", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 2
    assert "--messages: 0 must be at least 1" in done.stderr


def test_batch_1_cpu_is_set_against_a_lone_signature_and_one_made_on_every_cpu() -> None:
    doc = {
        "phases": [_phase("batch 1", 500.0, False, gateway_cpu_us_per_message=2200.0)],
        "raw_signing": {"cpu_ms_per_signature_1": 1.6, "cpu_ms_per_signature_n": 2.0},
    }
    rows = {t["target"]: t for t in targets(doc)}
    lone = rows["batch 1: gateway CPU/msg / raw signature CPU (1 thread)"]
    every = rows["batch 1: gateway CPU/msg / raw signature CPU (all CPUs, for context)"]
    assert lone["value"] == pytest.approx(1.375) and lone["met"] is False
    assert every["value"] == pytest.approx(1.1) and every["met"] is None


def test_a_custom_scenario_is_one_phase_as_described() -> None:
    scenario = custom(
        2000, batch=50, clients=3, rate=750.0, interfaces=("IF-043",), dip_latency_ms=20
    )
    (phase,) = scenario.phases
    assert isinstance(phase, EgressPhase)
    assert (phase.messages, phase.batch, phase.clients, phase.rate) == (2000, 50, 3, 750.0)
    assert (phase.interfaces, phase.dip_latency_ms) == (("IF-043",), 20)
    assert phase.label == "batch 50, 3 clients, 750 msgs/s, DIP +20 ms"
    assert scenario.clients == 3  # the dev PKI is made with as many
    for bad, match in (
        ({"rate": 0.0}, "--rate 0 must be above 0"),
        ({"rate": math.nan}, "must be above 0"),
        ({"batch": 20_000}, "--batch 20000 must be 1 to 10,000"),
        ({"clients": 0}, "--clients 0 must be at least 1"),
        ({"dip_latency_ms": math.inf}, "--dip-latency-ms inf must be 0 or more"),
    ):
        with pytest.raises(ValueError, match=match):
            custom(10, **bad)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--rate", "100"], "--rate: only with --scenario custom"),
        (["--scenario", "custom", "--interfaces", "IF-999"], "the load test generates"),
        (["--scenario", "custom", "--rate", "-5"], "--scenario custom: --rate -5 must be above 0"),
    ],
)
def test_cli_names_the_custom_option_that_is_wrong(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    command = [sys.executable, "-m", "gateway", "loadtest", "--output", str(tmp_path), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode != 0
    assert expected in done.stderr


def test_the_headline_latency_is_of_the_phase_at_half_of_max_else_one_that_kept_up() -> None:
    backlog = _phase("batch 500", 20_000.0, True)
    flat = _phase("batch 1", 700.0, False)
    behind = _phase("sweep 120%", 9_000.0, False, offered_rate=12_000.0)
    kept_up = _phase("sweep 25%", 3_990.0, False, offered_rate=4_000.0)
    half = _phase("half of max", 350.0, False, offered_rate=350.0, rate_of_max=0.5)
    pick = [backlog, flat, behind, kept_up, half]
    assert headline({"phases": pick})["latency_phase"] == "half of max"
    assert headline({"phases": pick[:4]})["latency_phase"] == "sweep 25%"
    assert headline({"phases": pick[:2]})["latency_phase"] == "batch 1"
    only = headline({"phases": [backlog]})
    assert only["latency_phase"] == "batch 500" and only["latency_is_backlog_wait"]
