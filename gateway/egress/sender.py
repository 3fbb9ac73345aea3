"""Deliver one batch to the DIP: sign, send, and follow the outcome policy to a final result.

The loop around one batch lives here (retries with backoff, the secondary API key after a 401,
halving after a 413) so the service only sees final per-message deliveries. Halves are sent one
after the other, first half first, so a split never reorders messages with the same key.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import NamedTuple

import structlog

from gateway.dip import DipClient, DipTransportError
from gateway.egress import metrics
from gateway.egress.batching import Batch
from gateway.egress.outcomes import Action, Decision, MessageResult, decide, transport_failure
from gateway.egress.reasons import DeadLetterReason
from gateway.egress.retry import RetryPolicy
from gateway.egress.routing import Prepared
from gateway.ops import tracing
from gateway.ops.logging import LogLimiter, log_limited
from gateway.signing.keystore import UnknownSender

_log = structlog.get_logger(__name__)
_limiter = LogLimiter()


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
            reason = f"cannot sign: no credential for DIP ID {sender}"
            self._final_all(batch, out, reason, DeadLetterReason.SIGNING, None, 0)
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
            status = decision.status
            if decision.action is Action.FINAL:
                acknowledged = datetime.now(UTC)
                for prepared, result in zip(batch.items, decision.results, strict=True):
                    out.append(
                        new_delivery((prepared, result, status, attempt, submitted, acknowledged))
                    )
                if status is not None:
                    _observe_end_to_end(batch, acknowledged)
                    if status != 201:
                        _log_answer("warning", "dip_batch_not_accepted", batch, decision)
                return
            if decision.action is Action.NEXT_KEY:
                key_index += 1
                metrics.API_KEY_FALLBACKS.labels(_client(batch)).inc()
                _log_answer("warning", "dip_unauthorised_trying_secondary_key", batch, decision)
                continue
            if decision.action is Action.SPLIT:
                first, second = batch.split()
                _log_answer("info", "dip_payload_too_large_splitting", batch, decision)
                await self._deliver(first, out)
                await self._deliver(second, out)
                return
            delay = self._policy.delay(attempt, decision.retry_after, self._rand)
            if delay is None:
                reason = f"gave up after {attempt} attempts: {decision.reason}"
                cls = DeadLetterReason.RETRIES_EXHAUSTED
                self._final_all(batch, out, reason, cls, status, attempt)
                return
            metrics.counters(_client(batch), batch.interface_id).retried.inc(len(batch.items))
            _log_answer(
                "warning",
                "dip_submit_retry",
                batch,
                decision,
                attempt=attempt,
                delay=round(delay, 3),
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
            with tracing.span("dip.request", attributes=_span_attributes(batch)) as span:
                started_ns = time.time_ns() if span is not None else 0
                response = await self._dip.request(
                    "POST",
                    batch.path,
                    batch.sender_dip_id,
                    body,
                    api_key=api_key,
                    references=references,
                )
                if span is not None:  # signing ran first, inside the request (timed there)
                    sign_ns = int(response.sign_seconds * 1e9)
                    tracing.past_span("dip.sign", started_ns, started_ns + sign_ns)
                    span.set_attribute("http.response.status_code", response.status)
        except DipTransportError as exc:
            metrics.REQUESTS.labels(_client(batch), "error").inc()
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
        metrics.REQUESTS.labels(_client(batch), str(response.status)).inc()
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
        batch: Batch,
        out: list[Delivery],
        reason: str,
        reason_class: DeadLetterReason,
        status: int | None,
        attempts: int,
    ) -> None:
        now = datetime.now(UTC)
        result = MessageResult(False, reason=reason, reason_class=reason_class)
        out.extend(Delivery(p, result, status, attempts, now, None) for p in batch.items)


def _reject(reason: str, count: int) -> Decision:
    """Every message of the batch rejected for the same reason (nothing was sent)."""
    result = MessageResult(False, reason=reason, reason_class=DeadLetterReason.SIGNING)
    return Decision(Action.FINAL, None, reason, [result] * count)


def _span_attributes(batch: Batch) -> dict[str, object] | None:
    if not tracing.enabled():
        return None
    return {"http.request.method": "POST", "url.path": batch.path, "dcpgw.size": len(batch.items)}


def _client(batch: Batch) -> str:
    return batch.items[0].route.client.name  # one sender DIP ID: one client


def _observe_end_to_end(batch: Batch, acknowledged: datetime) -> None:
    """Age of the batch's first record (consumed first) at the DIP's answer: one observation
    per answered request, an upper bound for most of its messages, at no per-message cost."""
    produced_ms = batch.items[0].message.ref.timestamp_ms
    if produced_ms > 0:
        age = acknowledged.timestamp() - produced_ms / 1000
        metrics.END_TO_END_SECONDS.observe(max(age, 0.0))


def _log_answer(level: str, event: str, batch: Batch, decision: Decision, **extra: object) -> None:
    """One rate-limited event for a DIP answer that was not a plain 201: who, what, how many,
    the first message it concerns (its reference, and the DIP's transaction ID if any) and why.
    """
    index = next((i for i, r in enumerate(decision.results) if not r.accepted), 0)
    result = decision.results[index] if decision.results else None
    log_limited(
        _log,
        _limiter,
        level,
        event,
        client=_client(batch),
        dip_id=batch.sender_dip_id,
        interface=batch.interface_id,
        status=decision.status,
        count=len(batch.items),
        first_sender_unique_reference=batch.items[index].message.sender_unique_reference,
        first_transaction_id=result.transaction_id if result else None,
        reason=(result.reason if result and result.reason else decision.reason),
        **extra,
    )
