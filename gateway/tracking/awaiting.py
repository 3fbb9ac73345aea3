"""Requests awaiting their response publication, per (client, interface). Pure.

Keyed by (client, correlation ID): a correlation ID is the conversation, and only the client
that sent the request is waiting for its answer (the DIP also publishes the request itself to
its recipients, which may be clients of the same DCP: that copy lands on another client's
inbound topic and answers nothing). Within a client, the first request of a correlation ID
starts the wait and the first publication carrying it ends it.

A response can be read before its request's result (two topics, read side by side): it is
remembered (bounded) so the late result does not start a wait that never ends. A request not
answered within ``horizon_ms`` stops being tracked and is counted as expired.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import NamedTuple

Group = tuple[str, str]  # (client, interface)


class GroupState(NamedTuple):
    awaiting: int
    oldest_ms: int | None  # when the oldest awaiting request was accepted (ms since epoch)


class Awaiting:
    def __init__(self, horizon_ms: int, remember: int = 100_000) -> None:
        self._horizon_ms = horizon_ms
        self._remember = remember
        # per group, correlation -> accepted at (ms); insertion order is nearly time order
        self._groups: dict[Group, dict[str, int]] = {}
        self._index: dict[tuple[str, str], Group] = {}  # (client, correlation) -> group
        self._early: OrderedDict[tuple[str, str], None] = OrderedDict()

    def request(self, client: str, interface: str, correlation: str, accepted_ms: int) -> bool:
        """Start the wait; True when its response was read already (it is answered)."""
        key = (client, correlation)
        if key in self._index:
            return False  # the conversation already waits
        if key in self._early:
            del self._early[key]
            return True
        group = (client, interface)
        self._groups.setdefault(group, {})[correlation] = accepted_ms
        self._index[key] = group
        return False

    def response(self, client: str, correlation: str) -> Group | None:
        """End the wait; the group of the request it answered, or None (remembered, in case
        the request's result is read later)."""
        key = (client, correlation)
        group = self._index.pop(key, None)
        if group is None:
            self._early[key] = None
            if len(self._early) > self._remember:
                self._early.popitem(last=False)
            return None
        del self._groups[group][correlation]
        return group

    def expire(self, now_ms: int) -> Counter[Group]:
        """Stop tracking requests older than the horizon; how many per group."""
        limit = now_ms - self._horizon_ms
        expired: Counter[Group] = Counter()
        for group, waiting in self._groups.items():
            old = [c for c, at in waiting.items() if at < limit]
            for correlation in old:
                del waiting[correlation]
                del self._index[(group[0], correlation)]
            if old:
                expired[group] = len(old)
        return expired

    def groups(self) -> dict[Group, GroupState]:
        """Every group seen, with its awaiting count and oldest acceptance time."""
        return {
            group: GroupState(len(waiting), min(waiting.values()) if waiting else None)
            for group, waiting in self._groups.items()
        }
