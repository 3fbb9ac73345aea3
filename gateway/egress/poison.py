"""Poison-record isolation: a record that makes egress fail on every restart is dead-lettered
after ``egress.poison_crash_limit`` failures, so one record cannot stop every client. Pure.

A bug while handling a batch stops egress (its records stay uncommitted, in order) and the
process exits to be restarted. If the bug is in the record's content, the restarted process
reads the same record and fails again, for ever, for all clients. The failures are counted
where the next process (on any node) finds them: in the **metadata string of the partition's
committed offset**, committed with the offset itself. So the count costs nothing on the hot path
(every commit already goes to the group coordinator), survives the pod moving, and is dropped by
the first commit past the record.

After a failure the records of the failed batch are *suspects* (one of them is the poison, or
none: the bug may not depend on the content). A suspect read again is sent in a batch of its own,
so an innocent batch-mate succeeds and leaves the suspects, while the poison fails alone and its
count grows. A record that has failed ``limit`` times is not sent again: it is dead-lettered with
reason class ``internal`` and the last error.

A bug that fails every batch whatever its content dead-letters one record per ``limit``
restarts (the restarts alert: CrashLoopBackOff). Not counted: a crash that kills the process
before the batch's failure is caught (SIGKILL, the kernel's OOM killer): nothing is committed.

Metadata format (Kafka's default ``offset.metadata.max.bytes`` is 4096):
``dcpgw-suspects/1 <offset>:<failures>,... | <last error>``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from gateway.egress.envelope import Refusal
from gateway.egress.reasons import DeadLetterReason
from gateway.egress.routing import Prepared, Rejected

TopicPartitionKey = tuple[str, int]

_PREFIX = "dcpgw-suspects/1 "
_SEPARATOR = " | "
_MAX_METADATA = 3000  # under Kafka's default offset.metadata.max.bytes (4096)
_MAX_ERROR = 300
READ_SECONDS = 10.0
"""Longest wait for the committed metadata of new partitions (best effort: on timeout, the
records are sent as usual and the counts start again)."""

TEST_POISON_VARIABLE = "DCP_GATEWAY_TEST_POISON"
"""**Test-only.** A ``senderUniqueReference``: building the outcome records of a batch holding
a message with that reference raises, as a content-dependent bug would (the end-to-end tests of
this module run the gateway as its own process). Read once, at import, in this one place; unset
in production, where it costs one ``is None`` test per batch."""

_TEST_POISON = os.environ.get(TEST_POISON_VARIABLE) or None


class TestPoisonError(RuntimeError):
    """Raised for the test-only poison reference (:data:`TEST_POISON_VARIABLE`)."""


def raise_if_test_poison(references: Callable[[], Iterable[str | None]]) -> None:
    """Raise :class:`TestPoisonError` when the test-only poison reference is among
    ``references()`` (called only when the variable is set)."""
    if _TEST_POISON is not None and _TEST_POISON in references():
        raise TestPoisonError(f"test-only poison record ({TEST_POISON_VARIABLE})")


class Verdict(Enum):
    """What to do with a record read from a partition."""

    CLEAN = "clean"  # never failed: as usual
    SUSPECT = "suspect"  # was in a failed batch: send it in a batch of its own
    POISON = "poison"  # failed ``limit`` times: dead-letter it, do not send it


CLEAN: Final = Verdict.CLEAN
SUSPECT: Final = Verdict.SUSPECT
POISON: Final = Verdict.POISON
"""The verdicts as module constants: egress asks one per record, and on Python 3.11 reading a
member through its Enum class calls ``EnumType.__getattr__`` (~10 times a global's cost)."""


@dataclass(slots=True)
class _Suspects:
    failures: dict[int, int] = field(default_factory=dict)  # offset -> failed batches
    error: str = ""


@dataclass(slots=True)
class PoisonGuard:
    """Failure counts per partition and offset, read from and written to commit metadata."""

    limit: int
    _partitions: dict[TopicPartitionKey, _Suspects] = field(default_factory=dict)
    _dirty: set[TopicPartitionKey] = field(default_factory=set)

    def load(self, tp: TopicPartitionKey, metadata: str | None) -> None:
        """The committed metadata of a newly assigned partition (anything else is ignored)."""
        suspects = parse_metadata(metadata or "")
        if suspects.failures:
            self._partitions[tp] = suspects
        else:
            self._partitions.pop(tp, None)

    def verdict(self, tp: TopicPartitionKey, offset: int) -> Verdict:
        suspects = self._partitions.get(tp)
        if suspects is None:
            return CLEAN
        failures = suspects.failures.get(offset, 0)
        if failures >= self.limit:
            return POISON
        return SUSPECT if failures else CLEAN

    def reason(self, tp: TopicPartitionKey, offset: int) -> str:
        """The dead-letter reason of a poison record."""
        suspects = self._partitions.get(tp, _Suspects())
        failures = suspects.failures.get(offset, 0)
        return (
            f"egress failed {failures} times with this record in the batch (internal error; "
            f"last: {suspects.error or 'unknown'}); not sent again"
        )

    def failed(self, records: Iterable[tuple[TopicPartitionKey, int]], error: str) -> None:
        """A batch holding ``records`` failed with ``error``: each counts one more failure."""
        for tp, offset in records:
            suspects = self._partitions.setdefault(tp, _Suspects())
            suspects.failures[offset] = suspects.failures.get(offset, 0) + 1
            suspects.error = error[:_MAX_ERROR]
            self._dirty.add(tp)

    def take_dirty(self) -> set[TopicPartitionKey]:
        """The partitions whose counts changed since they were last taken, for a commit to
        carry. Taken, not read: a failure counted while that commit is in flight (its metadata
        already built) marks its partition again, so no later success can clear it unwritten.
        A commit that fails gives them back (:meth:`not_committed`)."""
        taken, self._dirty = self._dirty, set()
        return taken

    def not_committed(self, tps: Iterable[TopicPartitionKey]) -> None:
        """Taken partitions whose counts did not reach Kafka: carried by the next commit."""
        self._dirty.update(tps)

    def metadata(self, tp: TopicPartitionKey, position: int) -> str:
        """The metadata to commit with ``position``: the suspects at or after it."""
        suspects = self._partitions.get(tp)
        if suspects is None:
            return ""
        kept = {o: n for o, n in suspects.failures.items() if o >= position}
        suspects.failures = kept
        if not kept:
            del self._partitions[tp]
            return ""
        return format_metadata(suspects)

    def forget(self, tps: Iterable[TopicPartitionKey]) -> None:
        """Revoked: the next owner reads the counts from the committed metadata."""
        for tp in tps:
            self._partitions.pop(tp, None)
            self._dirty.discard(tp)


def poisoned(prepared: Prepared, reason: str) -> Rejected:
    """A poison record's refusal, for its client's dead-letter topic (class ``internal``)."""
    message = prepared.message
    refusal = Refusal(
        message.ref,
        reason,
        message.sender_dip_id,
        message.interface_id,
        DeadLetterReason.INTERNAL,
    )
    return Rejected(refusal, prepared.route.client)


def format_metadata(suspects: _Suspects) -> str:
    """``dcpgw-suspects/1 o:n,o:n | error``, the lowest offsets first, cut to the size limit
    (the highest offsets are dropped first: they are read last)."""
    error = _SEPARATOR + suspects.error.replace("\n", " ")
    parts: list[str] = []
    size = len(_PREFIX) + len(error)
    for offset in sorted(suspects.failures):
        part = f"{offset}:{suspects.failures[offset]}"
        if size + len(part) + 1 > _MAX_METADATA:
            break
        parts.append(part)
        size += len(part) + 1
    return _PREFIX + ",".join(parts) + error


def parse_metadata(metadata: str) -> _Suspects:
    """The inverse of :func:`format_metadata`; anything else (another tool's metadata, a
    damaged string) reads as no suspects."""
    if not metadata.startswith(_PREFIX):
        return _Suspects()
    counts, _, error = metadata[len(_PREFIX) :].partition(_SEPARATOR)
    failures: dict[int, int] = {}
    for part in counts.split(","):
        offset, _, count = part.partition(":")
        if offset.isdigit() and count.isdigit() and int(count) > 0:
            failures[int(offset)] = int(count)
    return _Suspects(failures, error)


__all__ = [
    "TEST_POISON_VARIABLE",
    "PoisonGuard",
    "TestPoisonError",
    "Verdict",
    "poisoned",
    "raise_if_test_poison",
]
