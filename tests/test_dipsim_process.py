"""The simulator as a separate process (load tests): stopping it closes its output pipe."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dipsim.cli import READY_PREFIX
from dipsim.process import _wait_ready, start_in_subprocess


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


def test_a_child_that_hangs_silent_times_out_at_the_deadline() -> None:
    # A child that neither prints nor exits: a blocking readline would wait for ever.
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], stdout=subprocess.PIPE, text=True
    )
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"within 0\.5 s"):
            _wait_ready(proc, 0.5)
        assert time.monotonic() - started < 5
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_the_readiness_line_is_found_among_other_output() -> None:
    script = f"print('starting'); print({READY_PREFIX!r} + 'https://127.0.0.1:1'); "
    script += "import time; time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert _wait_ready(proc, 10.0) == "https://127.0.0.1:1"
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
