"""What the DIP simulator received, for the tests that stop brokers or gateways mid-stream."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from dipsim.server import Simulator
from tests.gateway_process import GatewayProcess

Scope = TypeVar("Scope")


def stored_references(sim: Simulator) -> set[str]:
    return {m.sender_unique_reference for m in sim.state.messages}


async def until_stored(
    sim: Simulator,
    references: set[str],
    seconds: float = 180.0,
    running: Sequence[GatewayProcess] = (),
) -> None:
    """Wait until the simulator has accepted every one of ``references``. A gateway of
    ``running`` that exits, or the time running out, fails at once with what is missing and
    each gateway's last log lines (not a bare timeout after waiting on a dead process)."""
    try:
        async with asyncio.timeout(seconds):
            while not references <= stored_references(sim):
                for gateway in running:
                    code = gateway.exit_code()
                    if code is not None:
                        raise AssertionError(
                            f"{gateway.name} exited ({code}) before the DIP had "
                            f"{len(references - stored_references(sim))} of the references:\n"
                            f"{gateway.tail()}"
                        )
                await asyncio.sleep(0.2)
    except TimeoutError:
        missing = sorted(references - stored_references(sim))
        tails = "\n".join(f"--- {g.name}:\n{g.tail()}" for g in running)
        raise AssertionError(
            f"after {seconds:.0f} s the DIP still lacks {len(missing)} references "
            f"(first: {missing[:5]})\n{tails}"
        ) from None


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
