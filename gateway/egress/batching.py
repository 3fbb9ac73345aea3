"""Group prepared messages into DIP submissions per (sender DIP ID, interface).

A batch is one signed request, so everything in it shares a sender (one certificate, one API
key) and an interface (one ``/dip-channel/{id}``). A batch closes when it reaches
``max_messages``, when the next message would take the body past ``max_bytes``, or when its
oldest message has waited ``linger`` seconds; while the caller says signing is congested, up to
``max_linger`` seconds instead (a signature per request is the dearest work: when signatures
are scarce, each carries more messages rather than queueing behind small ones). A message
larger than ``max_bytes`` by itself goes alone (the DIP answers 413 if it is really too large,
and that is handled per message).

The body is ``[item,item,…]`` where each item is the message's ``{"payload": …}`` bytes, built
from the record's own bytes when the payload is unchanged: joining bytes is the cheapest
possible serialisation.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gateway.egress.ordering import KeyGate
from gateway.egress.routing import Prepared

BatchKey = tuple[str, str, bool]
"""(sender DIP ID, interface ID, read back from a retry topic): records read back from a retry
topic never share a batch with fresh ones, as only fresh ones may be diverted."""

_ids = itertools.count(1)


@dataclass(slots=True)
class Batch:
    """Messages for one request, in the order they were consumed."""

    key: BatchKey
    path: str
    items: list[Prepared]
    created: float
    nbytes: int = 2  # the brackets
    batch_id: int = field(default_factory=lambda: next(_ids))
    held_since: float | None = None  # epoch seconds: since when the DIP holds its client off

    @property
    def sender_dip_id(self) -> str:
        return self.key[0]

    @property
    def interface_id(self) -> str:
        return self.key[1]

    @property
    def retried(self) -> bool:
        """Its records were read back from the client's retry topic."""
        return self.key[2]

    def body(self) -> bytes:
        return build_body(self.items)

    def split(self) -> tuple[Batch, Batch]:
        """Two halves, order kept (for a 413); the caller sends the first one first."""
        mid = len(self.items) // 2
        return self.with_items(self.items[:mid]), self.with_items(self.items[mid:])

    def with_items(self, items: list[Prepared]) -> Batch:
        return Batch(
            self.key,
            self.path,
            items,
            self.created,
            body_size(items),
            self.batch_id,
            self.held_since,
        )


def body_size(items: Sequence[Prepared]) -> int:
    """Bytes of ``build_body(items)`` without building it."""
    return 2 + sum(len(p.message.item) for p in items) + max(len(items) - 1, 0)


def build_body(items: Sequence[Prepared]) -> bytes:
    """``[item,item,…]``: a JSON array built by joining the items' bytes."""
    return b"[" + b",".join([p.message.item for p in items]) + b"]"


class Batcher:
    """Open batches by key; pure (the caller passes the clock)."""

    def __init__(
        self,
        max_messages: int,
        max_bytes: int,
        linger_seconds: float,
        gate: KeyGate | None = None,
        *,
        max_linger_seconds: float | None = None,
        per_sender: bool = True,
        retry_topics: frozenset[str] = frozenset(),
    ) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self._gate = gate
        self._per_sender = per_sender
        self._retry_topics = retry_topics
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._linger = linger_seconds
        self._max_linger = max(linger_seconds, max_linger_seconds or 0.0)
        self._open: dict[BatchKey, Batch] = {}

    def __len__(self) -> int:
        """Messages waiting in open batches."""
        return sum(len(b.items) for b in self._open.values())

    def add(self, prepared: Prepared, now: float) -> list[Batch]:
        """Add one message; return the batches this closed (zero, one or two)."""
        message = prepared.message
        ref = message.ref
        key = (message.sender_dip_id, message.interface_id, ref.topic in self._retry_topics)
        size = len(message.item)
        gate_key: tuple[object, ...] | None = None
        if ref.key is not None:
            gate_key = (
                (ref.topic, ref.partition, key[0], ref.key)
                if self._per_sender
                else (ref.topic, ref.partition, ref.key)
            )
        gate = self._gate
        closed: list[Batch] = []
        batch = self._open.get(key)
        if batch is not None and (
            batch.nbytes + 1 + size > self._max_bytes
            or (
                gate is not None
                and gate_key is not None
                and not gate.join(batch.batch_id, gate_key)
            )
        ):
            closed.append(self._open.pop(key))
            batch = None
        if batch is None:
            batch = Batch(key, prepared.route.path, [prepared], now, 2 + size)
            self._open[key] = batch
            if gate is not None:
                gate.register(batch.batch_id, () if gate_key is None else (gate_key,))
        else:  # the gate (if any) has the key already: join() took it
            batch.items.append(prepared)
            batch.nbytes += 1 + size
        if len(batch.items) >= self._max_messages or batch.nbytes >= self._max_bytes:
            closed.append(self._open.pop(key))
        return closed

    def due(self, now: float, congested: bool = False) -> list[Batch]:
        """Close and return the batches whose oldest message has lingered long enough:
        ``linger`` seconds, or ``max_linger`` while ``congested``."""
        linger = self._max_linger if congested else self._linger
        keys = [k for k, b in self._open.items() if now - b.created >= linger]
        return [self._open.pop(k) for k in keys]

    def next_deadline(self, congested: bool = False) -> float | None:
        """When the oldest open batch becomes due (``None`` when nothing is open)."""
        if not self._open:
            return None
        linger = self._max_linger if congested else self._linger
        return min(b.created for b in self._open.values()) + linger

    def flush(self) -> list[Batch]:
        """Close every open batch (shutdown, rebalance)."""
        batches = list(self._open.values())
        self._open.clear()
        return batches

    def drop(self, partitions: Iterable[tuple[str, int]]) -> list[Prepared]:
        """Remove (and return) the messages from ``partitions`` that are not sent yet."""
        gone = set(partitions)
        dropped: list[Prepared] = []
        for key in list(self._open):
            batch = self._open[key]
            keep: list[Prepared] = []
            for p in batch.items:
                ref = p.message.ref
                (dropped if (ref.topic, ref.partition) in gone else keep).append(p)
            if len(keep) == len(batch.items):
                continue
            if keep:
                self._open[key] = batch.with_items(keep)
            else:
                del self._open[key]
        return dropped
