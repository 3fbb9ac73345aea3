"""Where a record came from: the position its producer wrote it at.

A record can leave the topic it was produced to and be read again elsewhere: through its
client's retry topic (diverted) or its parked topic. It then carries its first position in the
``dcpgw-source-topic``/``-partition``/``-offset`` headers, and everything egress writes about
it (its result, a dead letter, a park) names that position, the one its producer knows, so a
result can be matched and a dead letter re-driven to where the record belongs.
"""

from __future__ import annotations

from typing import Final

from gateway.egress.envelope import RecordRef

SOURCE_TOPIC_HEADER: Final = "dcpgw-source-topic"
SOURCE_PARTITION_HEADER: Final = "dcpgw-source-partition"
SOURCE_OFFSET_HEADER: Final = "dcpgw-source-offset"
SOURCE_HEADERS: Final = (SOURCE_TOPIC_HEADER, SOURCE_PARTITION_HEADER, SOURCE_OFFSET_HEADER)


def origin(ref: RecordRef) -> tuple[str, int, int]:
    """(topic, partition, offset) the record was first produced at: the position it carries
    (a readable one), else its own."""
    headers = ref.headers
    if len(headers) >= len(SOURCE_HEADERS):  # cheap: most records carry no header at all
        carried = {k: v for k, v in headers if k in SOURCE_HEADERS}
        if len(carried) == len(SOURCE_HEADERS):
            topic, partition, offset = (carried[name] for name in SOURCE_HEADERS)
            try:
                return topic.decode(), int(partition), int(offset)
            except ValueError:  # UnicodeDecodeError included: someone else's headers
                pass
    return ref.topic, ref.partition, ref.offset


def source_headers(ref: RecordRef) -> list[tuple[str, bytes]]:
    """The ``dcpgw-source-*`` headers naming the record's :func:`origin`."""
    topic, partition, offset = origin(ref)
    return [
        (SOURCE_TOPIC_HEADER, topic.encode()),
        (SOURCE_PARTITION_HEADER, str(partition).encode()),
        (SOURCE_OFFSET_HEADER, str(offset).encode()),
    ]
