"""The simulator as a separate process (load tests): stopping it closes its output pipe."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from dipsim.process import start_in_subprocess


async def test_stop_closes_the_stdout_pipe(dev_pki: Path) -> None:
    sim = await asyncio.to_thread(start_in_subprocess, dev_pki, 0)
    stdout = sim.process.stdout
    assert stdout is not None
    assert not stdout.closed
    code = await asyncio.to_thread(sim.stop)
    assert code == 0
    assert stdout.closed
    assert await asyncio.to_thread(sim.stop) == 0  # a second stop is harmless


async def test_a_simulator_that_cannot_start_leaves_no_pipe_open(tmp_path: Path) -> None:
    fds_before = set(os.listdir("/proc/self/fd"))
    # No dev PKI in the folder: the simulator exits before its readiness line.
    with pytest.raises(RuntimeError, match="dipsim exited with 2 before it was ready"):
        await asyncio.to_thread(start_in_subprocess, tmp_path, 0)
    assert set(os.listdir("/proc/self/fd")) <= fds_before
