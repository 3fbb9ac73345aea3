"""The ledger's writer: records to the audit topic, and a barrier that says they are there.

It is the DIP client's :class:`~gateway.dip.exchange.ExchangeObserver`: each request the
client sends becomes one record, queued for the ledger's writer task (the sender never waits
for it). ``settled()`` waits for every record handed over so far and raises
:class:`LedgerError` if one of the DIP client's (egress) records was not written; egress calls
it before writing a batch's outcomes, so no offset is committed ahead of the ledger (a ledger
that lags the commits would prove nothing), and stops for good on such a failure. Ingress
awaits its push's own record (``write``) before answering the DIP: only that record's fate
decides the answer, as an earlier push's failed record was that push's own 503.

The records go through a producer of their own (acks from all in-sync replicas, as every
gateway producer): the ledger's acknowledgements do not queue behind result records, and
result records do not wait for the ledger's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
from collections import deque
from collections.abc import Mapping
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer

from gateway.config import GatewayConfig
from gateway.dip.exchange import DipExchange
from gateway.kafka.clients import create_producer
from gateway.ledger import metrics
from gateway.ledger.records import egress_record, encode, now_text
from gateway.ops.logging import LogLimiter, log_limited

_log = structlog.get_logger(__name__)
_failures = LogLimiter()

_STOP_SECONDS = 10.0
_WRITTEN = {d: metrics.RECORDS.labels(d, "written") for d in ("egress", "ingress")}
_FAILED = {d: metrics.RECORDS.labels(d, "failed") for d in ("egress", "ingress")}


class LedgerError(RuntimeError):
    """A ledger record was not written: what it would have proved cannot be committed."""


class Ledger:
    """Writes ledger records to ``audit.topic``. Use as an async context manager (starts and
    stops its producer and its writer task), or pass a running ``producer`` (tests, benchmarks).

    Records are numbered in the order they are handed over. One writer task hands them to the
    producer (no task per record); ``settled(upto)`` waits until every record up to ``upto``
    is acknowledged, tracked as the lowest number still outstanding, so a wait costs the same
    however many records are in flight."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        mtls_fingerprint: str | None = None,
        producer: AIOKafkaProducer | None = None,
    ) -> None:
        self._kafka = config.kafka
        self._topic = config.audit.topic
        self._clients = {d.dip_id: c.name for c in config.clients for d in c.dip_ids}
        self._mtls = mtls_fingerprint
        self._producer = producer
        self._own_producer = producer is None
        self._queue: deque[tuple[int, str, bytes, bytes]] = deque()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._next = 0  # number of the next record
        self._outstanding: dict[int, None] = {}  # numbers not yet settled, in order
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # a heap by number
        self._first_failure: tuple[int, str] | None = None  # of the egress records
        self._watched: dict[int, asyncio.Future[str | None]] = {}  # see write()

    @property
    def topic(self) -> str:
        return self._topic

    async def __aenter__(self) -> Ledger:
        if self._producer is None:
            producer = create_producer(self._kafka)
            await producer.start()
            self._producer = producer
        self._writer = asyncio.get_running_loop().create_task(self._write(), name="ledger")
        metrics.PENDING.set_function(lambda: len(self._outstanding))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Give what is in flight a bounded wait, then stop the writer and the producer."""
        with contextlib.suppress(LedgerError, TimeoutError):
            await asyncio.wait_for(self.settled(), _STOP_SECONDS)
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        producer, self._producer = self._producer, None
        if producer is not None and self._own_producer:
            await producer.stop()

    # -- writing -------------------------------------------------------------------------

    def observe(self, exchange: DipExchange) -> None:
        """One DIP request (the DIP client calls this): its record, handed over."""
        client = self._clients.get(exchange.sender_dip_id)
        record = egress_record(exchange, client, self._mtls, now_text())
        self.record("egress", exchange.sender_dip_id, record)

    def record(self, direction: str, key: str, record: Mapping[str, Any]) -> int:
        """Hand over any record; its number, for :meth:`settled`."""
        number = self._next
        self._next = number + 1
        self._outstanding[number] = None
        self._queue.append((number, direction, key.encode(), encode(record)))
        self._wake.set()
        return number

    async def _write(self) -> None:
        queue, topic = self._queue, self._topic
        while True:
            await self._wake.wait()
            self._wake.clear()
            while queue:
                number, direction, key, value = queue.popleft()
                producer = self._producer
                try:
                    if producer is None:
                        raise LedgerError("the ledger's Kafka producer is not running")
                    acknowledged = await producer.send(topic, value=value, key=key)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # refused before it was sent (too large, closed...)
                    self._settle(number, direction, f"{type(exc).__name__}: {exc}")
                    continue
                acknowledged.add_done_callback(functools.partial(self._acked, number, direction))

    def _acked(self, number: int, direction: str, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            error: str | None = "cancelled before Kafka acknowledged it"
        else:
            exc = future.exception()
            error = None if exc is None else f"{type(exc).__name__}: {exc}"
        self._settle(number, direction, error)

    def _settle(self, number: int, direction: str, error: str | None) -> None:
        if error is None:
            _WRITTEN[direction].inc()
        else:
            _FAILED[direction].inc()
            if direction == "egress" and (
                self._first_failure is None or number < self._first_failure[0]
            ):
                self._first_failure = (number, error)
            log_limited(
                _log, _failures, "error", "ledger_record_failed", topic=self._topic, error=error
            )
        fate = self._watched.pop(number, None)
        if fate is not None and not fate.done():  # (its waiter may have given up)
            fate.set_result(error)
        outstanding = self._outstanding
        lowest = next(iter(outstanding))
        del outstanding[number]
        if number != lowest:
            return
        low = next(iter(outstanding), self._next)  # every record below it is settled
        waiters = self._waiters
        while waiters and waiters[0][0] < low:
            waiter = heapq.heappop(waiters)[2]
            if not waiter.done():  # (a waiter that gave up is cancelled)
                waiter.set_result(None)

    async def settled(self, upto: int | None = None) -> None:
        """Return once every record handed over so far (or up to number ``upto``) is settled;
        raise :class:`LedgerError` when one of the egress records among them was not written
        (for good: egress stops, and the restart starts a new ledger)."""
        if upto is None:
            upto = self._next - 1
        await self._reached(upto)
        failure = self._first_failure
        if failure is not None and failure[0] <= upto:
            raise LedgerError(f"a ledger record was not written to {self._topic}: {failure[1]}")

    async def write(self, direction: str, key: str, record: Mapping[str, Any]) -> None:
        """Hand over ``record`` (ingress: one per verified push) and return once it and every
        record before it are settled; raise :class:`LedgerError` when it was not written. Only
        its own fate counts (an earlier push's failed record was that push's 503)."""
        number = self.record(direction, key, record)
        fate: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._watched[number] = fate  # set, and dropped, when the record settles
        await self._reached(number)
        error = fate.result()
        if error is not None:
            raise LedgerError(f"a ledger record was not written to {self._topic}: {error}")

    async def _reached(self, upto: int) -> None:
        if self._outstanding and next(iter(self._outstanding)) <= upto:
            waiter = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (upto, id(waiter), waiter))
            await waiter
