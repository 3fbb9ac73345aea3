"""Per-partition commit tracking for at-least-once delivery.

Records finish out of order (batches for different senders, retries, a slow dead-letter
write), but Kafka stores one position per partition. The position may only move past a record
once that record *and every record before it* has a final outcome: accepted by the DIP with its
result record acknowledged by Kafka, or written to a dead-letter topic and acknowledged. A crash
then re-delivers at most the unfinished tail, never loses a record.

Each assignment of a partition gets a new generation: work that finishes after its partition
was revoked (and perhaps re-assigned) is ignored rather than counted against the new
assignment's records.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

TopicPartitionKey = tuple[str, int]


@dataclass(slots=True)
class _Partition:
    generation: int
    pending: deque[int] = field(default_factory=deque)
    done: set[int] = field(default_factory=set)
    position: int | None = None  # next offset to commit, once something is final
    committed: int | None = None


class OffsetTracker:
    """Pure: the caller reports consumed and finished offsets and asks what to commit."""

    def __init__(self) -> None:
        self._partitions: dict[TopicPartitionKey, _Partition] = {}
        self._generations = 0

    def track(self, tp: TopicPartitionKey, offset: int) -> int:
        """A record was consumed (in offset order per partition); returns its generation."""
        part = self._partitions.get(tp)
        if part is None:
            self._generations += 1
            part = self._partitions[tp] = _Partition(self._generations)
        part.pending.append(offset)
        return part.generation

    def finish(self, tp: TopicPartitionKey, offset: int, generation: int) -> None:
        """The record has a final outcome. Ignored for a revoked/older generation."""
        part = self._partitions.get(tp)
        if part is None or part.generation != generation:
            return
        part.done.add(offset)
        pending, done = part.pending, part.done
        while pending and pending[0] in done:
            first = pending.popleft()
            done.discard(first)
            part.position = first + 1

    def in_flight(self, tp: TopicPartitionKey | None = None) -> int:
        """Records consumed but not final (for one partition, or all)."""
        if tp is not None:
            part = self._partitions.get(tp)
            return len(part.pending) if part is not None else 0
        return sum(len(p.pending) for p in self._partitions.values())

    def committable(
        self, only: set[TopicPartitionKey] | None = None
    ) -> dict[TopicPartitionKey, int]:
        """Positions that moved since they were last committed."""
        out: dict[TopicPartitionKey, int] = {}
        for tp, part in self._partitions.items():
            if only is not None and tp not in only:
                continue
            if part.position is not None and part.position != part.committed:
                out[tp] = part.position
        return out

    def resume_position(self, tp: TopicPartitionKey) -> int | None:
        """Where a restart should resume: past what is final, else at the first record
        consumed in this assignment (``None``: nothing consumed yet)."""
        part = self._partitions.get(tp)
        if part is None:
            return None
        if part.position is not None:
            return part.position
        return part.pending[0] if part.pending else None

    def mark_committed(self, positions: dict[TopicPartitionKey, int]) -> None:
        for tp, position in positions.items():
            part = self._partitions.get(tp)
            if part is not None:
                part.committed = position

    def forget(self, tps: set[TopicPartitionKey]) -> None:
        """The partitions were revoked: drop their state; late finishes become no-ops."""
        for tp in tps:
            self._partitions.pop(tp, None)

    def partitions(self) -> list[TopicPartitionKey]:
        return list(self._partitions)
