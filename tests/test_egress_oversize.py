"""A dead letter the broker refuses for its size is written again without its value
(gateway/egress/oversize.py, records.without_value); end to end on real Kafka in
tests/test_egress_e2e.py."""

from __future__ import annotations

from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError

from gateway.egress.oversize import refused_for_size
from gateway.egress.reasons import DeadLetterReason
from gateway.egress.records import dead_letter, without_value
from gateway.egress.writer import OutRecord
from tests.test_egress_support import message


def test_a_dead_letter_without_its_value_keeps_its_headers_and_says_why() -> None:
    ref = message().ref._replace(value=b"x" * 5000, key=b"meter-1")
    record = dead_letter(
        "dlq", ref, "malformed JSON: x", 0, None, None, None, DeadLetterReason.ENVELOPE
    )
    cut = without_value(record, "too large for dlq: MessageSizeTooLargeError")
    assert cut is not None and cut.value is None and cut.key == b"meter-1" and cut.topic == "dlq"
    headers = dict(cut.headers or [])
    assert headers["dcpgw-value-dropped"] == b"too large for dlq: MessageSizeTooLargeError"
    assert headers["dcpgw-value-size"] == b"5000"
    assert headers["dcpgw-source-offset"] == str(ref.offset).encode()
    assert headers["dcpgw-reason-class"] == b"envelope"
    assert without_value(cut, "again") is cut  # once only


def test_a_result_is_never_cut() -> None:
    result = OutRecord("results", b'{"senderUniqueReference":"r"}', b"k", None)
    assert without_value(result, "too large") is None


def test_only_size_errors_count_as_refused_for_size() -> None:
    assert refused_for_size(MessageSizeTooLargeError())
    assert refused_for_size(RecordTooLargeError())
    assert not refused_for_size(KafkaError("topic authorization failed"))
