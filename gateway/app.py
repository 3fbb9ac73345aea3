"""The gateway process: egress and ingress side by side, sharing one key store and one
mTLS connection pool, with the ops endpoint, credential hot reload and graceful shutdown.

``run_gateway`` is the imperative shell around everything; ``dcp-gateway run`` and the demo
both call it. Shutdown is one :class:`asyncio.Event`: SIGTERM sets it, each service stops
fetching / accepting, finishes or abandons in-flight work within its grace period, commits
what is final, and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

import structlog

from gateway.config import GatewayConfig
from gateway.dip.client import DipClient, signing_pool
from gateway.dip.tls import load_dcp_credential
from gateway.kafka.topics import ensure_topics, gateway_topics
from gateway.keys import build_keystore
from gateway.ops.health import Health
from gateway.ops.metrics import CREDENTIAL_RELOADS, export_certificate_expiry
from gateway.ops.server import start_ops_server
from gateway.signing.credentials import SigningCredential
from gateway.signing.keystore import KeyStore

_log = structlog.get_logger(__name__)


async def _watch_credentials(
    keystore: KeyStore,
    interval: float,
    stop: asyncio.Event,
    others: dict[str, SigningCredential],
) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        if stop.is_set():
            return
        events = await asyncio.to_thread(keystore.reload_if_changed)
        for event in events:
            CREDENTIAL_RELOADS.labels(outcome="ok" if event.ok else "failed").inc()
        export_certificate_expiry(keystore, others)


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGTERM (Kubernetes) and SIGINT (a terminal) both mean: shut down gracefully."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def run_gateway(
    config: GatewayConfig,
    stop: asyncio.Event,
    *,
    health: Health | None = None,
    on_ready: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run egress and/or ingress (as configured) until ``stop`` is set."""
    from gateway.egress.service import EgressService
    from gateway.ingress.service import IngressService

    health = health or Health()
    keystore = await asyncio.to_thread(build_keystore, config)
    others = {"mtls:dcp": await asyncio.to_thread(load_dcp_credential, config.dcp)}
    export_certificate_expiry(keystore, others)
    if config.kafka.create_topics:
        created = await ensure_topics(config.kafka, gateway_topics(config))
        if created:
            _log.info("topics_created", topics=created)

    ops_runner = None
    port = config.ops.health_port
    if port:
        ops_runner = await start_ops_server(health, "0.0.0.0", port)
    pool = signing_pool(config.egress.signing_threads)
    tasks: list[asyncio.Task[None]] = []
    try:
        async with DipClient(
            config.dip, config.dcp, keystore, pool=pool, transport=config.egress.transport
        ) as dip:
            tasks.append(
                asyncio.create_task(
                    _watch_credentials(keystore, config.ops.reload_interval_seconds, stop, others),
                    name="credential-watch",
                )
            )
            # Declare every enabled component before it starts, so /readyz cannot report
            # ready while one of them is still connecting.
            for name, enabled in (
                ("egress", config.egress.enabled),
                ("ingress", config.ingress.enabled),
            ):
                if enabled:
                    health.set(name, False, "starting")
            if config.egress.enabled:
                egress = EgressService(config, keystore, dip, health)
                tasks.append(asyncio.create_task(egress.run(stop), name="egress"))
            if config.ingress.enabled:
                ingress = IngressService(config, health)
                tasks.append(asyncio.create_task(ingress.run(stop), name="ingress"))
            _log.info(
                "gateway_started",
                environment=config.environment.value,
                clients=len(config.clients),
                egress=config.egress.enabled,
                ingress=config.ingress.enabled,
            )
            if on_ready is not None:
                await on_ready()
            await _until_stop_or_failure(tasks, stop)
    finally:
        stop.set()
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        pool.shutdown(wait=False, cancel_futures=True)
        if ops_runner is not None:
            await ops_runner.cleanup()
        _log.info("gateway_stopped")


async def _until_stop_or_failure(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
    """Wait for ``stop``; if a service dies first, stop the others and re-raise its error."""
    stopper = asyncio.create_task(stop.wait(), name="stop-wait")
    try:
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and task.exception() is not None:
                _log.error("service_failed", service=task.get_name(), error=str(task.exception()))
                stop.set()
                raise task.exception()  # type: ignore[misc]
        # Graceful: give every service the chance to finish its own shutdown.
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        stopper.cancel()
