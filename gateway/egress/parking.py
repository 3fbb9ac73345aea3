"""Key parking: once a record is dead-lettered, later records with its key wait. Pure.

For a client with ``park_keys``, a dead-lettered record with a Kafka key (e.g. an MPAN's
registration) **parks** its key: later records of the client with that key go to the client's
parked topic (``clients[].topics.parked``) instead of the DIP, so the DIP never sees an update
before the record it depends on. Other keys keep flowing. ``dcp-gateway dlq release`` re-drives
the parked records in order (optionally the dead-lettered head first) and then **releases** the
key.

The parked set is kept in Kafka, not memory: a compacted state topic
(``kafka.parked_keys_topic``) holds one record per parked (client, key), keyed by both, with
why and where the head was dead-lettered; a tombstone releases it. Egress writes the state
record together with the dead letter (so the head's offset is committed only once its park is
on Kafka), reads the topic to its end before taking records, and tails it for the CLI's
releases and other replicas' parks.

A re-driven record carries ``dcpgw-unparked: <park id>``: it is let through while the park it
was released from is the key's current one. Should its head fail again, the new park has a new
id, and the records behind it are parked again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson

from gateway.egress.envelope import RecordRef
from gateway.egress.sources import origin, source_headers
from gateway.egress.writer import OutRecord

UNPARKED_HEADER = "dcpgw-unparked"
"""On a record ``dlq release`` re-drove: the id of the park it was released from."""
PARK_ID_HEADER = "dcpgw-park-id"
"""On a parked record: the id of the park that held it (``dlq release`` re-drives only these)."""
PARKED_REASON_HEADER = "dcpgw-parked-reason"
RELEASED_PARK_HEADER = "dcpgw-released-park"
"""On a release's tombstone in the state topic: the id of the park it releases. Between the
operator's check and the tombstone, the re-driven head may have failed again and parked the key
anew; a tombstone naming another park removes nothing."""
_SEPARATOR = b"\x00"
"""Between client name and Kafka key in a state record's key: a client name has no NUL."""


@dataclass(frozen=True, slots=True)
class Park:
    """Why a (client, key) is parked: its head's dead letter."""

    park_id: str
    parked_at: float  # epoch seconds
    reason_class: str
    source_topic: str  # where egress read the head (see holds)
    source_partition: int
    source_offset: int
    dead_letter_topic: str
    #: Where the head's producer wrote it, when egress read it elsewhere (back from a retry
    #: topic): the position its dead letter names.
    origin: tuple[str, int, int] | None = None

    @property
    def head(self) -> tuple[str, int, int]:
        """The position the head's dead letter names (``dcpgw-source-*``)."""
        return self.origin or (self.source_topic, self.source_partition, self.source_offset)

    def value(self) -> bytes:
        doc: dict[str, object] = {
            "parkId": self.park_id,
            "parkedAt": self.parked_at,
            "reasonClass": self.reason_class,
            "source": _position(self.source_topic, self.source_partition, self.source_offset),
            "deadLetterTopic": self.dead_letter_topic,
        }
        if self.origin is not None:
            doc["origin"] = _position(*self.origin)
        return orjson.dumps(doc)

    @classmethod
    def parse(cls, value: bytes) -> Park | None:
        """None for a value this version cannot read (someone else's record)."""
        try:
            doc = orjson.loads(value)
            source = doc["source"]
            first = doc.get("origin")
            return cls(
                str(doc["parkId"]),
                float(doc["parkedAt"]),
                str(doc["reasonClass"]),
                str(source["topic"]),
                int(source["partition"]),
                int(source["offset"]),
                str(doc["deadLetterTopic"]),
                None
                if first is None
                else (str(first["topic"]), int(first["partition"]), int(first["offset"])),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


def _position(topic: str, partition: int, offset: int) -> dict[str, object]:
    return {"topic": topic, "partition": partition, "offset": offset}


def state_key(client: str, key: bytes) -> bytes:
    return client.encode() + _SEPARATOR + key


def split_state_key(raw: bytes) -> tuple[str, bytes] | None:
    client, sep, key = raw.partition(_SEPARATOR)
    if not sep or not client:
        return None
    return client.decode("utf-8", "replace"), key


def new_park(ref: RecordRef, reason_class: str, dead_letter_topic: str) -> Park:
    """A park whose head is ``ref``: where egress read it, and where its producer wrote it if
    that was elsewhere (its dead letter names that)."""
    first = origin(ref)
    park_id = uuid.uuid4().hex[:16]
    return Park(
        park_id,
        time.time(),
        reason_class,
        ref.topic,
        ref.partition,
        ref.offset,
        dead_letter_topic,
        first if first != (ref.topic, ref.partition, ref.offset) else None,
    )


def state_record(topic: str, client: str, key: bytes, park: Park | None) -> OutRecord:
    """The state topic's record for a park, or its tombstone (``park`` None: released)."""
    return OutRecord(
        topic, park.value() if park is not None else None, state_key(client, key), None
    )


def release_record(topic: str, client: str, key: bytes, park_id: str) -> OutRecord:
    """The tombstone that releases park ``park_id`` of ``client``'s ``key``, and no other."""
    return OutRecord(
        topic, None, state_key(client, key), [(RELEASED_PARK_HEADER, park_id.encode())]
    )


_NONE: Mapping[bytes, object] = {}


@dataclass(slots=True)
class _Entry:
    park: Park
    confirmed: bool  # read back from the state topic (a tombstone may remove it only then)


class ParkedKeys:
    """The parked (client, key)s and their parks.

    Written by egress (:meth:`park`, when its state record is acknowledged) and by the state
    topic (:meth:`apply`, in log order). A tombstone removes only a park already read back from
    the topic: one this replica has just made is later in the log than any tombstone the tail
    has not reached yet, so an older release must not undo it."""

    def __init__(self) -> None:
        self._parks: dict[str, dict[bytes, _Entry]] = {}

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._parks.values())

    def count(self, client: str) -> int:
        return len(self._parks.get(client, ()))

    def any_for(self, client: str) -> bool:
        return bool(self._parks.get(client))

    def entries(self, client: str) -> Mapping[bytes, object]:
        """The client's parked keys, for a membership test per record (``key in``): cheaper
        than :meth:`get` on the hot path, where almost no record's key is parked."""
        return self._parks.get(client) or _NONE

    def get(self, client: str, key: bytes | None) -> Park | None:
        keys = self._parks.get(client)
        if not keys or key is None:
            return None
        entry = keys.get(key)
        return entry.park if entry is not None else None

    def park(self, client: str, key: bytes, park: Park) -> bool:
        """Egress dead-lettered ``key``'s head; True if the key was not parked before."""
        keys = self._parks.setdefault(client, {})
        fresh = key not in keys
        if fresh or keys[key].park.park_id != park.park_id:
            keys[key] = _Entry(park, False)
        return fresh

    def apply(
        self,
        raw_key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> tuple[str, bool] | None:
        """One state-topic record, in log order: (client, whether the set changed), or None for
        a record that is not a park's."""
        if raw_key is None:
            return None
        split = split_state_key(raw_key)
        if split is None:
            return None
        client, key = split
        keys = self._parks.setdefault(client, {})
        if value is None:
            entry = keys.get(key)
            if entry is None or not entry.confirmed:
                return client, False
            released = _header(headers, RELEASED_PARK_HEADER)
            if released is not None and released != entry.park.park_id:
                return client, False  # released an earlier park: the key was parked again
            del keys[key]
            return client, True
        park = Park.parse(value)
        if park is None:
            return None
        fresh = key not in keys
        current = keys.get(key)
        if current is None or current.park.park_id == park.park_id or current.confirmed:
            keys[key] = _Entry(park, True)
        return client, fresh

    def keys(self, client: str) -> list[bytes]:
        return list(self._parks.get(client, ()))


def holds(park: Park | None, ref: RecordRef, unparked: str | None) -> bool:
    """Whether ``park`` (the key's current one) holds the record ``ref`` back.

    Not a record released from this very park (``unparked``: its ``dcpgw-unparked`` header),
    and not one read before the head in the head's own partition: those were consumed earlier
    (a refusal parks the key at once, while earlier records of the key may still be batched)."""
    if park is None:
        return False
    if unparked is not None and unparked == park.park_id:
        return False
    return not (
        ref.topic == park.source_topic
        and ref.partition == park.source_partition
        and ref.offset < park.source_offset
    )


def unparked_id(headers: Sequence[tuple[str, bytes]]) -> str | None:
    return _header(headers, UNPARKED_HEADER)


def _header(headers: Sequence[tuple[str, bytes]] | None, wanted: str) -> str | None:
    for name, value in headers or ():
        if name == wanted:
            return value.decode("utf-8", "replace")
    return None


def parked_record(topic: str, ref: RecordRef, park: Park) -> OutRecord:
    """The record for the client's parked topic: the original key and value, where it came from
    and which park holds it."""
    headers = [
        *source_headers(ref),
        (PARK_ID_HEADER, park.park_id.encode()),
        (
            PARKED_REASON_HEADER,
            (
                f"key parked: {park.source_topic}[{park.source_partition}]@{park.source_offset} "
                f"was dead-lettered ({park.reason_class}) on {park.dead_letter_topic}"
            ).encode(),
        ),
    ]
    return OutRecord(topic, ref.value, ref.key, headers)
