"""Retry topics: a held client's records leave the shared partitions, in order, and come back.

Records of all clients share the outbound partitions, and a partition's offset can only move
past a record once it is final. A client the DIP holds off for minutes or hours (see
:mod:`gateway.egress.holds`) would pin every partition it has records in: nothing after its
first held record could be committed, the in-flight window would fill with its records, and
fetching would stop for every client. So while a client is **diverting**, its records from the
outbound topics are written to its own retry topic (``clients[].topics.retry``) instead of
being sent; once Kafka has them they are final on the outbound topic. The retry topic holds
only that client's records, so its partitions can be paused for that client alone while it is
held (non-blocking retries, as in Uber's and Spring Kafka's retry topics).

Order per (sender, key) is kept: the key gate lets a record be diverted only after every
earlier record with its key was sent or diverted, records with one key land in one retry
partition in order, records read back from the retry topic are never diverted again (a
second trip would put them behind their successors), and a client **stops diverting** only
when its retry backlog is empty: every retry partition committed to its end by the consumer
group (so every earlier record of the client is final, whichever replica read it), with no
diverted write of this replica still on its way. A replica that is assigned partitions
checks the backlog first, so it never sends past records another replica diverted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway.egress.envelope import RecordRef
from gateway.egress.sources import SOURCE_HEADERS, SOURCE_TOPIC_HEADER, source_headers
from gateway.egress.writer import OutRecord

HELD_SINCE_HEADER = "dcpgw-held-since"
"""Epoch milliseconds since when the DIP holds the record's client off (for the hold budget)."""


_RETRY_HEADERS = frozenset({*SOURCE_HEADERS, HELD_SINCE_HEADER})
"""The headers a retry record sets; the original record's other headers travel with it."""


@dataclass(slots=True)
class _Client:
    in_transit: int = 0  # diverted writes not acknowledged yet
    epoch: int = 0  # diverted writes started so far


class Diversions:
    """Which clients divert, and whether one may stop. Pure."""

    def __init__(self) -> None:
        self._diverting: dict[str, _Client] = {}

    def __contains__(self, client: str) -> bool:
        return client in self._diverting

    def clients(self) -> list[str]:
        return list(self._diverting)

    def start(self, client: str) -> bool:
        """``client`` diverts from now on; True if it did not before."""
        if client in self._diverting:
            return False
        self._diverting[client] = _Client()
        return True

    def writing(self, client: str) -> None:
        """A diverted write of ``client``'s records begins."""
        state = self._diverting.setdefault(client, _Client())
        state.in_transit += 1
        state.epoch += 1

    def written(self, client: str) -> None:
        """A diverted write ended (acknowledged, or abandoned)."""
        state = self._diverting.get(client)
        if state is not None and state.in_transit:
            state.in_transit -= 1

    def epoch(self, client: str) -> int:
        state = self._diverting.get(client)
        return state.epoch if state is not None else 0

    def stop(self, client: str, epoch: int) -> bool:
        """Stop diverting ``client`` after its backlog was seen empty: only if no diverted
        write began since ``epoch`` (read before looking) and none is on its way."""
        state = self._diverting.get(client)
        if state is None:
            return False
        if state.epoch != epoch or state.in_transit:
            return False
        del self._diverting[client]
        return True

    def invalidate(self) -> None:
        """A rebalance: a backlog read before it may miss what another replica diverted just
        before handing a partition over, so no check begun earlier may end a diversion."""
        for state in self._diverting.values():
            state.epoch += 1


def retry_record(topic: str, ref: RecordRef, held_since: float | None) -> OutRecord:
    """The record to write to the client's retry topic: the original key, value and headers,
    and where it came from: the result or dead letter of the record read back names that
    original position, the one its producer knows, not the retry topic's. ``held_since``:
    when the DIP began to hold the client off (None: diverted for its share of the window,
    not held), which starts the hold budget."""
    headers = [(k, v) for k, v in ref.headers if k not in _RETRY_HEADERS]
    headers += source_headers(ref)
    if held_since is not None:
        headers.append((HELD_SINCE_HEADER, str(int(held_since * 1000)).encode()))
    return OutRecord(topic, ref.value, ref.key, headers)


def read_retry_headers(headers: Sequence[tuple[str, bytes]]) -> tuple[str | None, float | None]:
    """(original topic, held since in epoch seconds) of a record read from a retry topic;
    None for what is missing or unreadable (a record someone else wrote there)."""
    source: str | None = None
    since: float | None = None
    for name, value in headers:
        if name == SOURCE_TOPIC_HEADER:
            source = value.decode("utf-8", "replace")
        elif name == HELD_SINCE_HEADER and value.isdigit():
            since = int(value) / 1000
    return source, since


async def retry_backlog(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> dict[str, int]:
    """Records of each retry topic that the consumer group has not committed past (0: none).

    Read from the group's committed offsets, not from this replica's progress: a record is in
    the backlog until it is final, whichever replica holds it."""
    partitions = [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    if not partitions:
        return {topic: 0 for topic in topics}
    begin = await consumer.beginning_offsets(partitions)
    end = await consumer.end_offsets(partitions)
    committed = await asyncio.gather(*(consumer.committed(tp) for tp in partitions))
    backlog = dict.fromkeys(topics, 0)
    for tp, done in zip(partitions, committed, strict=True):
        start = max(done if done is not None else 0, begin[tp])
        backlog[tp.topic] += max(end[tp] - start, 0)
    return backlog
