"""Run the simulator in a separate process (load tests): ``start_in_subprocess(dir, port)``."""

from __future__ import annotations

import os
import select
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
    try:
        return SimulatorProcess(proc, _wait_ready(proc, ready_timeout))
    except BaseException:
        _stop(proc, 5.0)
        raise


def _wait_ready(proc: subprocess.Popen[str], timeout: float) -> str:
    """The base URL from the readiness line, within ``timeout`` even when the child hangs silent.

    Reads the pipe's file descriptor behind a ``select`` rather than ``readline``, which would
    block past the deadline for a child that neither prints nor exits.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    prefix = READY_PREFIX.encode()
    pending = b""
    while (remaining := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            code = proc.wait(5.0)
            raise RuntimeError(f"dipsim exited with {code} before it was ready")
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.startswith(prefix):
                return line[len(prefix) :].decode().strip()
    raise TimeoutError(f"dipsim did not print its readiness line within {timeout:g} s")


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
