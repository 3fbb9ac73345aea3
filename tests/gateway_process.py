"""`dcp-gateway run` in a process of its own, as in production: for the tests that scale
out, stop or kill gateways (a task in the test's event loop cannot be SIGKILLed)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import GatewayConfig
from gateway.kafka.embedded import free_port
from tests.secrets_scan import note_latest, note_log_file

_READY_SECONDS = 90.0
_EXIT_SECONDS = 60.0  # a SIGTERM drain is bounded by egress.shutdown_grace_seconds


class GatewayProcess:
    """One gateway process; its config is written next to its log in ``folder``."""

    def __init__(
        self,
        config: GatewayConfig,
        folder: Path,
        name: str,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``env``: variables added to the test process's environment (test-only hooks)."""
        self.name = name
        self._env = dict(env or {})
        self.ops_port = free_port()
        self.config_file = folder / f"{name}.yaml"
        self.log = folder / f"{name}.log"
        data = config.model_dump(mode="json")
        data["ops"] = {**data["ops"], "health_port": self.ops_port, "log_format": "json"}
        data["kafka"] = {**data["kafka"], "client_id": name}
        self.config_file.write_text(yaml.safe_dump(data))
        self._proc: subprocess.Popen[bytes] | None = None
        note_log_file(self.log)

    async def start(self) -> None:
        """Start it and wait until ``/readyz`` says ready."""
        proc = await asyncio.to_thread(self._launch)
        async with asyncio.timeout(_READY_SECONDS), httpx.AsyncClient(timeout=5) as http:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited at start:\n{self.tail()}")
                try:
                    if (await http.get(f"{self._ops}/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)

    def _launch(self) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "--config", str(self.config_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self._env},
            )
        return self._proc

    async def run_until_exit(self, seconds: float = _READY_SECONDS) -> int:
        """Start it and wait for it to exit by itself (a test that makes it fail); its exit
        code."""
        proc = await asyncio.to_thread(self._launch)
        return await asyncio.wait_for(asyncio.to_thread(proc.wait), seconds)

    async def readyz(self) -> int:
        """The status ``/readyz`` answers (0 when nothing answers)."""
        async with httpx.AsyncClient(timeout=5) as http:
            try:
                return (await http.get(f"{self._ops}/readyz")).status_code
            except httpx.TransportError:
                return 0

    def exit_code(self) -> int | None:
        """The exit code once it has exited (``None`` while it runs or before it starts)."""
        return None if self._proc is None else self._proc.poll()

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    async def scrape(self) -> str:
        """The ``/metrics`` page as text."""
        async with httpx.AsyncClient(timeout=5) as http:
            text = (await http.get(f"{self._ops}/metrics")).text
        note_latest(f"metrics {self.log}", f"/metrics of {self.name} ({self.log})", text)
        return text

    async def metric(self, name: str) -> float:
        """A counter's or gauge's value summed over its labels (a counter without ``_total``)."""
        text = await self.scrape()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == name
            for sample in family.samples
            if sample.name in (name, f"{name}_total")
        )

    async def terminate(self) -> int:
        """SIGTERM (what Kubernetes sends) and wait for the exit code."""
        return await self._signal(signal.SIGTERM)

    async def kill(self) -> int:
        return await self._signal(signal.SIGKILL)

    async def _signal(self, sig: signal.Signals) -> int:
        proc = self._proc
        assert proc is not None, "not started"
        if proc.poll() is None:
            proc.send_signal(sig)
        return await asyncio.wait_for(asyncio.to_thread(proc.wait), _EXIT_SECONDS)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    @property
    def _ops(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}"

    def ensure_stopped(self) -> None:
        """For ``finally`` blocks: no process outlives its test."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
