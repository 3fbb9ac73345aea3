"""The re-drive's pure core: reading dead letters as egress writes them, filters, the per-class
re-send policy, the re-produced record's headers and the re-drive log."""

from __future__ import annotations

import argparse
import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from gateway.cli.dlq_commands import _instant
from gateway.dlq.letters import Coordinates, DeadLetter, Filters, select
from gateway.dlq.plan import (
    Action,
    LogEntry,
    RedriveLog,
    decide,
    redrive_headers,
    summarise,
)
from gateway.dlq.policy import RESEND, resend_policy
from gateway.egress.envelope import RecordRef
from gateway.egress.reasons import DeadLetterReason
from gateway.egress.records import dead_letter
from gateway.schema.samples import sample_payload

OUT = "dip.outbound"
DLQ = "client-1.dead-letter"
_T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def _payload(seq: int) -> dict[str, object]:
    return sample_payload(
        "IF-043", sender_dip_id="1400010001", sender_role="SUP", recipients=["2300000900"], seq=seq
    )


def _reference(payload: dict[str, object]) -> str:
    value = payload["CommonBlock"]["S1"]["senderUniqueReference"]  # type: ignore[index]
    assert isinstance(value, str)
    return value


def _letter(
    offset: int,
    reason_class: DeadLetterReason = DeadLetterReason.DIP_AUTH,
    *,
    value: bytes | None = None,
    source_offset: int | None = None,
    source_topic: str = OUT,
    minutes: int = 0,
    extra: tuple[tuple[str, bytes], ...] = (),
    interface: str | None = "IF-043",
) -> DeadLetter:
    """A dead letter exactly as egress writes it (``records.dead_letter``), read back."""
    value = value if value is not None else orjson.dumps(_payload(offset))
    ref = RecordRef(source_topic, 1, source_offset or 100 + offset, b"mpan-1", value)
    out = dead_letter(DLQ, ref, "why", 3, 401, "1400010001", interface, reason_class)
    headers = (*(out.headers or ()), *extra)
    stamp = int((_T0 + timedelta(minutes=minutes)).timestamp() * 1000)
    return DeadLetter(Coordinates(DLQ, 0, offset), stamp, out.key, out.value, headers)


def test_every_reason_class_has_a_decision_and_bytes_problems_are_refused() -> None:
    assert set(RESEND) == set(DeadLetterReason)
    not_fixable = {r for r, policy in RESEND.items() if not policy.fixable}
    assert not_fixable == {
        DeadLetterReason.ENVELOPE,
        DeadLetterReason.ENVIRONMENT,
        DeadLetterReason.DIP_REJECTION,
        DeadLetterReason.TOO_LARGE,
    }
    assert all(policy.why for policy in RESEND.values())
    assert not resend_policy(None).fixable


def test_coordinates_round_trip_and_reject_malformed_text() -> None:
    at = Coordinates("dip.outbound.v2", 3, 1234)
    assert Coordinates.parse(str(at)) == at
    assert str(at) == "dip.outbound.v2/3/1234"
    for bad in ("", "topic/1", "topic/x/2", "topic/1/-2", "/1"):
        assert Coordinates.parse(bad) is None


def test_a_dead_letter_reads_what_egress_wrote() -> None:
    payload = _payload(7)
    letter = _letter(7, DeadLetterReason.NOT_EFFECTIVE, value=orjson.dumps({"payload": payload}))
    assert letter.reason_class is DeadLetterReason.NOT_EFFECTIVE
    assert letter.reason == "why"
    assert letter.interface == "IF-043"
    assert letter.sender_dip_id == "1400010001"
    assert letter.source == Coordinates(OUT, 1, 107)
    assert letter.redrive_count == 0
    assert letter.sender_unique_reference == _reference(payload)
    assert letter.dead_lettered_at == _T0


def test_references_of_every_shape_and_none_for_unreadable_values() -> None:
    status = {"senderUniqueReference": "S-1", "message": "MSG0000 - Success"}
    assert _letter(1, value=orjson.dumps(status)).sender_unique_reference == "S-1"
    for unreadable in (b"{not json", b"[1, 2]", b'"text"', b'{"CommonBlock": {"S1": 5}}'):
        assert _letter(1, value=unreadable).sender_unique_reference is None
    unknown = _letter(1, extra=(("dcpgw-reason-class", b"from_the_future"),))
    assert unknown.reason_class is None  # the last header of a name wins
    assert unknown.reason_class_label == "from_the_future"


def test_filters_select_by_each_field_and_all_of_them_together() -> None:
    letters = [
        _letter(0, DeadLetterReason.DIP_AUTH, minutes=0),
        _letter(1, DeadLetterReason.SCHEMA, minutes=10),
        _letter(2, DeadLetterReason.DIP_AUTH, minutes=20, interface="IF-044"),
        _letter(3, DeadLetterReason.DIP_AUTH, minutes=30, value=b"{not json"),
    ]

    def offsets(filters: Filters) -> list[int]:
        return [letter.at.offset for letter in select(letters, filters)]

    assert offsets(Filters()) == [0, 1, 2, 3]
    assert offsets(Filters(interfaces=("IF-044",))) == [2]
    assert offsets(Filters(reason_classes=("schema",))) == [1]
    assert offsets(Filters(sender_dip_ids=("9999999999",))) == []
    at = _T0 + timedelta(minutes=10)
    assert offsets(Filters(since=at)) == [1, 2, 3]  # since includes, until excludes
    assert offsets(Filters(until=at)) == [0]
    wanted = _reference(_payload(2))
    assert offsets(Filters(references=(wanted, "other"))) == [2]
    both = Filters(reason_classes=("dip_auth",), since=at, interfaces=("IF-043",))
    assert offsets(both) == [3]


def test_a_fixable_dead_letter_goes_back_with_its_key_value_and_re_drive_headers() -> None:
    trace = ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    letter = _letter(5, extra=(trace,))
    (decision,) = decide([letter], RedriveLog(), [OUT])
    assert decision.action is Action.REDRIVE and not decision.forced
    record = decision.record
    assert record is not None
    assert (record.topic, record.key, record.value) == (OUT, b"mpan-1", letter.value)
    assert record.headers == [
        trace,
        ("dcpgw-redrive-count", b"1"),
        ("dcpgw-redriven-from", f"{DLQ}/0/5".encode()),
    ]
    assert decision.count == 1


def test_a_redriven_record_keeps_counting_from_its_header_or_the_log() -> None:
    # Its own header (a record that was re-driven and carries it into its dead letter).
    carried = _letter(1, extra=(("dcpgw-redrive-count", b"2"),))
    assert dict(redrive_headers(carried, 3))["dcpgw-redrive-count"] == b"3"
    (decision,) = decide([carried], RedriveLog(), [OUT])
    assert decision.count == 3
    # The log: the dead letter's source is where an earlier re-drive put its record.
    log = RedriveLog()
    earlier = LogEntry(
        Coordinates(DLQ, 0, 0), Coordinates(OUT, 1, 500), 1, "dip_auth", None, False, "r", _T0, "u"
    )
    log.add(earlier.key(), earlier.value())
    (again,) = decide([_letter(9, source_offset=500)], log, [OUT])
    assert again.count == 2
    assert dict(again.record.headers if again.record else [])["dcpgw-redrive-count"] == b"2"


def test_classes_a_resend_cannot_fix_are_refused_unless_forced() -> None:
    letters = [_letter(i, r) for i, r in enumerate(DeadLetterReason)]
    not_fixable = {r for r, policy in RESEND.items() if not policy.fixable}
    decisions = decide(letters, RedriveLog(), [OUT])
    refused = {d.letter.reason_class for d in decisions if d.action is Action.REFUSED}
    assert refused == not_fixable
    assert all(d.action is Action.REDRIVE for d in decisions if d.action is not Action.REFUSED)
    assert all("--force" in d.why for d in decisions if d.action is Action.REFUSED)
    forced = decide(letters, RedriveLog(), [OUT], force=True)
    assert all(d.action is Action.REDRIVE for d in forced)
    assert {d.letter.reason_class for d in forced if d.forced} == not_fixable


def test_dead_letters_already_redriven_are_skipped_unless_asked_again() -> None:
    log = RedriveLog()
    entry = LogEntry(
        Coordinates(DLQ, 0, 1), Coordinates(OUT, 2, 9), 1, "dip_auth", "ref", False, "r1", _T0, "u"
    )
    log.add(entry.key(), entry.value())
    letters = [_letter(0), _letter(1)]
    decisions = decide(letters, log, [OUT])
    assert [d.action for d in decisions] == [Action.REDRIVE, Action.ALREADY]
    assert f"{OUT}/2/9" in decisions[1].why
    repeated = decide(letters, log, [OUT], again=True)
    assert [d.action for d in repeated] == [Action.REDRIVE] * 2
    assert [d.count for d in repeated] == [1, 2]  # counts on from its own last re-drive
    # A tombstone forgets the entry; a malformed entry is skipped.
    log.add(entry.key(), None)
    log.add(b"x/0/1", b"{not json")
    log.add(None, entry.value())
    assert [d.action for d in decide(letters, log, [OUT])] == [Action.REDRIVE] * 2


def test_a_record_goes_back_only_to_a_topic_egress_reads_unless_told_where() -> None:
    letter = _letter(0, source_topic="old.outbound")
    (decision,) = decide([letter], RedriveLog(), [OUT])
    assert decision.action is Action.NO_TARGET and "old.outbound" in decision.why
    (moved,) = decide([letter], RedriveLog(), [OUT], to=OUT)
    assert moved.action is Action.REDRIVE and moved.record is not None
    assert moved.record.topic == OUT
    headless = DeadLetter(Coordinates(DLQ, 0, 3), -1, None, b"x", ())
    (none,) = decide([headless], RedriveLog(), [OUT], force=True)
    assert none.action is Action.NO_TARGET and "--to" in none.why


def test_the_log_entry_is_json_keyed_by_the_dead_letter() -> None:
    entry = LogEntry(
        Coordinates(DLQ, 0, 4), Coordinates(OUT, 1, 8), 2, "schema", "ref-4", True, "r", _T0, "me@h"
    )
    assert entry.key() == f"{DLQ}/0/4".encode()
    assert orjson.loads(entry.value()) == {
        "deadLetter": f"{DLQ}/0/4",
        "to": f"{OUT}/1/8",
        "redriveCount": 2,
        "reasonClass": "schema",
        "senderUniqueReference": "ref-4",
        "forced": True,
        "run": "r",
        "at": _T0.isoformat(),
        "by": "me@h",
    }


def test_the_summary_counts_each_action_per_reason_class() -> None:
    log = RedriveLog()
    entry = LogEntry(
        Coordinates(DLQ, 0, 1), Coordinates(OUT, 2, 9), 1, "dip_auth", None, False, "r", _T0, "u"
    )
    log.add(entry.key(), entry.value())
    letters = [
        _letter(0),
        _letter(1),
        _letter(2, DeadLetterReason.ENVIRONMENT),
        _letter(3, source_topic="gone"),
    ]
    rows = summarise(decide(letters, log, [OUT]))
    assert [(r.reason_class, dict(r.counts)) for r in rows] == [
        ("dip_auth", {Action.REDRIVE: 1, Action.ALREADY: 1, Action.NO_TARGET: 1}),
        ("environment", {Action.REFUSED: 1}),
    ]
    assert rows[1].why == RESEND[DeadLetterReason.ENVIRONMENT].why


def test_times_without_a_zone_are_utc_and_nonsense_is_refused() -> None:
    assert _instant("2026-12-07T09:00") == _T0
    assert _instant("2026-12-07T10:00+01:00") == _T0
    with pytest.raises(argparse.ArgumentTypeError, match="ISO 8601"):
        _instant("yesterday")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_egress_never_imports_the_redrive_and_the_redrive_only_egress_reasons() -> None:
    package = Path(__file__).resolve().parent.parent / "gateway"
    allowed = {package / "cli" / "dlq_commands.py", package / "reference.py"}
    for path in package.rglob("*.py"):
        imported = _imports(path)
        if path.is_relative_to(package / "dlq"):
            egress = {n for n in imported if n.startswith("gateway.egress")}
            # The reasons, and the parked keys' state format (one definition for egress,
            # which writes it, and `dlq release`, which reads and releases it).
            assert egress <= {"gateway.egress.reasons", "gateway.egress.parking"}, path
            assert not any(n.startswith(("gateway.ingress", "dipsim")) for n in imported), path
        elif path not in allowed:
            assert not any(n.startswith("gateway.dlq") for n in imported), path
