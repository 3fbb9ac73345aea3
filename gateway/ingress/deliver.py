"""Produce planned deliveries to Kafka once each, and report each one's outcome.

The thin imperative shell around :mod:`gateway.ingress.pipeline`: every record of a push is
appended to the producer's per-partition batch builders at once (:mod:`gateway.kafka.writer`,
shared with every other push being produced) and the acknowledgements are gathered afterwards,
so a push of a hundred messages costs one round of broker requests, not a hundred, and one
future per builder, not one per record. The whole wait is bounded
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
from dataclasses import dataclass, field
from typing import Any

from gateway.ingress.dedup import DedupKey, DedupWindow
from gateway.ingress.pipeline import Delivery, Outcome
from gateway.kafka.writer import RecordWriter


@dataclass(slots=True)
class _Claim:
    """The keys of one push in flight: ``done`` tells identical copies that arrive meanwhile
    whether every record of the push was stored, once the last of its builders settled."""

    done: asyncio.Future[bool]
    builders: int = 0
    ok: bool = True
    keys: list[DedupKey] = field(default_factory=list)


class Deliverer:
    """Dedup + produce + gather. ``producer`` is an aiokafka producer, or None while Kafka
    has not been reached yet (every delivery then fails, and the push gets a 503)."""

    def __init__(self, producer: Any | None, window: DedupWindow, timeout_seconds: float) -> None:
        self.producer = producer
        self.window = window
        self._timeout = timeout_seconds
        self._in_flight: dict[DedupKey, asyncio.Future[bool]] = {}
        self._writer: RecordWriter | None = None

    async def deliver(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(deliveries)
        mine: list[tuple[int, Delivery]] = []
        theirs: list[tuple[int, asyncio.Future[bool]]] = []
        seen, in_flight = self.window.contains, self._in_flight
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout  # one bound for the whole push
        claim = _Claim(loop.create_future())
        for i, d in enumerate(deliveries):
            key = d.dedup_key
            if seen(key) and not d.replay:
                outcomes[i] = Outcome.DUPLICATE
                continue
            pending = in_flight.get(key)
            if pending is not None:
                theirs.append((i, pending))
                continue
            in_flight[key] = claim.done
            claim.keys.append(key)
            mine.append((i, d))
        if mine:
            acked = await self._produce(mine, claim, deadline)
            for (i, d), ok in zip(mine, acked, strict=True):
                if not ok:
                    outcomes[i] = Outcome.FAILED
                elif d.quarantine_reason is None:
                    outcomes[i] = Outcome.ROUTED
                else:
                    outcomes[i] = Outcome.QUARANTINED
        if theirs:  # a retry's copies share the first push's claim: one wait for them all
            left = max(deadline - loop.time(), 0.0)
            await asyncio.wait({fut for _, fut in theirs}, timeout=left)
            for i, fut in theirs:
                ok = fut.done() and fut.result()
                outcomes[i] = Outcome.DUPLICATE if ok else Outcome.FAILED
        return [o if o is not None else Outcome.FAILED for o in outcomes]

    async def close(self) -> None:
        """Stop the writer's lanes before the producer stops (their records fail)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.close()

    async def _produce(
        self, mine: Sequence[tuple[int, Delivery]], claim: _Claim, deadline: float
    ) -> list[bool]:
        """Append all, then wait for all acks (bounded); per record, True where Kafka
        acknowledged it.

        The push's keys stay in flight until Kafka settles their builders, not only until the
        push is answered: the producer keeps retrying a record after the webhook said 503, so
        during a broker outage each DIP retry of the push would otherwise queue one more copy
        (all of which land when the broker is back). A retry instead waits on the first copy.
        """
        writer = self._writer_for(self.producer)
        handed: list[tuple[asyncio.Future[None], Sequence[Delivery]]] = []
        try:
            if writer is not None:
                async with asyncio.timeout_at(deadline):
                    handed = await writer.submit([d for _, d in mine])
                    await asyncio.wait(self._watch(handed, claim))
        except TimeoutError:
            pass
        except Exception:  # the topic's partitions unreadable, or the producer stopped
            pass
        finally:
            if not handed:  # nothing reached the producer: nothing will settle the keys
                self._release(claim, ok=False)
        stored: set[int] = set()  # id() of each stored delivery (all alive in ``mine``)
        for builder, records in handed:
            if builder.done() and not builder.cancelled() and builder.exception() is None:
                stored.update(map(id, records))
        return [id(d) in stored for _, d in mine]

    def _watch(
        self, handed: list[tuple[asyncio.Future[None], Sequence[Delivery]]], claim: _Claim
    ) -> set[asyncio.Future[None]]:
        """Settle each builder's keys when Kafka answers for it; the push's builders."""
        claim.builders = len(handed)
        for builder, records in handed:
            keys = [d.dedup_key for d in records]
            builder.add_done_callback(functools.partial(self._settled, claim, keys))
        return {builder for builder, _ in handed}

    def _writer_for(self, producer: Any | None) -> RecordWriter | None:
        """The writer of the current producer (a new one when the producer was replaced)."""
        writer = self._writer
        if producer is None:
            return None
        if writer is None or writer.producer is not producer:  # Kafka reached (again)
            writer = self._writer = RecordWriter(producer)
        return writer

    def _settled(self, claim: _Claim, keys: list[DedupKey], builder: asyncio.Future[None]) -> None:
        """Kafka's answer for one of a push's builders, in time for the push's answer or not:
        its keys are remembered when stored (a late failure was already reported as
        ``failed``, and is only retrieved). Copies waiting on the push learn whether all of it
        was stored once its last builder is settled."""
        ok = not builder.cancelled() and builder.exception() is None
        self._forget(keys, ok=ok)
        claim.ok = claim.ok and ok
        claim.builders -= 1
        if claim.builders == 0 and not claim.done.done():
            claim.done.set_result(claim.ok)

    def _release(self, claim: _Claim, *, ok: bool) -> None:
        self._forget(claim.keys, ok=ok)
        if not claim.done.done():
            claim.done.set_result(ok)

    def _forget(self, keys: list[DedupKey], *, ok: bool) -> None:
        """No longer in flight; remembered in the window when stored."""
        if ok:
            self.window.add_all(keys)
        pop = self._in_flight.pop
        for key in keys:
            pop(key, None)
