"""Fair request slots: a client with a deep backlog cannot starve the others."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from gateway.egress.fairness import FairSlots


async def _hold(slots: FairSlots, client: str, log: list[str], release: asyncio.Event) -> None:
    async with slots.slot(client):
        log.append(client)
        await release.wait()


async def test_a_freed_slot_goes_to_the_client_using_the_fewest_for_its_weight() -> None:
    slots = FairSlots(3)
    log: list[str] = []
    gates = [asyncio.Event() for _ in range(9)]
    # The busy client takes every slot and queues four more requests before b and c ask.
    tasks = [asyncio.create_task(_hold(slots, "busy", log, gates[i])) for i in range(7)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(_hold(slots, "b", log, gates[7])))
    tasks.append(asyncio.create_task(_hold(slots, "c", log, gates[8])))
    await asyncio.sleep(0)
    assert log == ["busy"] * 3 and slots.waiting("busy") == 4 and slots.contended
    assert slots.waiting_total() == 6  # dcpgw_egress_requests_waiting: the slots are the limit
    gates[0].set()
    await asyncio.sleep(0.01)
    gates[1].set()
    await asyncio.sleep(0.01)
    # The two freed slots went to b and c, ahead of the busy client's older requests.
    assert log == ["busy"] * 3 + ["b", "c"]
    for gate in gates:
        gate.set()
    await asyncio.gather(*tasks)
    assert log.count("busy") == 7 and slots.in_use("busy") == 0 and not slots.contended
    assert slots.waiting_total() == 0


async def test_alone_a_client_may_use_every_slot() -> None:
    slots = FairSlots(3, {"a": 1, "b": 1})
    for _ in range(3):
        await slots.acquire("a")
    assert slots.in_use("a") == 3
    for _ in range(3):
        slots.release("a")


async def test_weights_set_the_shares() -> None:
    slots = FairSlots(1, {"heavy": 3, "light": 1})
    log: list[str] = []
    release = asyncio.Event()
    first = asyncio.create_task(_hold(slots, "heavy", log, release))
    await asyncio.sleep(0)
    order: list[str] = []

    async def one(client: str) -> None:
        async with slots.slot(client):
            order.append(client)

    waiting = [asyncio.create_task(one(c)) for c in ["light"] * 4 + ["heavy"] * 4]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *waiting)
    # One slot: each grant goes to the lowest use/weight; with nobody holding a slot at grant
    # time both are at 0, so they alternate by who waited longest.
    assert sorted(order) == sorted(["light"] * 4 + ["heavy"] * 4)
    assert order[:2] in (["light", "heavy"], ["heavy", "light"])


async def test_a_cancelled_waiter_gives_its_place_back() -> None:
    slots = FairSlots(1)
    await slots.acquire("a")
    waiter = asyncio.create_task(slots.acquire("b"))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.waiting("b") == 0
    slots.release("a")
    await asyncio.wait_for(slots.acquire("c"), 1)  # the slot is free, not lost to "b"
    assert slots.in_use("c") == 1 and slots.in_use("b") == 0


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FairSlots(0)


async def test_a_slot_freed_just_after_a_waiter_was_cancelled_is_not_lost() -> None:
    """Cancelling a task cancels the future it awaits at once, but its code runs later: a slot
    freed in between must skip that future, not fail on it or hand the slot to nobody."""
    slots = FairSlots(1)
    await slots.acquire("a")
    waiter = asyncio.create_task(slots.acquire("b"))
    await asyncio.sleep(0)
    waiter.cancel()
    slots.release("a")  # before the cancelled waiter ran
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.in_use("b") == 0
    await asyncio.wait_for(slots.acquire("c"), 1)


class _Rule:
    """The rule, stated directly: a freed slot goes to the waiting client with the lowest
    slots-in-use per weight; among equals, the one whose turn came first. A client that is
    granted a slot and still waits takes a new turn; a cancelled waiter leaves its queue."""

    def __init__(self, limit: int, weights: dict[str, int]) -> None:
        self.limit, self.weights = limit, weights
        self.in_use: Counter[str] = Counter()
        self.queues: dict[str, list[int]] = {}
        self.turns: dict[str, int] = {}
        self.turn = 0
        self.granted: list[int] = []

    def ask(self, client: str, waiter: int) -> None:
        if sum(self.in_use.values()) < self.limit and not self.queues:
            self.in_use[client] += 1
            self.granted.append(waiter)
            return
        if client not in self.queues:
            self.turn += 1
            self.queues[client], self.turns[client] = [], self.turn
        self.queues[client].append(waiter)

    def cancel(self, client: str, waiter: int) -> None:
        self.queues[client].remove(waiter)
        if not self.queues[client]:
            del self.queues[client], self.turns[client]

    def free(self, client: str) -> None:
        self.in_use[client] -= 1
        while sum(self.in_use.values()) < self.limit and self.queues:
            chosen = min(
                self.queues, key=lambda c: (self.in_use[c] / self.weights[c], self.turns[c])
            )
            waiter = self.queues[chosen].pop(0)
            if self.queues[chosen]:
                self.turn += 1
                self.turns[chosen] = self.turn
            else:
                del self.queues[chosen], self.turns[chosen]
            self.in_use[chosen] += 1
            self.granted.append(waiter)


@pytest.mark.parametrize("seed", range(4))
async def test_grants_follow_the_rule_under_random_asks_frees_and_cancels(seed: int) -> None:
    """Thousands of random steps over 40 weighted clients and 6 slots: every grant, in
    order, is the rule's (the heap's stale entries and rebuilds change nothing)."""
    rng = random.Random(seed)
    clients = [f"c{i}" for i in range(40)]
    weights = {c: rng.randint(1, 3) for c in clients}
    slots, rule = FairSlots(6, weights), _Rule(6, weights)
    granted: list[int] = []
    holding: list[tuple[str, int]] = []
    waiting: dict[int, tuple[str, asyncio.Task[None]]] = {}

    async def ask(client: str, waiter: int) -> None:
        await slots.acquire(client)
        granted.append(waiter)
        holding.append((client, waiter))
        del waiting[waiter]

    for waiter in range(3000):
        step = rng.random()
        if step < 0.5 or not holding:
            client = rng.choice(clients)
            waiting[waiter] = (client, asyncio.create_task(ask(client, waiter)))
            rule.ask(client, waiter)
        elif step < 0.6 and waiting:
            cancelled = rng.choice(sorted(waiting))
            client, task = waiting.pop(cancelled)
            task.cancel()
            rule.cancel(client, cancelled)
        else:
            client, _ = holding.pop(rng.randrange(len(holding)))
            slots.release(client)
            rule.free(client)
        for _ in range(3):
            await asyncio.sleep(0)
        assert granted == rule.granted
    assert len(granted) > 1000 and slots.waiting_total() == sum(map(len, rule.queues.values()))
    for _, task in waiting.values():
        task.cancel()
    await asyncio.gather(*(t for _, t in waiting.values()), return_exceptions=True)
