"""The records egress writes to Kafka for final outcomes: results and dead letters. Pure.

A **result** (on the client's results topic, keyed like the original record) says the DIP
accepted a message: its ``senderUniqueReference``, the DIP's ``transactionID``, when it was
submitted and acknowledged, after how many attempts, and where the original record was
(``{"senderUniqueReference", "transactionID", "senderDIPID", "interfaceID", "dipStatus",
"dipMessage", "submittedAt", "acknowledgedAt", "attempts", "source": {"topic", "partition",
"offset"}, "senderCorrelationID"}``, in that order). A message the DIP refused as a duplicate
of the sender's own earlier copy (``egress.duplicate_message_codes``: a re-send after a crash)
gets a result too, with the DIP's message, no transaction ID and the header
``dcpgw-delivered-earlier: true``. A **dead letter** (on the client's, or the gateway's,
dead-letter topic) is the original value and key, with where it came from and why in the
headers (``dcpgw-reason`` in words, ``dcpgw-reason-class`` as one of
:class:`DeadLetterReason`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

import orjson

from gateway.egress.envelope import RecordRef
from gateway.egress.poison import raise_if_test_poison
from gateway.egress.reasons import DeadLetterReason
from gateway.egress.sender import Delivery
from gateway.egress.sources import origin, source_headers
from gateway.kafka.writer import OutRecord

_Common = tuple[str, int, str, str, int | None, int, datetime, Any, datetime | None, Any]
"""What a result shares with the others of its request: source topic and partition, sender,
interface, DIP status, attempts, submitted and acknowledged, each time with its ``tzinfo``
(aware datetimes for one instant in two zones are equal, but their ISO forms differ)."""


_DEAD_LETTER_HEADERS = frozenset(
    {
        "dcpgw-source-topic",
        "dcpgw-source-partition",
        "dcpgw-source-offset",
        "dcpgw-source-key",
        "dcpgw-reason",
        "dcpgw-reason-class",
        "dcpgw-attempts",
        "dcpgw-dip-status",
        "dcpgw-sender-dip-id",
        "dcpgw-interface",
    }
)
"""The headers a dead letter sets; the original record's other headers are kept."""

_DELIVERED_EARLIER = [("dcpgw-delivered-earlier", b"true")]
"""Header of a result whose message the DIP refused as a duplicate of its own earlier copy."""

_new_record = partial(tuple.__new__, OutRecord)
"""``OutRecord`` from a 4-tuple without the named tuple's Python-level ``__new__`` (one per
result)."""


def outcome_records(
    deliveries: Sequence[Delivery], trace: list[tuple[str, bytes]] | None = None
) -> list[OutRecord]:
    """A result or dead-letter record per delivery, in order; ``trace`` headers (the trace
    context, when tracing) go on every one of them.

    Results are formatted from a template per request and source partition, with only the
    message's own values (reference, transaction ID, DIP message, offset) filled in: cheaper
    than building and serialising a dict per message (``load-tests/README.md``). The JSON is
    the same as ``orjson.dumps`` of the result as a dict (tested)."""
    raise_if_test_poison(lambda: (d.prepared.message.sender_unique_reference for d in deliveries))
    templates: dict[_Common, bytes] = {}
    dumps = orjson.dumps
    out: list[OutRecord] = []
    # The configuration's models read attributes through pydantic's slower hook: the results
    # topic is looked up when the client changes (once a request), not per result.
    last_client: object = None
    results_topic = ""
    for delivery in deliveries:
        message = delivery.prepared.message
        client = delivery.prepared.route.client
        if client is not last_client:
            last_client, results_topic = client, client.topics.results
        ref = message.ref
        result = delivery.result
        if not result.accepted:
            dead = dead_letter(
                client.topics.dead_letter,
                ref,
                result.reason or "rejected",
                delivery.attempts,
                delivery.status,
                message.sender_dip_id,
                message.interface_id,
                result.reason_class or DeadLetterReason.DIP_REJECTION,
            )
            if trace:
                dead = dead._replace(headers=[*(dead.headers or ()), *trace])
            out.append(dead)
            continue
        submitted, acknowledged = delivery.submitted_at, delivery.acknowledged_at
        if ref.headers:  # it may have been read back from a retry topic: its first position
            topic, partition, offset = origin(ref)
        else:
            topic, partition, offset = ref.topic, ref.partition, ref.offset
        common: _Common = (
            topic,
            partition,
            message.sender_dip_id,
            message.interface_id,
            delivery.status,
            delivery.attempts,
            submitted,
            submitted.tzinfo,
            acknowledged,
            acknowledged.tzinfo if acknowledged is not None else None,
        )
        template = templates.get(common)
        if template is None:
            template = templates[common] = _template(common)
        value = template % (
            dumps(message.sender_unique_reference),
            dumps(result.transaction_id),
            dumps(result.dip_message),
            offset,
            dumps(message.correlation_id),
        )
        headers = trace
        if result.delivered_earlier:
            headers = [*_DELIVERED_EARLIER, *trace] if trace else _DELIVERED_EARLIER
        out.append(_new_record((results_topic, value, ref.key, headers)))
    return out


def _template(common: _Common) -> bytes:
    """``%``-template of a result: the shared values serialised (``%`` escaped), then slots for
    reference, transaction ID and DIP message (``%b``, JSON), the offset (``%d``) and the
    correlation ID (``%b``)."""
    topic, partition, sender, interface, status, attempts, submitted, _, acknowledged, _ = common

    def fixed(value: object) -> bytes:
        return orjson.dumps(value).replace(b"%", b"%%")

    return b"".join(
        (
            b'{"senderUniqueReference":%b,"transactionID":%b,"senderDIPID":',
            fixed(sender),
            b',"interfaceID":',
            fixed(interface),
            b',"dipStatus":',
            fixed(status),
            b',"dipMessage":%b,"submittedAt":',
            fixed(submitted.isoformat()),
            b',"acknowledgedAt":',
            fixed(acknowledged.isoformat() if acknowledged else None),
            b',"attempts":',
            fixed(attempts),
            b',"source":{"topic":',
            fixed(topic),
            b',"partition":',
            fixed(partition),
            b',"offset":%d},"senderCorrelationID":%b}',
        )
    )


def dead_letter(
    topic: str,
    ref: RecordRef,
    reason: str,
    attempts: int,
    status: int | None,
    sender: str | None,
    interface: str | None,
    reason_class: DeadLetterReason,
) -> OutRecord:
    """The original value, key and headers, with where it came from and why in ``dcpgw-``
    headers (replacing any of the same name the record carried, e.g. from an earlier trip).

    A record read back from a retry topic carries where it was first read
    (``dcpgw-source-*``): that is the source named, so a re-drive goes back to the outbound
    or status topic it came from, and the dead letter de-duplicates like one written there."""
    headers = [(k, v) for k, v in ref.headers if k not in _DEAD_LETTER_HEADERS]
    headers += [
        *source_headers(ref),
        ("dcpgw-source-key", ref.key or b""),
        ("dcpgw-reason", reason.encode("utf-8", "replace")),
        ("dcpgw-reason-class", reason_class.value.encode()),
        ("dcpgw-attempts", str(attempts).encode()),
    ]
    if status is not None:
        headers.append(("dcpgw-dip-status", str(status).encode()))
    if sender is not None:
        headers.append(("dcpgw-sender-dip-id", sender.encode()))
    if interface is not None:
        headers.append(("dcpgw-interface", interface.encode()))
    return OutRecord(topic, ref.value, ref.key, headers)


VALUE_DROPPED_HEADER = "dcpgw-value-dropped"
"""Header of a dead letter written without the original value (the broker refused it for its
size); the ``dcpgw-source-*`` headers say where the original record still is."""


def without_value(record: OutRecord, why: str) -> OutRecord | None:
    """The dead letter ``record`` without its value (the original record's bytes), saying why
    and how large it was; ``None`` for a record that is not a dead letter (a result is small
    and must not lose its content: it is retried instead). Idempotent."""
    headers = record.headers or []
    names = {name for name, _ in headers}
    if "dcpgw-source-offset" not in names:
        return None
    if VALUE_DROPPED_HEADER in names:
        return record
    size = len(record.value) if record.value is not None else 0
    extra = [
        (VALUE_DROPPED_HEADER, why.encode("utf-8", "replace")),
        ("dcpgw-value-size", str(size).encode()),
    ]
    return OutRecord(record.topic, None, record.key, [*headers, *extra])
