"""What the DIP simulator received, for the tests that stop brokers or gateways mid-stream."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from dipsim.server import Simulator

Scope = TypeVar("Scope")


def stored_references(sim: Simulator) -> set[str]:
    return {m.sender_unique_reference for m in sim.state.messages}


async def until_stored(sim: Simulator, references: set[str], seconds: float = 180.0) -> None:
    """Wait until the simulator has accepted every one of ``references``."""
    async with asyncio.timeout(seconds):
        while not references <= stored_references(sim):  # noqa: ASYNC110 (no event to wait on)
            await asyncio.sleep(0.2)


def arrival_positions(sim: Simulator) -> dict[str, int]:
    """Where each reference arrived at the simulator (references are unique per sender)."""
    return {m.sender_unique_reference: m.seq for m in sim.state.messages}


def assert_in_order(positions: Mapping[str, int], order: Mapping[Scope, Sequence[str]]) -> None:
    """Each scope's references (a key, or a (sender, key), to its references in production
    order) arrived in that order."""
    for scope, references in order.items():
        assert sorted(references, key=positions.__getitem__) == list(references), scope


def assert_in_order_per_key(sim: Simulator, sent: Iterable[tuple[bytes, str]]) -> None:
    """Each Kafka key's references (``(key, reference)`` in production order) reached the DIP
    in that order."""
    by_key: defaultdict[bytes, list[str]] = defaultdict(list)
    for key, reference in sent:
        by_key[key].append(reference)
    assert_in_order(arrival_positions(sim), by_key)
