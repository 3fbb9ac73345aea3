"""Run the simulator in a separate process (load tests): ``start_in_subprocess(dir, port)``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dipsim.cli import READY_PREFIX


@dataclass
class SimulatorProcess:
    process: subprocess.Popen[str]
    base_url: str

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (SIGKILL after ``timeout``), then close the stdout pipe; returns the exit
        code. Safe to call twice."""
        _stop(self.process, timeout)
        return self.process.returncode

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_subprocess(
    dev_pki_dir: Path | str,
    port: int = 0,
    *,
    extra_args: list[str] | None = None,
    ready_timeout: float = 30.0,
) -> SimulatorProcess:
    """Start ``python -m dipsim.cli`` and wait for its readiness line."""
    cmd = [
        sys.executable,
        "-m",
        "dipsim.cli",
        "--dev-pki",
        str(dev_pki_dir),
        "--port",
        str(port),
        *(extra_args or []),
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    deadline = time.monotonic() + ready_timeout
    assert proc.stdout is not None
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                if proc.poll() is not None:
                    raise RuntimeError(f"dipsim exited with {proc.returncode} before it was ready")
                continue
            if line.startswith(READY_PREFIX):
                return SimulatorProcess(proc, line[len(READY_PREFIX) :].strip())
        raise TimeoutError("dipsim did not print its readiness line in time")
    except BaseException:
        _stop(proc, 5.0)
        raise


def _stop(proc: subprocess.Popen[str], timeout: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
