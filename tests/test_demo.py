"""The demo behind `make run`: every part really runs and messages really flow both ways."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from gateway.demo import _simulator, run_demo
from gateway.kafka.embedded import free_port
from tests.dipsim_fixtures import DevPki, dcp_http_client
from tests.kafka_fixtures import KafkaUnderTest


@pytest.mark.tansu
async def test_demo_moves_messages_to_the_dip_and_back(
    tmp_path: Path, kafka: KafkaUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in kafka.env().items():  # the operator's overrides win over the demo's
        monkeypatch.setenv(name, value)
    counts = await run_demo(
        tmp_path,
        clients=2,
        bits=2048,
        rate=40,
        duration=12,
        kafka_bootstrap=kafka.bootstrap_servers,
        report_every=4,
        handle_signals=False,
    )
    assert counts.produced >= 100
    # Accepted by the simulator (result records) and pushed back to the webhook (inbound).
    assert counts.accepted > 0
    assert counts.inbound > 0
    # The deliberately bad ones are dead-lettered, each kind with its own reason.
    assert counts.dead_lettered > 0
    reasons = " ".join(counts.reasons)
    assert "environmentTag" in reasons
    assert "MSG1001 - Schema Failure" in reasons
    assert (tmp_path / "dev-pki" / "gateway.yaml").is_file()


async def test_simulator_starts_without_blocking_the_loop_and_leaves_no_pipe_open(
    dev_pki: Path, pki: DevPki
) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    fds_before = set(os.listdir("/proc/self/fd"))
    ticker = asyncio.create_task(tick())
    try:
        async with _simulator(dev_pki, free_port()) as url:
            ticks_while_starting = ticks
            async with dcp_http_client(pki, url) as http:
                assert (await http.get("/_sim/stats")).status_code == 200
    finally:
        ticker.cancel()
    # Starting a Python process takes well over 0.1 s; a blocking read would have frozen the
    # ticker for all of it.
    assert ticks_while_starting >= 5
    leaked = set(os.listdir("/proc/self/fd")) - fds_before
    assert not leaked, [os.readlink(f"/proc/self/fd/{fd}") for fd in leaked if _exists(fd)]


def _exists(fd: str) -> bool:
    return os.path.exists(f"/proc/self/fd/{fd}")
