"""The load test's ingress side: the pusher's latencies and failures over real HTTPS, against a
webhook of the test's own whose answers it slows down, and the runner's bounds on a pusher
(real processes), and the count of distinct messages on inbound topics (real Kafka); no
timing of the gateway is asserted."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from gateway.dip.webhook_urls import publication_callback_url
from gateway.ingress.samples import body_of, publication
from gateway.loadtest.egress import RecordCounter
from gateway.loadtest.pusher import PUSH_TIMEOUT, send
from gateway.loadtest.runner import _pusher_deadline, _pusher_output
from gateway.loadtest.scenarios import IngressPhase
from gateway.signing.credentials import load_credential
from tests.dipsim_fixtures import DevPki, serve_https
from tests.ingress_fixtures import gateway_config, push, running, tx
from tests.kafka_fixtures import KafkaUnderTest

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


async def test_a_push_left_unanswered_fails_once_its_timeout_is_over(pki: DevPki) -> None:
    """A wedged webhook costs each push its timeout, not aiohttp's default five minutes: the
    push counts as failed (status 0) and as at least that long."""
    release = asyncio.Event()

    async def wedged(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=201)

    async with _webhook(pki, wedged) as url:
        try:
            pushes = [(url, b"[]", {"Content-Type": "application/json"})] * 3
            sending = send(pushes, None, 2, pki.ca_cert, push_timeout=0.3)
            result = await asyncio.wait_for(sending, 10)
        finally:
            release.set()  # the server's handlers end, so its cleanup does not wait for them
    assert result["statuses"] == {"0": 3}
    assert min(result["latencies"]) >= 0.3
    assert max(result["latencies"]) >= 0.6  # the third waited for a connection first


async def _sleeper() -> asyncio.subprocess.Process:
    """A process that would run far longer than any test: a stand-in pusher or gateway."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(600)", stdout=asyncio.subprocess.PIPE
    )


async def test_a_pusher_past_its_deadline_is_killed_and_fails_the_phase() -> None:
    pusher, gateway = await _sleeper(), await _sleeper()
    try:
        started = time.monotonic()
        with pytest.raises(RuntimeError, match=r"^flat out: the pusher was not done within"):
            await _pusher_output(pusher, gateway.pid, "flat out", 1.0)
        assert time.monotonic() - started < 5
        assert pusher.returncode is not None  # killed and reaped
    finally:
        for proc in (pusher, gateway):
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


async def test_a_gateway_that_ends_fails_the_phase_at_once() -> None:
    pusher, gateway = await _sleeper(), await _sleeper()
    try:
        gateway.kill()
        await gateway.wait()
        started = time.monotonic()
        with pytest.raises(RuntimeError, match=r"^open loop: the gateway process ended"):
            await _pusher_output(pusher, gateway.pid, "open loop", 300.0)
        assert time.monotonic() - started < 5
        assert pusher.returncode is not None
    finally:
        if pusher.returncode is None:
            pusher.kill()
        await pusher.wait()


def test_the_pusher_deadline_covers_the_schedule_and_is_bounded() -> None:
    open_loop = IngressPhase("open loop", 1000, push_rate=10.0, concurrency=16)
    assert _pusher_deadline(open_loop) > 1000 / 10.0 + PUSH_TIMEOUT
    flat_out = IngressPhase("flat out", 1_000_000, concurrency=16)
    assert _pusher_deadline(flat_out) < 3600


async def test_inbound_messages_are_counted_once_each_and_repeats_as_duplicates(
    kafka: KafkaUnderTest, dev_pki: Path
) -> None:
    """The gateway itself writes a message twice when the DIP replays it: five records, of four
    messages (the same transaction to another recipient is another message)."""
    config = gateway_config(dev_pki, kafka.settings())
    signer = load_credential(dev_pki / "dip" / "signing.pfx")
    first, second = config.clients[:2]
    a, b = first.dip_ids[0].dip_id, second.dip_ids[0].dip_id
    t1, t2, t3 = tx(), tx(), tx()
    pushes = [
        (a, [publication(a, t, mpan=None) for t in (t1, t2, t3)]),
        (a, [publication(a, t2, mpan=None, replay=True)]),
        (b, [publication(b, t1, mpan=None)]),
    ]
    async with running(config) as (_, http):
        for recipient, items in pushes:
            url = publication_callback_url(config.ingress, "IF-043", recipient)
            answer = await push(http, url, body_of(items), signer)
            assert answer.status_code == 201, answer.text
    inbound = {first.topics.inbound, second.topics.inbound}
    assert all(inbound)
    counter = RecordCounter(config, {t for t in inbound if t})
    async with counter:
        assert await counter.count_to_end() == 4
    assert counter.duplicates == 1
    assert counter.unidentified == 0
