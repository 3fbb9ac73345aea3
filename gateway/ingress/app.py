"""The webhook as a plain ASGI application: read the body (bounded), check, route, answer.

Plain ASGI rather than a framework because the hot path is one route and every layer costs
per request; the decisions all live in :mod:`gateway.ingress.pipeline`. The answer is sent only
after Kafka has acknowledged (or the bounded wait has ended), so a 201 means "stored".

Two guards sit around the handler: at most ``ingress.max_concurrent_pushes`` pushes are handled
at once (more are answered 503 with ``Retry-After`` before their body is read; the DIP
retries), and any unexpected exception becomes a logged 500 with a short reason, so a bug
never leaves the DIP's request hanging. A body must arrive within
``ingress.body_timeout_seconds`` (else 408), so slow senders cannot keep those slots. A signing
header sent twice is refused (400): which copy counts would be a guess.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from gateway.ingress import metrics
from gateway.ingress.deliver import Deliverer
from gateway.ingress.ledger import record_push
from gateway.ingress.pipeline import (
    Outcome,
    Rejection,
    RoutingTable,
    answer_status,
    check_signed_push,
    check_size,
    plan_deliveries,
    rejection_body,
    response_body,
)
from gateway.ingress.routes import Route, RouteTable
from gateway.ops import tracing
from gateway.ops.logging import LogLimiter, log_limited
from gateway.signing.trust import TrustPolicy

if TYPE_CHECKING:
    from gateway.ledger.publisher import Ledger

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_log = structlog.get_logger(__name__)
_rejections_log = LogLimiter()
_JSON = [(b"content-type", b"application/json")]


def _timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S+00:00")


class WebhookHandler:
    """Checks and routes one push; independent of HTTP so tests and benchmarks can call it."""

    def __init__(
        self,
        routes: RouteTable,
        table: RoutingTable,
        trust: TrustPolicy,
        deliverer: Deliverer,
        *,
        max_body_bytes: int,
        max_skew: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        ledger: Ledger | None = None,
        ledger_timeout_seconds: float = 10.0,
    ) -> None:
        self.routes = routes
        self.ledger = ledger
        self.ledger_timeout_seconds = ledger_timeout_seconds
        self.table = table
        self.trust = trust
        self.deliverer = deliverer
        self.max_body_bytes = max_body_bytes
        self.max_skew = max_skew
        self.clock = clock

    async def handle(
        self, route: Route, signed_url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        attributes = {"dcpgw.webhook": route.kind.value, "dcpgw.recipient": route.recipient}
        parent = tracing.parent_from(headers)  # the DIP's traceparent, if it sends one
        with tracing.span("ingress.push", parent=parent, attributes=attributes):
            return await self._handle(route, signed_url, body, headers)

    async def _handle(
        self, route: Route, signed_url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        now = self.clock()
        try:
            with tracing.span("ingress.verify"):
                signer, messages = check_signed_push(
                    route,
                    signed_url,
                    body,
                    headers,
                    self.trust,
                    now,
                    self.max_skew,
                    self.max_body_bytes,
                )
        except Rejection as rejection:
            return self.reject(rejection, route, now)
        deliveries = plan_deliveries(route, messages, self.table)
        with tracing.span("ingress.produce"):
            trace = tracing.record_headers()
            if trace:  # each record carries the produce span's traceparent
                for delivery in deliveries:
                    delivery.headers.extend(trace)
            outcomes = await self.deliverer.deliver(deliveries)
        # The ledger record before the answer (none when nothing was stored: the push is
        # answered 503 anyway, and its retry leaves the record). Not written: answered as not
        # stored, so the DIP sends it again.
        stored = any(o is not Outcome.FAILED for o in outcomes)
        if (
            self.ledger is not None
            and stored
            and not await record_push(
                self.ledger,
                route,
                signer,
                headers,
                messages,
                outcomes,
                self.table,
                self.ledger_timeout_seconds,
            )
        ):
            outcomes = [Outcome.FAILED] * len(outcomes)
        status = answer_status(outcomes)
        channel = route.kind.value
        for outcome, count in Counter(outcomes).items():
            metrics.MESSAGES.labels(channel, outcome.value).inc(count)
        quarantined = [d.quarantine_reason for d in deliveries if d.quarantine_reason]
        if quarantined:
            _log.warning(
                "ingress_quarantined",
                recipient=route.recipient,
                reason=quarantined[0],
                messages=len(quarantined),
            )
        if status != 201:
            _log.warning(
                "ingress_not_all_stored",
                status=status,
                recipient=route.recipient,
                failed=outcomes.count(Outcome.FAILED),
                messages=len(outcomes),
            )
        metrics.PUSHES.labels(channel, str(status)).inc()
        return status, response_body(route, messages, outcomes, self.table.dcp_id, _timestamp(now))

    def reject(self, rejection: Rejection, route: Route | None, now: datetime) -> tuple[int, bytes]:
        """Count, log (reason and short detail, never the body) and answer a refusal."""
        metrics.REJECTED.labels(rejection.reason).inc()
        metrics.PUSHES.labels(route.kind.value if route else "none", str(rejection.status)).inc()
        log_limited(  # rate-limited: anybody can post junk at the webhook
            _log,
            _rejections_log,
            "warning",
            "ingress_rejected",
            status=rejection.status,
            reason=rejection.reason,
            detail=rejection.log_detail,
            recipient=route.recipient if route else None,
            interface=route.interface if route else None,
        )
        return rejection.status, rejection_body(rejection, _timestamp(now))


class WebhookApp:
    """ASGI entry: routing by path, method and size checks, then :class:`WebhookHandler`."""

    def __init__(
        self,
        handler: WebhookHandler,
        *,
        max_concurrent_pushes: int = 256,
        retry_after_seconds: int = 1,
        body_timeout_seconds: float = 30.0,
    ) -> None:
        self.handler = handler
        self.max_concurrent_pushes = max_concurrent_pushes
        self.retry_after_seconds = retry_after_seconds
        self.body_timeout_seconds = body_timeout_seconds
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if self.active >= self.max_concurrent_pushes:
            busy = Rejection(
                503, "busy", f"more than {self.max_concurrent_pushes} pushes in progress; retry"
            )
            status, answer = self.handler.reject(busy, None, self.handler.clock())
            retry = [(b"retry-after", str(self.retry_after_seconds).encode())]
            await _respond(send, status, answer, retry)
            return
        self.active += 1
        responded: list[bool] = []

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                responded.append(True)
            await send(message)

        try:
            await self._serve(scope, receive, tracked)
        except Exception as exc:  # last resort: a bug must not leave the DIP's request hanging
            _log.exception("ingress_internal_error", path=scope.get("path", "")[:100])
            metrics.REJECTED.labels("internal_error").inc()
            metrics.PUSHES.labels("none", "500").inc()
            if not responded:
                failure = Rejection(500, "internal_error", f"{type(exc).__name__}; see the log")
                await _respond(send, 500, rejection_body(failure, _timestamp(self.handler.clock())))
        finally:
            self.active -= 1

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path")
        path = raw.decode("latin-1") if raw else scope["path"]
        h = self.handler
        route, local_path = h.routes.resolve(path)
        try:
            if route is None:
                raise Rejection(404, "unknown_path", f"no webhook at {path[:100]}")
            if scope["method"] != "POST":
                raise Rejection(405, "method_not_allowed", f"{scope['method']} is not POST")
            raw_headers = scope["headers"]
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw_headers}
            if len(headers) != len(raw_headers):
                _check_no_repeated_signing_header(raw_headers)
            length = headers.get("content-length")
            check_size(int(length) if length and length.isdigit() else None, h.max_body_bytes)
            body = await _read_body(receive, h.max_body_bytes, self.body_timeout_seconds)
        except Rejection as rejection:
            status, answer = h.reject(rejection, route, h.clock())
            await _respond(send, status, answer)
            return
        started = time.perf_counter()
        query = scope.get("query_string", b"").decode("latin-1")
        signed_url = h.routes.public_url(local_path, query)
        # Every event of this push (quarantine, Kafka failures) names its webhook.
        with structlog.contextvars.bound_contextvars(
            webhook=route.kind.value, recipient=route.recipient
        ):
            status, answer = await h.handle(route, signed_url, body, headers)
        metrics.PUSH_SECONDS.observe(time.perf_counter() - started)
        await _respond(send, status, answer)


def _check_no_repeated_signing_header(raw_headers: list[tuple[bytes, bytes]]) -> None:
    """Refuse a push with an ``X-DIP-*`` header twice (names arrive lower-cased)."""
    seen: set[bytes] = set()
    for name, _ in raw_headers:
        if name.startswith(b"x-dip-"):
            if name in seen:
                raise Rejection(400, "malformed_header", f"{name.decode('latin-1')} sent twice")
            seen.add(name)


async def _read_body(receive: Receive, limit: int, seconds: float) -> bytes:
    try:
        async with asyncio.timeout(seconds):
            return await _read_chunks(receive, limit)
    except TimeoutError:
        raise Rejection(408, "body_timeout", f"body not received within {seconds:g} s") from None


async def _read_chunks(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Rejection(400, "client_disconnected", "the client went away mid-body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Rejection(413, "too_large", f"body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_JSON, (b"content-length", str(len(body)).encode()), *(extra or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})
