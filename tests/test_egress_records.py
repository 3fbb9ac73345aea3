"""Result and dead-letter records: the templated result JSON is byte for byte what serialising
the result document gives, whatever the values hold (quotes, ``%``, non-ASCII, nulls)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import orjson

from gateway.egress.diversion import read_retry_headers, retry_record
from gateway.egress.envelope import RecordRef
from gateway.egress.outcomes import MessageResult
from gateway.egress.reasons import DeadLetterReason
from gateway.egress.records import dead_letter, outcome_records
from gateway.egress.routing import Prepared, Router
from gateway.egress.sender import Delivery
from gateway.egress.writer import OutRecord
from tests.test_egress_support import ALICE_ID, make_config, message

_ROUTER = Router(make_config())
_AT = datetime(2026, 11, 23, 20, 0, 0, 123456, tzinfo=UTC)


def result_document(delivery: Delivery) -> dict[str, object]:
    """The result record's value as a document: what the template must serialise to."""
    message = delivery.prepared.message
    result = delivery.result
    ref = message.ref
    acknowledged = delivery.acknowledged_at
    return {
        "senderUniqueReference": message.sender_unique_reference,
        "transactionID": result.transaction_id,
        "senderDIPID": message.sender_dip_id,
        "interfaceID": message.interface_id,
        "dipStatus": delivery.status,
        "dipMessage": result.dip_message,
        "submittedAt": delivery.submitted_at.isoformat(),
        "acknowledgedAt": acknowledged.isoformat() if acknowledged else None,
        "attempts": delivery.attempts,
        "source": {"topic": ref.topic, "partition": ref.partition, "offset": ref.offset},
        "senderCorrelationID": message.correlation_id,
    }


def _prepared(seq: int, *, partition: int = 0, key: bytes | None = None) -> Prepared:
    out = _ROUTER.prepare(
        message(ALICE_ID, seq, offset=1000 + seq, partition=partition, key=key), date(2026, 11, 23)
    )
    assert isinstance(out, Prepared)
    return out


def test_a_result_carries_the_messages_correlation_id() -> None:
    """Response tracking matches results to inbound publications by it."""
    prepared = _prepared(1)
    prepared.message.correlation_id = 'CI-100% "quoted" %s'
    delivery = Delivery(prepared, MessageResult(True, "t1"), 201, 1, _AT, _AT)
    (record,) = outcome_records([delivery])
    assert orjson.loads(record.value or b"")["senderCorrelationID"] == 'CI-100% "quoted" %s'
    assert record.value == orjson.dumps(result_document(delivery))


def test_results_are_the_serialised_result_document_byte_for_byte() -> None:
    odd = ['quote " and \\ back', "100% sure %d %b %s", "clé ⚡ 電", "", None]
    deliveries = []
    for seq in range(40):
        prepared = _prepared(seq, partition=seq % 3, key=f"meter-{seq}".encode())
        prepared.message.sender_unique_reference = odd[seq % 5]
        if seq % 4 == 0:  # not a legal Kafka topic name, but the template must not care
            prepared.message.ref = prepared.message.ref._replace(topic="out%d-topic")
        result = MessageResult(True, odd[(seq + 1) % 5], odd[(seq + 2) % 5])
        acknowledged = None if seq % 7 == 0 else _AT + timedelta(milliseconds=seq // 10)
        deliveries.append(
            Delivery(prepared, result, 201 if seq % 2 else 207, 1 + seq % 3, _AT, acknowledged)
        )
    records = outcome_records(deliveries)
    assert len(records) == len(deliveries)
    for record, delivery in zip(records, deliveries, strict=True):
        assert record.value == orjson.dumps(result_document(delivery))
        assert record.key == delivery.prepared.message.ref.key
        assert record.topic == delivery.prepared.route.client.topics.results
        assert record.headers is None
        assert type(record) is OutRecord and len(record) == len(OutRecord._fields)
    # the values really differ where they should (one template per request and partition)
    offsets = [orjson.loads(r.value or b"")["source"]["offset"] for r in records]
    assert offsets == [1000 + seq for seq in range(40)]


def test_rejected_messages_become_dead_letters_with_the_reason_in_headers() -> None:
    prepared = _prepared(1, key=b"meter-1")
    result = MessageResult(
        False,
        None,
        "MSG1001 - Schema Failure",
        "MSG1001: fix the schema",
        reason_class=DeadLetterReason.DIP_REJECTION,
    )
    (record,) = outcome_records([Delivery(prepared, result, 207, 2, _AT, _AT)])
    ref = prepared.message.ref
    client = prepared.route.client
    assert record.topic == client.topics.dead_letter
    assert (record.key, record.value) == (ref.key, ref.value)
    headers = dict(record.headers or [])
    assert headers["dcpgw-reason"] == b"MSG1001: fix the schema"
    assert headers["dcpgw-reason-class"] == b"dip_rejection"
    assert headers["dcpgw-dip-status"] == b"207"
    assert headers["dcpgw-attempts"] == b"2"
    assert headers["dcpgw-source-offset"] == str(ref.offset).encode()
    assert headers["dcpgw-sender-dip-id"] == ALICE_ID.encode()


def test_a_refusal_without_sender_or_status_names_only_what_is_known() -> None:
    ref = message().ref._replace(value=b"{not json", key=None)
    record = dead_letter(
        "gw-dead", ref, "malformed JSON: x", 0, None, None, None, DeadLetterReason.ENVELOPE
    )
    headers = dict(record.headers or [])
    assert headers["dcpgw-reason-class"] == b"envelope"
    assert record.topic == "gw-dead" and record.value == b"{not json"
    assert "dcpgw-dip-status" not in headers and "dcpgw-sender-dip-id" not in headers
    assert headers["dcpgw-source-key"] == b""


def test_one_instant_in_two_zones_gets_its_own_iso_form() -> None:
    """Aware datetimes of one instant compare equal across zones; the template must not."""
    paris = timezone(timedelta(hours=1))
    deliveries = [
        Delivery(_prepared(1), MessageResult(True, "t1"), 201, 1, _AT, _AT),
        Delivery(_prepared(2), MessageResult(True, "t2"), 201, 1, _AT.astimezone(paris), _AT),
    ]
    for record, delivery in zip(outcome_records(deliveries), deliveries, strict=True):
        assert record.value == orjson.dumps(result_document(delivery))


def test_neighbours_sharing_timestamps_still_get_their_own_status_attempts_and_source() -> None:
    """One request's deliveries share their timestamp objects; a template shared with a
    neighbour must not carry its status, attempts or source partition over."""
    rejected = MessageResult(False, None, "MSG1001 - Schema Failure", "bad")
    deliveries = []
    for seq in range(12):
        result = rejected if seq == 5 else MessageResult(True, f"tx-{seq}", "MSG0000 - Success")
        status = 207 if seq in (3, 4) else 201
        attempts = 2 if seq in (4, 9) else 1
        prepared = _prepared(seq, partition=1 if seq in (7, 8) else 0)
        deliveries.append(Delivery(prepared, result, status, attempts, _AT, _AT))
    records = outcome_records(deliveries)
    for seq, (record, delivery) in enumerate(zip(records, deliveries, strict=True)):
        if seq == 5:
            assert record.topic == delivery.prepared.route.client.topics.dead_letter
        else:
            assert record.value == orjson.dumps(result_document(delivery))


def test_a_message_delivered_earlier_gets_a_flagged_result_not_a_dead_letter() -> None:
    duplicate = "MSG1002 - Duplicate Sender Unique Reference"
    earlier = MessageResult(True, None, duplicate, None, True)
    fresh = MessageResult(True, "T-1", "MSG0000 - Success")
    deliveries = [
        Delivery(_prepared(seq), r, 207, 1, _AT, _AT) for seq, r in enumerate((earlier, fresh))
    ]
    flagged, plain = outcome_records(deliveries)
    assert flagged.topic == plain.topic == deliveries[0].prepared.route.client.topics.results
    assert flagged.headers == [("dcpgw-delivered-earlier", b"true")]
    assert plain.headers is None
    assert flagged.value == orjson.dumps(result_document(deliveries[0]))


def test_a_dead_letter_keeps_the_records_own_headers_and_replaces_stale_diagnostics() -> None:
    original = [
        ("traceparent", b"00-abc-def-01"),
        ("dcpgw-redrive-count", b"2"),  # from an earlier re-drive: kept, so the count goes on
        ("dcpgw-reason", b"an older reason"),  # from an earlier trip: replaced
    ]
    ref = RecordRef("out", 0, 5, b"k", b"{}", 0, -1, original)
    record = dead_letter("dlq", ref, "bad", 1, 400, ALICE_ID, "IF-043", DeadLetterReason.SCHEMA)
    headers = record.headers or []
    assert headers[:2] == original[:2]
    assert [v for k, v in headers if k == "dcpgw-reason"] == [b"bad"]


def test_a_retry_record_carries_the_records_own_headers() -> None:
    ref = RecordRef("out", 1, 9, b"k", b"{}", 0, -1, [("traceparent", b"00-1-2-01")])
    record = retry_record("retry", ref, 1_700_000_000.5)
    assert record.topic == "retry" and (record.key, record.value) == (b"k", b"{}")
    assert (record.headers or [])[0] == ("traceparent", b"00-1-2-01")
    assert read_retry_headers(record.headers or []) == ("out", 1_700_000_000.5)


def test_a_dead_letter_of_a_record_read_back_from_a_retry_topic_names_its_first_source() -> None:
    first = RecordRef("status-out", 2, 17, b"k", b"{}", 0, -1, [("traceparent", b"00-1-2-01")])
    diverted = retry_record("dcpgw.alice.retry", first, None)
    back = RecordRef("dcpgw.alice.retry", 0, 3, b"k", b"{}", 0, -1, diverted.headers or [])
    record = dead_letter("dlq", back, "bad", 1, 400, ALICE_ID, "STATUS", DeadLetterReason.SCHEMA)
    headers = record.headers or []
    source = {k: v for k, v in headers if k.startswith("dcpgw-source-") and k != "dcpgw-source-key"}
    assert source == {
        "dcpgw-source-topic": b"status-out",
        "dcpgw-source-partition": b"2",
        "dcpgw-source-offset": b"17",
    }
    assert [k for k, _ in headers].count("dcpgw-source-topic") == 1
    assert headers[0] == ("traceparent", b"00-1-2-01")


def test_the_result_of_a_record_read_back_from_a_retry_topic_names_the_record_produced() -> None:
    """A client diverted for its share of the window gets its results naming the record it
    wrote to the outbound topic, as every other result does, not the retry topic's copy."""
    first = _prepared(5, partition=2).message.ref
    diverted = retry_record("dcpgw.alice.retry", first, None)
    back = _prepared(5)
    back.message.ref = RecordRef(
        "dcpgw.alice.retry", 0, 3, first.key, first.value, 0, -1, diverted.headers or []
    )
    plain = _prepared(6, partition=2)
    deliveries = [
        Delivery(p, MessageResult(True, f"t{i}"), 201, 1, _AT, _AT)
        for i, p in enumerate((back, plain))
    ]
    read_back, other = (orjson.loads(r.value or b"") for r in outcome_records(deliveries))
    assert read_back["source"] == {"topic": first.topic, "partition": 2, "offset": first.offset}
    assert other["source"] == {"topic": first.topic, "partition": 2, "offset": 1006}
    # headers someone else wrote, unreadable as a position: the record's own position
    back.message.ref = back.message.ref._replace(
        headers=[(k, b"x" if k == "dcpgw-source-offset" else v) for k, v in diverted.headers or []]
    )
    (record,) = outcome_records(deliveries[:1])
    source = orjson.loads(record.value or b"")["source"]
    assert source == {"topic": "dcpgw.alice.retry", "partition": 0, "offset": 3}
