"""Weighted fair sharing of the DIP request slots between client MPs.

All clients share one DIP connection and ``egress.max_concurrent_requests`` slots. A plain
semaphore hands a freed slot to whoever asked first, so a client with a deep backlog (thousands
of batches queued) takes every slot and the others wait behind it. Here a freed slot goes to
the waiting client that uses the fewest slots for its weight (``clients[].weight``); among
equals, to the one that has waited longest. Sharing is work-conserving: a client alone may use
every slot, and a newcomer gets the next one that frees.

A slot is held for one request only, never across a back-off sleep or a hold (see
:mod:`gateway.egress.holds`), so a waiting batch costs the others nothing.

The next client comes off a heap of (share, turn) entries, not from a scan of the waiting
clients: a DCP with hundreds of clients frees a slot hundreds of times a second. A waiting
client's turn changes when it is granted a slot, and its share between grants only falls (it
frees a slot); each change pushes a new entry. An entry for a past turn is dropped when it
surfaces; one with an old share of the current turn never surfaces first, as the entry for the
lower share sorts ahead of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping


class FairSlots:
    """``limit`` request slots shared by clients in proportion to their weights."""

    def __init__(
        self,
        limit: int,
        weights: Mapping[str, int] | None = None,
        on_change: Callable[[str, int], None] | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self._on_change = on_change
        self._weights = dict(weights or {})
        self._used = 0
        self._in_use: dict[str, int] = {}
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}
        self._turn = 0  # tie-break: which client waited longest for a slot
        self._since: dict[str, int] = {}
        self._heap: list[tuple[float, int, str]] = []  # (share, since, client); some stale

    def in_use(self, client: str) -> int:
        return self._in_use.get(client, 0)

    @property
    def contended(self) -> bool:
        """Some request waits for a slot."""
        return bool(self._waiting)

    def waiting(self, client: str) -> int:
        queue = self._waiting.get(client)
        return len(queue) if queue else 0

    def waiting_total(self) -> int:
        """Requests of every client waiting for a slot (read when metrics are scraped)."""
        return sum(len(queue) for queue in self._waiting.values())

    @contextlib.asynccontextmanager
    async def slot(self, client: str) -> AsyncIterator[None]:
        """Hold one slot for ``client`` while the block runs."""
        await self.acquire(client)
        try:
            yield
        finally:
            self.release(client)

    async def acquire(self, client: str) -> None:
        if self._used < self._limit and not self._waiting:
            self._take(client)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiting.get(client)
        if queue is None:
            queue = self._waiting[client] = deque()
            self._turn += 1
            self._since[client] = self._turn
            self._push(client)
        queue.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(client)  # granted, then cancelled before it could run: give it back
            else:
                self._forget(client, future)
            raise

    def release(self, client: str) -> None:
        self._used -= 1
        left = self._in_use[client] - 1
        if left:
            self._in_use[client] = left
        else:
            del self._in_use[client]
        if self._on_change is not None:
            self._on_change(client, left)
        if client in self._waiting:  # its share fell: it comes sooner
            self._push(client)
        self._grant()

    def _take(self, client: str) -> None:
        self._used += 1
        used = self._in_use[client] = self._in_use.get(client, 0) + 1
        if self._on_change is not None:
            self._on_change(client, used)

    def _grant(self) -> None:
        heap = self._heap
        while self._used < self._limit and self._waiting:
            _, since, client = heapq.heappop(heap)
            if self._since.get(client) != since:
                continue  # stale: granted (a new turn) or gone since this was pushed
            queue = self._waiting[client]
            future = queue.popleft()
            if not queue:
                del self._waiting[client]
                del self._since[client]
            else:  # still waiting: behind the clients that waited longer at this share
                self._turn += 1
                self._since[client] = self._turn
            if not future.done():  # else its task was cancelled and has not run since
                self._take(client)
                future.set_result(None)
            if client in self._waiting:
                self._push(client)
        if len(heap) > 4 * len(self._waiting) + 64:  # drop the stale entries
            self._heap = [(self._share(c), self._since[c], c) for c in self._waiting]
            heapq.heapify(self._heap)

    def _share(self, client: str) -> float:
        return self._in_use.get(client, 0) / self._weights.get(client, 1)

    def _push(self, client: str) -> None:
        heapq.heappush(self._heap, (self._share(client), self._since[client], client))

    def _forget(self, client: str, future: asyncio.Future[None]) -> None:
        queue = self._waiting.get(client)
        if queue is None:
            return
        with contextlib.suppress(ValueError):
            queue.remove(future)
        if not queue:
            del self._waiting[client]
            del self._since[client]
