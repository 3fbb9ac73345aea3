"""Client holds: one probe at a time, Retry-After and back-off between probes, release for all."""

from __future__ import annotations

import asyncio

import pytest

from gateway.egress.holds import ClientHolds, HoldKind, hold_kind
from gateway.egress.retry import RetryPolicy

_POLICY = RetryPolicy(max_attempts=8, initial_seconds=0.02, max_seconds=0.05)


def test_which_answers_hold_the_client() -> None:
    assert hold_kind(429, retryable=True) is HoldKind.THROTTLED
    assert hold_kind(503, retryable=True) is HoldKind.UNAVAILABLE
    assert hold_kind(502, retryable=True) is HoldKind.UNAVAILABLE
    assert hold_kind(None, retryable=True) is HoldKind.UNAVAILABLE  # no answer
    assert hold_kind(401, retryable=False) is HoldKind.AUTH
    assert hold_kind(403, retryable=False) is HoldKind.AUTH
    # About the request, not the client: retried or final per message.
    assert hold_kind(500, retryable=True) is None
    assert hold_kind(408, retryable=True) is None
    assert hold_kind(400, retryable=False) is None
    assert hold_kind(201, retryable=False) is None


async def test_one_batch_probes_and_its_success_releases_every_waiter() -> None:
    holds = ClientHolds(_POLICY, auth_probe_seconds=60)
    holds.hold("a", HoldKind.THROTTLED, "429", retry_after=0.05)
    admitted: list[bool] = []

    async def batch() -> None:
        admitted.append(await holds.admit("a"))

    tasks = [asyncio.create_task(batch()) for _ in range(5)]
    await asyncio.sleep(0.02)
    assert admitted == []  # Retry-After not over: nobody goes
    await asyncio.sleep(0.06)
    assert admitted == [True]  # exactly one probe
    holds.clear("a")
    await asyncio.gather(*tasks)
    assert admitted == [True, False, False, False, False]
    assert holds.get("a") is None


async def test_a_refused_probe_extends_the_hold_and_the_next_probe_waits_longer() -> None:
    rand = iter([1.0, 1.0, 1.0]).__next__
    holds = ClientHolds(_POLICY, auth_probe_seconds=60, rand=rand)
    first = holds.hold("a", HoldKind.UNAVAILABLE, "no answer")
    assert first.until - first.since == pytest.approx(0.02)
    assert await asyncio.wait_for(holds.admit("a"), 1) is True
    second = holds.hold("a", HoldKind.UNAVAILABLE, "no answer", probe=True)
    assert second.failures == 2 and second.until - second.since >= 0.04
    assert second.since == first.since  # one episode


async def test_answers_to_requests_already_under_way_do_not_grow_the_back_off() -> None:
    holds = ClientHolds(_POLICY, auth_probe_seconds=60, rand=lambda: 1.0)
    hold = holds.hold("a", HoldKind.THROTTLED, "429")
    for _ in range(30):  # thirty batches in flight when the limit hit
        holds.hold("a", HoldKind.THROTTLED, "429")
    assert holds.get("a") is hold and hold.failures == 1
    holds.hold("a", HoldKind.THROTTLED, "429", retry_after=7)
    assert hold.until - hold.since == pytest.approx(7, abs=0.01)  # but Retry-After counts


async def test_a_cancelled_probe_lets_another_batch_probe() -> None:
    holds = ClientHolds(_POLICY, auth_probe_seconds=60)
    holds.hold("a", HoldKind.THROTTLED, "429", retry_after=0)
    assert await holds.admit("a") is True
    other = asyncio.create_task(holds.admit("a"))
    await asyncio.sleep(0.01)
    assert not other.done()  # a probe is under way
    holds.abandon("a")
    assert await asyncio.wait_for(other, 1) is True


async def test_holds_are_per_client_and_reported() -> None:
    changes: list[tuple[str, HoldKind | None]] = []
    holds = ClientHolds(
        _POLICY,
        auth_probe_seconds=60,
        on_change=lambda c, h: changes.append((c, h.kind if h else None)),
    )
    holds.hold("a", HoldKind.AUTH, "401", token=("k",))
    assert await asyncio.wait_for(holds.admit("b"), 1) is False  # b is not held
    holds.clear("a")
    assert changes == [("a", HoldKind.AUTH), ("a", None)]


async def test_a_hold_nobody_here_probes_lapses_once_overdue() -> None:
    now = [100.0]
    holds = ClientHolds(_POLICY, auth_probe_seconds=60, clock=lambda: now[0], rand=lambda: 1.0)
    holds.hold("a", HoldKind.THROTTLED, "429", retry_after=1)
    assert not holds.lapse("a", after=5)  # not due yet
    now[0] += 3
    assert not holds.lapse("a", after=5)  # due, but not overdue
    now[0] += 4
    assert holds.lapse("a", after=5) and holds.get("a") is None
    holds.hold("a", HoldKind.THROTTLED, "429", retry_after=1)
    now[0] += 10
    assert await holds.admit("a") is True  # a probe under way: it is not lapsed under it
    assert not holds.lapse("a", after=5)


async def test_waiters_are_counted_while_they_wait() -> None:
    holds = ClientHolds(_POLICY, auth_probe_seconds=60)
    holds.hold("a", HoldKind.THROTTLED, "429", retry_after=30)
    waiters = [asyncio.create_task(holds.admit("a")) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert holds.waiting == 3
    holds.clear("a")
    assert await asyncio.gather(*waiters) == [False, False, False]
    assert holds.waiting == 0
