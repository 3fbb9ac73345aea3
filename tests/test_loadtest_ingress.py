"""The load test's ingress side: the pusher's latencies and failures over real HTTPS, against a
webhook of the test's own whose answers it slows down (no timing of the gateway is asserted)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from gateway.loadtest.pusher import send
from tests.dipsim_fixtures import DevPki, serve_https

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def _webhook(pki: DevPki, handler: Handler) -> AsyncIterator[str]:
    """``handler`` over TLS with the dev PKI's webhook certificate; yields the push URL."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner, base = await serve_https(app, pki)
    try:
        yield f"{base}/push"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("push_rate", [200.0, None], ids=["open loop", "flat out"])
async def test_push_latency_counts_the_wait_for_a_connection(
    pki: DevPki, push_rate: float | None
) -> None:
    """Two connections to a webhook that answers in 50 ms carry 40 pushes/s: pushes offered
    faster queue for a connection, and that wait is part of their latency."""

    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(0.05)
        return web.Response(status=201)

    count = 40
    async with _webhook(pki, slow) as url:
        pushes = [(url, b"[]", {"Content-Type": "application/json"})] * count
        result = await send(pushes, push_rate, 2, pki.ca_cert)
    assert result["statuses"] == {"201": count}
    elapsed = result["elapsed"]
    assert elapsed >= count / 2 * 0.05  # the pushes did queue
    # The push that ended the run was due no later than the last slot of the schedule (open
    # loop) or the start (flat out, all queued at once): it waited until about the end.
    last_due = (count - 1) / push_rate if push_rate else 0.0
    assert max(result["latencies"]) >= elapsed - last_due - 0.05
    assert min(result["latencies"]) >= 0.05
