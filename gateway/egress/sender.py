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
from gateway.egress.fairness import FairSlots
from gateway.egress.holds import ClientHolds, HoldKind, hold_kind
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


_PRIMARY_RETRY_SECONDS = 300.0
"""A primary API key the DIP refused is skipped (the secondary goes first) until its file
changes or this long has passed; then the primary is tried again."""


class Sent(NamedTuple):
    """What became of a batch: final deliveries, and the parts held off by the DIP that the
    caller may move out of the way (a divertable batch of a held client)."""

    deliveries: list[Delivery]
    held: list[Batch]


class BatchSender:
    """Sends batches through the shared :class:`DipClient`; never raises for DIP trouble.

    A request holds one of the client's fair slots (:class:`FairSlots`) while it is signed and
    sent, never while it waits: back-off sleeps and client holds (:class:`ClientHolds`) hold
    no slot. Push-back that concerns the client (429, 502-504, no answer, 401/403 with every
    key) holds the client; push-back that concerns the request (500, 408, 425) is retried with
    back-off up to ``max_attempts``."""

    def __init__(
        self,
        dip: DipClient,
        policy: RetryPolicy,
        *,
        duplicate_codes: tuple[str, ...] = (),
        holds: ClientHolds | None = None,
        slots: FairSlots | None = None,
        hold_budget_seconds: float = 21_600.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._dip = dip
        self._policy = policy
        self._duplicate_codes = duplicate_codes
        self._holds = holds or ClientHolds(policy, auth_probe_seconds=60.0, rand=rand)
        self._slots = slots or FairSlots(32)
        self._budget = hold_budget_seconds
        self._sleep = sleep
        self._rand = rand
        self._clock = clock
        self._refused_primary: dict[str, tuple[str, float]] = {}

    @property
    def holds(self) -> ClientHolds:
        return self._holds

    async def deliver(self, batch: Batch, *, divertable: bool = False) -> Sent:
        """Final deliveries for the batch's messages; with ``divertable``, a part whose client
        is held comes back in ``held`` instead of waiting here."""
        out = Sent([], [])
        await self._deliver(batch, out, divertable)
        return out

    async def _deliver(self, batch: Batch, out: Sent, divertable: bool) -> None:
        sender = batch.sender_dip_id
        client = _client(batch)
        keystore = self._dip.keystore
        try:
            keys = keystore.api_keys_for(sender)
        except UnknownSender:
            reason = f"cannot sign: no credential for DIP ID {sender}"
            self._final_all(batch, out, reason, DeadLetterReason.SIGNING, None, 0)
            return
        body = batch.body()
        references = [p.message.sender_unique_reference for p in batch.items]
        metrics.BATCH_SIZE.observe(len(batch.items))
        key_index = self._first_key(sender, keys)
        holds = self._holds
        sent = 0  # requests sent (the attempts reported)
        failed = 0  # answers about the request itself, counted against max_attempts
        probe = False  # this batch is its held client's probe
        next_key = False  # the DIP refused the key: try the next one, still as the probe
        while True:
            if not next_key:
                if divertable and holds.get(client) is not None:
                    if batch.held_since is None:
                        batch.held_since = self._clock()
                    out.held.append(batch)
                    return
                probe = await holds.admit(client, partial(keystore.api_keys_for, sender))
                if self._expired(batch, client, out, sent):
                    if probe:
                        holds.abandon(client)
                    return
                if probe:  # the credentials may have changed while the client was held
                    keys = keystore.api_keys_for(sender)
                    key_index = self._first_key(sender, keys)
            next_key = False
            try:
                async with self._slots.slot(client):
                    if not probe and holds.get(client) is not None:
                        continue  # held while it queued for the slot: divert, or wait
                    sent += 1
                    submitted = datetime.now(UTC)
                    decision = await self._attempt(
                        batch, body, keys[key_index], references, key_index, keys
                    )
            except BaseException:
                if probe:
                    holds.abandon(client)
                raise
            status = decision.status
            kind = None
            if decision.action is Action.RETRY or decision.action is Action.FINAL:
                kind = hold_kind(status, retryable=decision.action is Action.RETRY)
            if kind is not None:
                if batch.held_since is None:
                    batch.held_since = self._clock()
                new = holds.get(client) is None
                holds.hold(
                    client, kind, decision.reason, decision.retry_after, probe=probe, token=keys
                )
                if new:
                    _log_answer("warning", "dip_client_held", batch, decision, hold=kind.value)
                continue
            if decision.action is Action.NEXT_KEY:
                if key_index == 0:
                    self._refused_primary[sender] = (keys[0], time.monotonic())
                key_index += 1
                next_key = True
                metrics.API_KEY_FALLBACKS.labels(client).inc()
                _log_answer("warning", "dip_unauthorised_trying_secondary_key", batch, decision)
                continue
            if probe:
                holds.clear(client)
                probe = False
                _log_answer("info", "dip_client_released", batch, decision)
            if decision.action is Action.FINAL:
                acknowledged = datetime.now(UTC)
                for prepared, result in zip(batch.items, decision.results, strict=True):
                    out.deliveries.append(
                        new_delivery((prepared, result, status, sent, submitted, acknowledged))
                    )
                if status is not None:
                    _observe_end_to_end(batch, acknowledged)
                    if status != 201:
                        _log_answer("warning", "dip_batch_not_accepted", batch, decision)
                return
            if decision.action is Action.SPLIT:
                first, second = batch.split()
                _log_answer("info", "dip_payload_too_large_splitting", batch, decision)
                held = len(out.held)
                await self._deliver(first, out, divertable)
                if len(out.held) > held:  # the second half must not overtake the first
                    out.held.append(second)
                    return
                await self._deliver(second, out, divertable)
                return
            if key_index == 0:  # the DIP took the primary key this time
                self._refused_primary.pop(sender, None)
            failed += 1
            delay = self._policy.delay(failed, decision.retry_after, self._rand)
            if delay is None:
                reason = f"gave up after {sent} attempts: {decision.reason}"
                cls = DeadLetterReason.RETRIES_EXHAUSTED
                self._final_all(batch, out, reason, cls, status, sent)
                return
            metrics.counters(client, batch.interface_id).retried.inc(len(batch.items))
            _log_answer(
                "warning", "dip_submit_retry", batch, decision, attempt=sent, delay=round(delay, 3)
            )
            await self._sleep(delay)

    def _first_key(self, sender: str, keys: tuple[str, ...]) -> int:
        """0, or 1 while the primary key is one the DIP refused (and it has not changed)."""
        refused = self._refused_primary.get(sender)
        if refused is None or len(keys) < 2:
            return 0
        key, when = refused
        if key != keys[0] or time.monotonic() - when > _PRIMARY_RETRY_SECONDS:
            del self._refused_primary[sender]
            return 0
        return 1

    def _expired(self, batch: Batch, client: str, out: Sent, sent: int) -> bool:
        """Dead-letter the batch when it has been held longer than the budget."""
        since = batch.held_since
        hold = self._holds.get(client)
        if since is None or hold is None or self._clock() - since <= self._budget:
            return False  # the budget runs while the DIP holds the client off, not otherwise
        cls = DeadLetterReason.DIP_AUTH if hold.kind is HoldKind.AUTH else None
        hours = (self._clock() - since) / 3600
        reason = (
            f"held for {hours:.2f} h, past egress.hold_budget_seconds: the DIP kept pushing "
            f"back on client {client}: {hold.reason}"
        )
        self._final_all(batch, out, reason, cls or DeadLetterReason.RETRIES_EXHAUSTED, None, sent)
        return True

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
        out: Sent,
        reason: str,
        reason_class: DeadLetterReason,
        status: int | None,
        attempts: int,
    ) -> None:
        now = datetime.now(UTC)
        result = MessageResult(False, reason=reason, reason_class=reason_class)
        out.deliveries.extend(Delivery(p, result, status, attempts, now, None) for p in batch.items)


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
