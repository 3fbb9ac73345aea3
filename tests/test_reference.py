"""docs/reference.md is current, and its record formats name exactly what the code writes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson

from gateway.dlq.letters import Coordinates, DeadLetter
from gateway.dlq.plan import LogEntry, RedriveLog, decide
from gateway.egress.outcomes import MessageResult
from gateway.egress.reasons import DeadLetterReason
from gateway.egress.records import dead_letter, outcome_records
from gateway.egress.sender import Delivery
from gateway.ingress.envelope import Publication, StatusMessage
from gateway.ingress.pipeline import Destination, RoutingTable, plan_deliveries
from gateway.ingress.routes import Route, RouteKind
from gateway.reference import DEFAULT_OUTPUT, render
from tests.test_egress_records import _AT, _prepared

REFERENCE = DEFAULT_OUTPUT


def _section(title: str) -> str:
    text = REFERENCE.read_text(encoding="utf-8")
    start = text.index(f"### {title}")
    end = text.find("\n### ", start + 1)
    return text[start:end]


def _table_names(section: str) -> list[str]:
    return re.findall(r"^\| `([\w-]+)` \|", section, re.M)


def test_the_reference_is_current() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == render(), (
        "docs/reference.md is stale: run python -m gateway.reference"
    )
    done = subprocess.run(
        [sys.executable, "-m", "gateway.reference", "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "reference.md"
    stale.write_text(render().replace("| `linger_ms` |", "| `lingering_ms` |"))
    done = subprocess.run(
        [sys.executable, "-m", "gateway.reference", "--check", "--output", str(stale)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "not current" in done.stderr


def test_the_result_record_fields_are_the_written_ones_in_order() -> None:
    prepared = _prepared(1)
    result = MessageResult(True, "T-1", "MSG0000 - Success")
    (record,) = outcome_records([Delivery(prepared, result, 201, 1, _AT, _AT)])
    written = list(orjson.loads(record.value or b""))
    assert _table_names(_section("Result record")) == written


def test_the_dead_letter_headers_are_the_written_ones() -> None:
    ref = _prepared(1).message.ref
    record = dead_letter(
        "dlq", ref, "why", 2, 400, "1400000001", "IF-021", DeadLetterReason.DIP_REJECTION
    )
    written = [name for name, _ in record.headers or []]
    assert set(_table_names(_section("Dead letter"))) == set(written)
    for reason in DeadLetterReason:
        assert f"- `{reason.value}`:" in _section("Dead letter")


def test_the_redrive_headers_and_log_fields_are_the_written_ones() -> None:
    ref = _prepared(1).message.ref
    record = dead_letter(
        "dlq", ref, "why", 1, 401, "1400000001", "IF-021", DeadLetterReason.DIP_AUTH
    )
    letter = DeadLetter(
        Coordinates("dlq", 0, 7), 0, record.key, record.value, tuple(record.headers or ())
    )
    (decision,) = decide([letter], RedriveLog(), [ref.topic])
    assert decision.record is not None
    written = [name for name, _ in decision.record.headers]
    assert _table_names(_section("Re-driven record")) == written
    entry = LogEntry(
        letter.at, Coordinates(ref.topic, 0, 1), 1, "dip_auth", None, False, "r", _AT, "u"
    )
    assert _table_names(_section("Re-drive log")) == list(orjson.loads(entry.value()))


def _written_headers(kind: RouteKind, message: Publication | StatusMessage) -> list[str]:
    """The header names of the record the gateway produces for ``message``."""
    recipient = "2300000900"
    table = RoutingTable({recipient: Destination("alice", "in", "status")}, "quarantine", "1")
    (delivery,) = plan_deliveries(Route(kind, recipient), [message], table)
    return [name for name, _ in delivery.headers]


def test_the_inbound_headers_are_the_written_ones() -> None:
    publication = Publication(
        index=0,
        interface="IF-021",
        event_code="E",
        schema_version="1",
        transaction_id="T",
        publication_id="P",
        replay=False,
        sender_dip_id="1400000001",
        sender_unique_reference="S",
        correlation_id="C",
        mpan_core="1",
        recipients=frozenset({"2300000900"}),
        payload_json=b"{}",
    )
    written = _written_headers(RouteKind.PUBLICATION, publication)
    assert set(_table_names(_section("Inbound publication"))) == set(written)
    status = StatusMessage(0, "T", "S", "1400000001", "2300000900", "MSG0000", None, b"{}")
    status_section = _section("Inbound status message")
    for name in _written_headers(RouteKind.STATUS, status):
        assert f"`{name}`" in status_section, name
