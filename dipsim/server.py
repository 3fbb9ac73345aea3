"""Run the simulator in-process: ``async with run_simulator(config) as sim: ...``."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from dipsim.app import SimCore
from dipsim.auth import Authenticator
from dipsim.config import SimulatorConfig
from dipsim.faults import FaultConfig, FaultInjector
from dipsim.pusher import Pusher
from dipsim.state import Publication, SimState
from gateway.signing.credentials import load_pfx


def server_ssl_context(config: SimulatorConfig) -> ssl.SSLContext:
    """TLS server context that REQUIRES a client certificate issued by ``client_ca``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(config.client_ca))
    ctx.load_cert_chain(str(config.server_cert), str(config.server_key))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def push_ssl_context(config: SimulatorConfig) -> ssl.SSLContext:
    """TLS client context for webhook pushes: the webhook's certificate must chain to the CA."""
    ctx = ssl.create_default_context(cafile=str(config.webhook_ca or config.client_ca))
    if config.push_client_cert:
        ctx.load_cert_chain(str(config.server_cert), str(config.server_key))
    return ctx


@dataclass
class Simulator:
    """A running simulator. ``state`` holds everything it stored and counted."""

    config: SimulatorConfig
    core: SimCore
    runner: web.AppRunner
    host: str
    port: int

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def state(self) -> SimState:
        return self.core.ctx.state

    @property
    def faults(self) -> FaultInjector:
        return self.core.ctx.faults

    def set_faults(
        self,
        faults: FaultConfig | dict[str, Any] | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> FaultConfig:
        """Replace the faults (``set_faults(rate_429=0.5, seed=1)`` or a dict/FaultConfig).
        ``set_faults()`` clears them."""
        if faults is None:
            faults = FaultConfig(**kwargs)
        elif kwargs:
            raise TypeError("give either a FaultConfig/dict or keyword arguments")
        return self.core.ctx.faults.set(faults, seed)

    def clear_faults(self) -> None:
        self.core.ctx.faults.set(FaultConfig())

    def publish(
        self, interface: str, recipient: str, payloads: list[dict[str, Any]]
    ) -> list[Publication]:
        return self.core.publish(interface, recipient, payloads)

    async def wait_pushes(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until all queued webhook pushes are delivered or given up on."""
        await self.core.ctx.pusher.wait_idle(timeout)


@asynccontextmanager
async def run_simulator(config: SimulatorConfig) -> AsyncIterator[Simulator]:
    """Start the simulator on ``config.host:config.port`` (0 = free port); stop on exit."""
    state = SimState(config.sqlite_path)
    faults = FaultInjector(config.faults, seed=config.seed)
    auth = Authenticator(config)
    credential = load_pfx(config.dip_signing_pfx)
    pusher = Pusher(state, config, credential, push_ssl_context(config))
    core = SimCore(config, state, faults, auth, pusher)
    app = core.build_app()
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(
        runner, config.host, config.port, ssl_context=server_ssl_context(config), backlog=1024
    )
    await site.start()
    await pusher.start()
    server: Any = site._server
    assert server is not None and server.sockets
    port = int(server.sockets[0].getsockname()[1])
    host = config.public_host or config.host
    sim = Simulator(config, core, runner, host, port)
    try:
        yield sim
    finally:
        await pusher.close()
        await runner.cleanup()
        state.close()
