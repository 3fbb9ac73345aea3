"""A dead letter as the re-drive sees it, and the operator's filters. Pure.

Egress writes dead letters with the original key and value and its diagnosis in ``dcpgw-``
headers (``gateway/egress/records.py``); this reads them back once per record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

import orjson

from gateway.egress.reasons import DeadLetterReason

DIAGNOSTIC_PREFIX = "dcpgw-"
"""Headers egress adds to a dead letter (and a re-drive adds to its record)."""


@dataclass(frozen=True, slots=True)
class Coordinates:
    """Where a record is: ``topic/partition/offset`` is its form in headers and logs."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Coordinates | None:
        """``topic/partition/offset`` (a topic name has no ``/``), or None if malformed."""
        parts = text.rsplit("/", 2)
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            return None
        return cls(parts[0], int(parts[1]), int(parts[2]))


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter topic."""

    at: Coordinates
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    _by_name: dict[str, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Last one wins, as a re-driven record's own copy is replaced, never duplicated.
        object.__setattr__(self, "_by_name", dict(self.headers))

    def header(self, name: str) -> str | None:
        raw = self._by_name.get(name)
        return None if raw is None else raw.decode("utf-8", "replace")

    @property
    def reason_class(self) -> DeadLetterReason | None:
        """None when missing or unknown to this version (a newer gateway's class)."""
        raw = self.header("dcpgw-reason-class")
        try:
            return DeadLetterReason(raw) if raw is not None else None
        except ValueError:
            return None

    @property
    def reason_class_label(self) -> str:
        return self.header("dcpgw-reason-class") or "(none)"

    @property
    def reason(self) -> str:
        return self.header("dcpgw-reason") or ""

    @property
    def interface(self) -> str | None:
        return self.header("dcpgw-interface")

    @property
    def sender_dip_id(self) -> str | None:
        return self.header("dcpgw-sender-dip-id")

    @property
    def source(self) -> Coordinates | None:
        """Where egress read the original record (None: headers missing or malformed)."""
        topic = self.header("dcpgw-source-topic")
        partition = self.header("dcpgw-source-partition")
        offset = self.header("dcpgw-source-offset")
        if not topic or not partition or not offset:
            return None
        return Coordinates.parse(f"{topic}/{partition}/{offset}")

    @property
    def redrive_count(self) -> int:
        """Re-drives the record had already been through (0: an original)."""
        raw = self.header("dcpgw-redrive-count")
        return int(raw) if raw is not None and raw.isdigit() else 0

    @property
    def dead_lettered_at(self) -> datetime | None:
        if self.timestamp_ms < 0:
            return None
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    @cached_property
    def sender_unique_reference(self) -> str | None:
        """From the value (a bare payload or ``{"payload": ...}``); None if unreadable. Parsed
        only when shown or filtered on: this is a command, not the hot path."""
        try:
            document = orjson.loads(self.value or b"")
        except orjson.JSONDecodeError:
            return None
        if isinstance(document, dict) and "payload" in document and "CommonBlock" not in document:
            document = document["payload"]
        if not isinstance(document, dict):
            return None
        try:
            reference = document["CommonBlock"]["S1"]["senderUniqueReference"]
        except (KeyError, TypeError, IndexError):
            reference = document.get("senderUniqueReference")  # a status message's place
        return reference if isinstance(reference, str) else None


@dataclass(frozen=True, slots=True)
class Filters:
    """What the operator asked for; an empty tuple or None matches everything."""

    interfaces: tuple[str, ...] = ()
    reason_classes: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    references: tuple[str, ...] = ()
    sender_dip_ids: tuple[str, ...] = ()

    def matches(self, letter: DeadLetter) -> bool:
        if self.interfaces and letter.interface not in self.interfaces:
            return False
        if self.reason_classes and letter.reason_class_label not in self.reason_classes:
            return False
        if self.sender_dip_ids and letter.sender_dip_id not in self.sender_dip_ids:
            return False
        if self.since is not None or self.until is not None:
            at = letter.dead_lettered_at
            if at is None:
                return False
            if self.since is not None and at < self.since:
                return False
            if self.until is not None and at >= self.until:
                return False
        return not self.references or letter.sender_unique_reference in self.references


def select(letters: Sequence[DeadLetter], filters: Filters) -> list[DeadLetter]:
    return [letter for letter in letters if filters.matches(letter)]
