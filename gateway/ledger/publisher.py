"""The ledger's writer: records to the audit topic, and a barrier that says they are there.

It is the DIP client's :class:`~gateway.dip.exchange.ExchangeObserver`: each request the
client sends becomes one record, handed to the producer at once (one small task each, never
awaited by the sender). ``settled()`` waits for every record handed over so far and raises
:class:`LedgerError` if one of them was not written; egress calls it before writing a batch's
outcomes, so no offset is committed ahead of the ledger (a ledger that lags the commits would
prove nothing). Ingress awaits its push's own record before answering the DIP.

The records go through a producer of their own (acks from all in-sync replicas, as every
gateway producer): the ledger's acknowledgements do not queue behind result records, and
result records do not wait for the ledger's.
"""

from __future__ import annotations

import asyncio
import functools
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
    stops its producer), or pass a running ``producer`` (tests, benchmarks)."""

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
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def topic(self) -> str:
        return self._topic

    def client_of(self, dip_id: str) -> str | None:
        return self._clients.get(dip_id)

    async def __aenter__(self) -> Ledger:
        if self._producer is None:
            producer = create_producer(self._kafka)
            await producer.start()
            self._producer = producer
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Give what is in flight a bounded wait, then stop the producer (if it is ours)."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=_STOP_SECONDS)
        producer, self._producer = self._producer, None
        if producer is not None and self._own_producer:
            await producer.stop()

    # -- writing -------------------------------------------------------------------------

    def observe(self, exchange: DipExchange) -> None:
        """One DIP request (the DIP client calls this): its record, handed to the producer."""
        client = self._clients.get(exchange.sender_dip_id)
        record = egress_record(exchange, client, self._mtls, now_text())
        self._produce("egress", exchange.sender_dip_id, record)

    def record(self, direction: str, key: str, record: Mapping[str, Any]) -> asyncio.Task[None]:
        """Any other record (ingress: one per verified push); the task ends when it is written
        and raises when it cannot be."""
        return self._produce(direction, key, record)

    def _produce(self, direction: str, key: str, record: Mapping[str, Any]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._send(key.encode(), encode(record)))
        self._pending.add(task)
        metrics.PENDING.inc()
        task.add_done_callback(functools.partial(self._done, direction))
        return task

    async def _send(self, key: bytes, value: bytes) -> None:
        producer = self._producer
        if producer is None:
            raise LedgerError("the ledger's Kafka producer is not running")
        acknowledged = await producer.send(self._topic, value=value, key=key)
        await acknowledged

    def _done(self, direction: str, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        metrics.PENDING.dec()
        error = _error_of(task)
        if error is None:
            _WRITTEN[direction].inc()
            return
        _FAILED[direction].inc()
        log_limited(
            _log, _failures, "error", "ledger_record_failed", topic=self._topic, error=error
        )

    async def settled(self) -> None:
        """Return once every record handed over so far is acknowledged by Kafka; raise
        :class:`LedgerError` when one of them was not written."""
        pending = list(self._pending)
        if not pending:
            return
        await asyncio.wait(pending)
        for task in pending:
            error = _error_of(task)
            if error is not None:
                raise LedgerError(f"a ledger record was not written to {self._topic}: {error}")


def _error_of(task: asyncio.Task[None]) -> str | None:
    if task.cancelled():
        return "cancelled before Kafka acknowledged it"
    exc = task.exception()
    return None if exc is None else f"{type(exc).__name__}: {exc}"
