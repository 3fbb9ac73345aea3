"""Deliver one batch to the DIP: sign, send, and follow the outcome policy to a final result.

The loop around one batch lives here (retries with backoff, the secondary API key after a 401,
halving after a 413) so the service only sees final per-message deliveries. Halves are sent one
after the other, first half first, so a split never reorders messages with the same key.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import NamedTuple

import structlog

from gateway.dip import DipClient, DipTransportError
from gateway.egress import metrics
from gateway.egress.batching import Batch
from gateway.egress.outcomes import Action, Decision, MessageResult, decide, transport_failure
from gateway.egress.retry import RetryPolicy
from gateway.egress.routing import Prepared
from gateway.signing.keystore import UnknownSender

_log = structlog.get_logger(__name__)


class Delivery(NamedTuple):
    """The final word on one message (a NamedTuple: one per message, cheap to make)."""

    prepared: Prepared
    result: MessageResult
    status: int | None
    attempts: int
    submitted_at: datetime
    acknowledged_at: datetime | None


new_delivery = partial(tuple.__new__, Delivery)
"""``Delivery`` from a 6-tuple, without the named tuple's Python-level ``__new__``: one is made
per message."""


class BatchSender:
    """Sends batches through the shared :class:`DipClient`; never raises for DIP trouble."""

    def __init__(
        self,
        dip: DipClient,
        policy: RetryPolicy,
        *,
        duplicate_codes: tuple[str, ...] = (),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._dip = dip
        self._policy = policy
        self._duplicate_codes = duplicate_codes
        self._sleep = sleep
        self._rand = rand

    async def deliver(self, batch: Batch) -> list[Delivery]:
        out: list[Delivery] = []
        await self._deliver(batch, out)
        return out

    async def _deliver(self, batch: Batch, out: list[Delivery]) -> None:
        sender = batch.sender_dip_id
        try:
            keys = self._dip.keystore.api_keys_for(sender)
        except UnknownSender:
            self._final_all(batch, out, f"cannot sign: no credential for DIP ID {sender}", None, 0)
            return
        body = batch.body()
        references = [p.message.sender_unique_reference for p in batch.items]
        metrics.BATCH_SIZE.observe(len(batch.items))
        key_index = 0
        attempt = 0
        while True:
            attempt += 1
            submitted = datetime.now(UTC)
            decision = await self._attempt(
                batch, body, keys[key_index], references, key_index, keys
            )
            if decision.action is Action.FINAL:
                acknowledged = datetime.now(UTC)
                status = decision.status
                for prepared, result in zip(batch.items, decision.results, strict=True):
                    out.append(
                        new_delivery((prepared, result, status, attempt, submitted, acknowledged))
                    )
                return
            if decision.action is Action.NEXT_KEY:
                key_index += 1
                _log.warning("dip_unauthorised_trying_secondary_key", sender=sender)
                continue
            if decision.action is Action.SPLIT:
                first, second = batch.split()
                _log.info("dip_payload_too_large_splitting", sender=sender, size=len(batch.items))
                await self._deliver(first, out)
                await self._deliver(second, out)
                return
            delay = self._policy.delay(attempt, decision.retry_after, self._rand)
            if delay is None:
                reason = f"gave up after {attempt} attempts: {decision.reason}"
                self._final_all(batch, out, reason, decision.status, attempt)
                return
            client = batch.items[0].route.client.name  # one sender DIP ID: one client
            metrics.counters(client, batch.interface_id).retried.inc(len(batch.items))
            _log.warning(
                "dip_submit_retry",
                sender=sender,
                interface=batch.interface_id,
                attempt=attempt,
                delay=round(delay, 3),
                reason=decision.reason,
            )
            await self._sleep(delay)

    async def _attempt(
        self,
        batch: Batch,
        body: bytes,
        api_key: str,
        references: list[str | None],
        key_index: int,
        keys: tuple[str, ...],
    ) -> Decision:
        started = asyncio.get_running_loop().time()
        try:
            response = await self._dip.request(
                "POST", batch.path, batch.sender_dip_id, body, api_key=api_key
            )
        except DipTransportError as exc:
            metrics.REQUESTS.labels("error").inc()
            return transport_failure(exc)
        except UnknownSender:
            return _reject(
                f"cannot sign: no credential for DIP ID {batch.sender_dip_id}", len(references)
            )
        except Exception as exc:  # signing failed: the credential cannot sign this
            _log.error("dip_sign_failed", sender=batch.sender_dip_id, error=str(exc))
            return _reject(f"cannot sign: {type(exc).__name__}: {exc}", len(references))
        elapsed = asyncio.get_running_loop().time() - started
        metrics.SIGN_SECONDS.observe(response.sign_seconds)
        metrics.REQUEST_SECONDS.observe(max(elapsed - response.sign_seconds, 0.0))
        metrics.REQUESTS.labels(str(response.status)).inc()
        decision = decide(
            response.status,
            response.headers,
            response.body,
            references,
            has_next_key=key_index + 1 < len(keys),
            duplicate_codes=self._duplicate_codes,
        )
        return decision

    @staticmethod
    def _final_all(
        batch: Batch, out: list[Delivery], reason: str, status: int | None, attempts: int
    ) -> None:
        now = datetime.now(UTC)
        result = MessageResult(False, reason=reason)
        out.extend(Delivery(p, result, status, attempts, now, None) for p in batch.items)


def _reject(reason: str, count: int) -> Decision:
    """Every message of the batch rejected for the same reason (nothing was sent)."""
    return Decision(Action.FINAL, None, reason, [MessageResult(False, reason=reason)] * count)
