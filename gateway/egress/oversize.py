"""Dead letters the broker refuses for their size: written again without the original value.

A dead letter carries the original record's value, which the outbound topic accepted but the
dead-letter topic may not (a smaller ``max.message.bytes``), and a refused outcome write is
retried until it works: one such record stalled its partition's commits for ever. When a
write fails with a size error, its records are written one at a time, and a dead letter that
is refused on its own is written without its value; its headers keep the reason and point at
``dcpgw-source-topic/partition/offset``, where the original still is (until retention).

A result is never cut (it is small; a refusal means a misconfigured topic, retried and
alerted on). Writes to one partition share Kafka batches (:mod:`gateway.egress.writer`), so a
record written alone can still share a batch with another delivery's: if that batch is too
large only because of the other records (a topic limit below the producer's 256 KiB batch),
a dead letter may lose its value needlessly, never a message. Records of the refused write
that had landed (another partition's) are written again: at-least-once, as any retried write.
"""

from __future__ import annotations

import structlog
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from gateway.egress import metrics
from gateway.egress.records import without_value
from gateway.egress.writer import OutcomeWriter, OutRecord

_log = structlog.get_logger(__name__)

_SIZE_ERRORS = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)


def refused_for_size(error: BaseException) -> bool:
    """The broker (or the client) refused a write because a record or batch is too large."""
    return isinstance(error, _SIZE_ERRORS)


async def write_shedding_values(writer: OutcomeWriter, records: list[OutRecord]) -> list[OutRecord]:
    """Write ``records`` one at a time, in order; a dead letter refused for its size is written
    without its value. Returns what is left to write (from the first record that still fails,
    in order; empty when all were written): the caller retries it as any failed write."""
    for index, record in enumerate(records):
        try:
            await writer.write([record])
            continue
        except KafkaError as exc:
            if not refused_for_size(exc):
                return records[index:]
            cut = without_value(record, f"too large for {record.topic}: {type(exc).__name__}")
            if cut is None or cut is record:
                return records[index:]
        metrics.DEAD_LETTER_VALUES_DROPPED.labels(record.topic).inc()
        _log.warning(
            "egress_dead_letter_value_dropped",
            topic=record.topic,
            size=len(record.value or b""),
            source=_source(cut),
        )
        try:
            await writer.write([cut])
        except KafkaError:
            return [cut, *records[index + 1 :]]
    return []


def _source(record: OutRecord) -> str:
    """``topic[partition]@offset`` of the original record, from a dead letter's headers."""
    found = {name: value.decode("utf-8", "replace") for name, value in record.headers or []}
    topic = found.get("dcpgw-source-topic", "?")
    return f"{topic}[{found.get('dcpgw-source-partition', '?')}]@{found.get('dcpgw-source-offset')}"
