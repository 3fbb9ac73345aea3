"""The key ordering gate: records with the same Kafka key reach the DIP in offset order.

A batch registers a key the moment a message with that key joins it (not when the batch
closes: batches for different senders close in any order, so close order says nothing about
offset order). A batch may be sent only when, for every key it carries, it is the oldest
unfinished batch holding that key. A batch keeps its keys while it is retried or split, so a
retry of an earlier message can never be overtaken by a later message with the same key.
Records without a key carry no constraint.

Batch ids grow with creation, and a batch may only ever wait for batches with smaller ids: a
message whose key is already held by a *newer* batch must not join an older open batch (that
would make the two wait for each other). :meth:`KeyGate.join` tells the batcher so; it
closes the older batch and starts a new one. Hence the gate cannot deadlock.

Keys are scoped by (topic, partition, sender DIP ID, key) by default: Kafka orders records only
within a partition, and different MPs are independent parties (the DIP does not order across
senders), so one held client never holds another's records with the same MPAN. With
``egress.ordering_scope: key`` the scope is (topic, partition, key).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

GateKey = Hashable


class KeyGate:
    """Pure bookkeeping: who holds which keys, who waits for whom."""

    def __init__(self) -> None:
        self._queues: dict[GateKey, list[int]] = {}  # short: a list beats a deque to make
        self._keys: dict[int, dict[GateKey, None]] = {}  # ordered sets
        self._blocked: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def register(self, batch_id: int, keys: Iterable[GateKey]) -> bool:
        """Register a new batch; True when it may be sent now."""
        unique = dict.fromkeys(keys)
        blocked = 0
        for key in unique:
            queue = self._queues.get(key)
            if queue is None:
                self._queues[key] = [batch_id]
            else:
                queue.append(batch_id)
                blocked += 1
        self._keys[batch_id] = unique
        self._blocked[batch_id] = blocked
        return blocked == 0

    def join(self, batch_id: int, key: GateKey) -> bool:
        """A message with ``key`` asks to join the registered, open batch ``batch_id``.

        False when a newer batch already holds ``key``: the message may not join (it would
        overtake, or deadlock with, the newer batch's message), so the caller closes
        ``batch_id`` and starts a new batch. Otherwise the batch holds ``key`` from now on."""
        queue = self._queues.get(key)
        if queue is None:
            self._queues[key] = [batch_id]
        else:
            newest = queue[-1]
            if newest != batch_id:
                if newest > batch_id:
                    return False
                queue.append(batch_id)
                self._blocked[batch_id] += 1
        self._keys[batch_id][key] = None
        return True

    def is_ready(self, batch_id: int) -> bool:
        return self._blocked.get(batch_id) == 0

    def release(self, batch_id: int) -> list[int]:
        """The batch is final (or abandoned): return the batches that may go now."""
        keys = self._keys.pop(batch_id, {})
        self._blocked.pop(batch_id, None)
        ready: list[int] = []
        for key in keys:
            queue = self._queues[key]
            if queue[0] == batch_id:
                queue.pop(0)
                if not queue:
                    del self._queues[key]
                    continue
                head = queue[0]
                self._blocked[head] -= 1
                if self._blocked[head] == 0:
                    ready.append(head)
            else:
                # Abandoned while waiting: nobody was waiting on it for this key.
                queue.remove(batch_id)
        return ready
