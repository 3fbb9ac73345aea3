"""A bounded memory of what has been routed, so a re-pushed publication is routed once.

The DIP retries a push it did not see acknowledged (and requeues on request); both bring
transaction IDs the gateway has already put on Kafka. The key is (channel, recipient DIP ID,
transaction ID): the same transaction legitimately reaches two recipients that are both
clients of this DCP (primary and secondary), and each must get it. Keys are remembered only
once Kafka has acknowledged them, and the oldest are forgotten first when the window is full:
memory stays bounded, and a duplicate older than the window is routed again (at-least-once,
which consumers must tolerate anyway). Replays (``D0.replayIndicator``) an operator asked for
are routed again despite the window: see :mod:`gateway.ingress.deliver`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

DedupKey = tuple[str, str, str]


class DedupWindow:
    """Insertion-ordered set with a capacity; ``capacity=0`` turns de-duplication off."""

    __slots__ = ("_capacity", "_keys", "contains")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._keys: OrderedDict[DedupKey, None] = OrderedDict()
        #: ``key in window`` without a Python call (once per message of every push)
        self.contains: Callable[[DedupKey], bool] = self._keys.__contains__

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: DedupKey) -> bool:
        return key in self._keys

    def add(self, key: DedupKey) -> None:
        self.add_all((key,))

    def add_all(self, keys: Iterable[DedupKey]) -> None:
        """Remember ``keys`` (a push's, at once: one call per Kafka batch, not per message)."""
        if self._capacity <= 0:
            return
        remembered = self._keys
        move_to_end = remembered.move_to_end
        for key in keys:
            remembered[key] = None
            move_to_end(key)
        while len(remembered) > self._capacity:
            remembered.popitem(last=False)
