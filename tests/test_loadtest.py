"""``dcp-gateway loadtest --scenario smoke`` end to end: a gateway process, the simulator, the
test broker; the report must be complete and account for every message. No speed is asserted
(figures are the tool's output, not the test's)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from gateway.config import load_config
from gateway.loadtest.messages import MessageFactory, senders
from gateway.loadtest.scenarios import SCENARIOS, EgressPhase
from gateway.schema import default_registry
from tests.kafka_fixtures import KafkaUnderTest

REPO = Path(__file__).resolve().parent.parent


def _loadtest(kafka: KafkaUnderTest, tmp_path: Path, *args: str) -> dict[str, Any]:
    """``dcp-gateway loadtest ARGS`` against the test broker; its result.json."""
    out = tmp_path / "report"
    command = [
        *(sys.executable, "-m", "gateway", "loadtest", *args),
        *("--output", str(out), "--workdir", str(tmp_path / "work")),
        *("--bits", "2048"),  # a quicker dev PKI; the signing figures are then of 2048-bit keys
        *("--bootstrap-servers", kafka.bootstrap_servers, "--no-progress"),
        *(["--tansu"] if kafka.kind == "tansu" else []),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=240, cwd=REPO, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    return result


def test_smoke_scenario_writes_a_sane_report(kafka: KafkaUnderTest, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = _loadtest(kafka, tmp_path, "--scenario", "smoke")
    smoke = SCENARIOS["smoke"]
    expected = sum(p.messages for p in smoke.egress_phases) + sum(
        getattr(p, "pushes", 0) * getattr(p, "batch", 0)
        for p in smoke.phases
        if not isinstance(p, EgressPhase)
    )
    assert result["produced"] == expected
    assert result["missing"] == 0
    assert result["delivered"] + result["dead_lettered"] == result["produced"]
    assert result["messages_per_second"] > 0
    assert result["raw_signatures_per_second"] > 0
    assert result["peak_rss_bytes"] > 10 * 2**20  # a Python process with its libraries
    latency = result["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    by_label = {p["label"]: p for p in result["phases"]}
    round_trip = by_label["batched, round trip"]["round_trip"]
    assert round_trip["received"] == round_trip["expected"] > 0
    assert by_label["batch 1"]["signatures_per_second"] > 0
    # The gateway's own histograms over the measured window: one message per batch-1 request.
    assert by_label["batch 1"]["stages"]["messages_per_request"] == 1.0
    stages = by_label["batched, round trip"]["stages"]
    assert 1.0 <= stages["messages_per_request"] <= 100
    assert stages["sign_ms"] > 0 and stages["dip_round_trip_ms"] > 0
    assert stages["first_record_age_ms"] > stages["dip_round_trip_ms"]
    assert by_label["ingress"]["push_statuses"] == {"201": 30}
    # Warm-ups are settled apart: the measured counts and the DIP status mix leave them out.
    for phase in result["phases"]:
        if phase["kind"] != "egress":
            continue
        assert sum(phase["dip_status"].values()) == phase["delivered"] + phase["dead_lettered"]
        assert phase["warmup"]["missing"] == 0
        if phase["preloaded"]:
            # A backlog's clock starts at the gateway's first consumed record, not at /readyz.
            assert "first record consumed" in phase["timeline"]
    assert by_label["batch 1"]["warmup"]["produced"] > 0
    # The headline latency is of messages produced while the gateway ran, not of a backlog.
    assert not by_label[result["latency_phase"]]["preloaded"]
    assert result["signatures_vs_raw"]["batch 1"] > 0
    assert result["raw_signing"]["bits"] == 2048
    assert result["baseline"]["statuses"] == {"201": smoke.baseline_messages}
    assert result["gateway_vs_baseline"]["batch 1"] > 0

    charts = result["charts"]
    assert {"latency_cdf.png", "rss_over_time.png", "throughput_vs_batch_size.png"} <= set(charts)
    for chart in charts:
        assert (out / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (out / "summary.md").read_text()
    for needed in (
        "Machine:",
        "Versions:",
        "Command: `dcp-gateway loadtest --scenario smoke",
        "## Where a request's time went",
        "Raw RSA-2048 signing",
        "sig/s / raw",
    ):
        assert needed in summary


def test_a_custom_phase_runs_as_described(kafka: KafkaUnderTest, tmp_path: Path) -> None:
    shape = ("--messages", "400", "--rate", "400", "--batch", "20", "--clients", "2")
    result = _loadtest(
        kafka, tmp_path, "--scenario", "custom", *shape, "--interfaces", "IF-043,IF-044"
    )
    (phase,) = result["phases"]
    assert (phase["batch"], phase["clients"], phase["offered_rate"]) == (20, 2, 400.0)
    assert phase["interfaces"] == ["IF-043", "IF-044"]
    assert (phase["produced"], phase["delivered"], result["missing"]) == (400, 400, 0)
    assert not phase["preloaded"] and phase["warmup"]["produced"] > 0
    assert result["latency_phase"] == phase["label"] == "batch 20, 2 clients, 400 msgs/s"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_cli_imports_the_load_test_package_and_it_never_imports_dipsim() -> None:
    package = REPO / "gateway"
    for path in package.rglob("*.py"):
        inside = path.is_relative_to(package / "loadtest")
        imported = _imports(path)
        if inside:
            assert not any(n == "dipsim" or n.startswith("dipsim.") for n in imported), path
        elif path != package / "cli" / "loadtest_command.py":
            assert not any(n.startswith("gateway.loadtest") for n in imported), path


def test_generated_messages_are_schema_valid_unique_and_keyed_by_mpan(dev_pki: Path) -> None:
    config = load_config(dev_pki / "gateway.yaml", {})
    factory = MessageFactory(config, run_tag=42)
    who = senders(config, 2)
    registry = default_registry()
    messages = [
        m
        for chunk in factory.stream(300, who, ("IF-043", "IF-021", "IF-044"), True, 70)
        for m in chunk
    ]
    assert len(messages) == 300
    references: set[str] = set()
    interfaces: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    keys: set[bytes] = set()
    for key, value in messages:
        payload = orjson.loads(value)
        assert registry.validate(payload) == []
        common = payload["CommonBlock"]
        references.add(common["S1"]["senderUniqueReference"])
        interfaces.add(common["S0"]["interfaceID"])
        assert re.fullmatch(rb"\d{13}", key) and key.decode() == common["M0"]["MPANCore"]
        keys.add(key)
        pairs.add((common["S1"]["senderDIPID"], common["A0"]["primaryRecipients"][0]))
    assert len(references) == len(keys) == 300
    assert interfaces == {"IF-043", "IF-021", "IF-044"}
    # Round trip: each sender writes to the other client, never to itself.
    assert pairs == {(who[0].dip_id, who[1].dip_id), (who[1].dip_id, who[0].dip_id)}
    more = factory.batch(10, who, ("IF-043",), False)
    later = {orjson.loads(v)["CommonBlock"]["S1"]["senderUniqueReference"] for _, v in more}
    assert len(later) == 10 and not references & later
