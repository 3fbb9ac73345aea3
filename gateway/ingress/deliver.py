"""Produce planned deliveries to Kafka once each, and report each one's outcome.

The thin imperative shell around :mod:`gateway.ingress.pipeline`: every record of a push is
handed to the producer first and the acknowledgements are gathered afterwards, so a push of a
hundred messages costs one round of broker requests, not a hundred. The whole wait is bounded
(``ingress.produce_timeout_seconds``) so the webhook answers in bounded time; what is not
acknowledged by then is reported ``failed`` and the DIP retries the push.

De-duplication is two-level: keys acknowledged by Kafka live in the bounded
:class:`~gateway.ingress.dedup.DedupWindow`; keys still in flight are held as futures, so a
duplicate that arrives while the first copy is being produced waits for that copy's outcome
instead of being acknowledged blindly (if the first copy then fails, both are reported failed
and the DIP retries).

Replays are routed again. A publication whose ``D0.replayIndicator`` is true comes from a
requeue (or replay) an operator asked the DIP for, typically because something downstream lost
or must re-process what was delivered; swallowing it as a duplicate would make that request a
silent no-op for as long as the window remembers the transaction. So a replay skips the window
check (it still joins an identical copy already in flight, and is remembered once acknowledged,
so the DIP's own retries of an ordinary push stay de-duplicated). The cost is at-least-once: a
DIP retry of a replay push whose answer was lost lands twice, which consumers tolerate anyway.
The ``dip-replay-indicator`` header tells consumers which records are replays.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any

from gateway.ingress.dedup import DedupKey, DedupWindow
from gateway.ingress.pipeline import Delivery, Outcome


class Deliverer:
    """Dedup + produce + gather. ``producer`` is an aiokafka producer, or None while Kafka
    has not been reached yet (every delivery then fails, and the push gets a 503)."""

    def __init__(self, producer: Any | None, window: DedupWindow, timeout_seconds: float) -> None:
        self.producer = producer
        self.window = window
        self._timeout = timeout_seconds
        self._in_flight: dict[DedupKey, asyncio.Future[bool]] = {}

    async def deliver(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(deliveries)
        mine: list[tuple[int, Delivery]] = []
        theirs: list[tuple[int, asyncio.Future[bool]]] = []
        loop = asyncio.get_running_loop()
        for i, d in enumerate(deliveries):
            if d.dedup_key in self.window and not d.replay:
                outcomes[i] = Outcome.DUPLICATE
                continue
            pending = self._in_flight.get(d.dedup_key)
            if pending is not None:
                theirs.append((i, pending))
                continue
            self._in_flight[d.dedup_key] = loop.create_future()
            mine.append((i, d))
        if mine:
            acked = await self._produce(mine)
            for i, d in mine:
                if not acked.get(i, False):
                    outcomes[i] = Outcome.FAILED
                elif d.quarantine_reason is None:
                    outcomes[i] = Outcome.ROUTED
                else:
                    outcomes[i] = Outcome.QUARANTINED
        for i, fut in theirs:
            try:
                ok = await asyncio.wait_for(asyncio.shield(fut), self._timeout)
            except TimeoutError:
                ok = False
            outcomes[i] = Outcome.DUPLICATE if ok else Outcome.FAILED
        return [o if o is not None else Outcome.FAILED for o in outcomes]

    async def _produce(self, mine: Sequence[tuple[int, Delivery]]) -> dict[int, bool]:
        """Send all, then wait for all acks (bounded); True where Kafka acknowledged.

        A key stays in flight until Kafka settles its record, not only until the push is
        answered: the producer keeps retrying a record after the webhook said 503, so during
        a broker outage each DIP retry of the push would otherwise queue one more copy (all of
        which land when the broker is back). A retry instead waits on the first copy.
        """
        producer = self.producer
        sent: list[tuple[int, asyncio.Future[Any]]] = []
        try:
            if producer is not None:
                async with asyncio.timeout(self._timeout):
                    for i, d in mine:
                        try:
                            fut = await producer.send(
                                d.topic, value=d.value, key=d.key, headers=d.headers
                            )
                        except Exception:  # a record the broker refuses fails alone
                            continue
                        fut.add_done_callback(functools.partial(self._settled, d.dedup_key))
                        sent.append((i, fut))
                    if sent:
                        await asyncio.wait([f for _, f in sent])
        except TimeoutError:
            pass
        finally:
            attached = {i for i, _ in sent}
            for i, d in mine:
                if i not in attached:  # never reached the producer: nothing will settle it
                    self._release(d.dedup_key, ok=False)
        return {
            i: fut.done() and not fut.cancelled() and fut.exception() is None for i, fut in sent
        }

    def _settled(self, key: DedupKey, fut: asyncio.Future[Any]) -> None:
        """Kafka's answer for ``key``, in time for the push's answer or not: remembered when
        stored (a late failure was already reported as ``failed``, and is only retrieved)."""
        ok = not fut.cancelled() and fut.exception() is None
        if ok:
            self.window.add(key)
        self._release(key, ok=ok)

    def _release(self, key: DedupKey, *, ok: bool) -> None:
        holder = self._in_flight.pop(key, None)
        if holder is not None and not holder.done():
            holder.set_result(ok)
