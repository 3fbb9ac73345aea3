"""IngressService: the webhook server (uvicorn) and its Kafka producer, run until told to stop.

The server listens before Kafka is reached: pushes that arrive while the producer is not yet
connected are answered 503 (the DIP retries), which is better than refusing connections and
lets readiness report exactly what is missing. TLS is terminated here when ``ingress.tls_cert``
/``tls_key`` are set (and a client certificate is required when ``tls_client_ca`` is set);
otherwise plain HTTP behind a Kubernetes ingress. Either way the signature is verified over
``ingress.public_base_url`` + path, the URL the DIP called.

Liveness: while the server is serving and the Kafka producer is up (or still being connected),
a small task beats the ``ingress`` heartbeat every :attr:`Health.beat_interval` seconds, so an
idle webhook stays live and a wedged event loop or a dead server does not. If the server stops
without being asked (or fails to start), :meth:`IngressService.run` raises: the gateway must
not keep running without its webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Generator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
import uvicorn

from gateway.config import GatewayConfig
from gateway.ingress.app import WebhookApp, WebhookHandler
from gateway.ingress.dedup import DedupWindow
from gateway.ingress.deliver import Deliverer
from gateway.ingress.pipeline import RoutingTable
from gateway.ingress.routes import RouteTable
from gateway.kafka.clients import create_producer
from gateway.ops.collector import tuned_for_streaming
from gateway.ops.health import Health
from gateway.signing.trust import TrustPolicy

if TYPE_CHECKING:
    from gateway.ledger.publisher import Ledger

_log = structlog.get_logger(__name__)
_COMPONENT = "ingress"
_KAFKA_RETRY_SECONDS = 2.0
_MESSAGES_IN_FLIGHT = 20_000
"""Sizes the young GC generation while serving: a push's parsed messages stay alive until it
is answered (dozens of tracked objects per message), so CPython's default young generation
(700) was collected several times per push, walking and promoting live messages (the GC row
of the ingress figures in load-tests/README.md)."""


class IngressServerFailed(RuntimeError):
    """The webhook server stopped (or never started) without being asked to."""


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the gateway's stop event decides."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.up = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        except SystemExit as exc:  # uvicorn exits the process on some start-up failures
            raise IngressServerFailed(f"webhook server start-up exit {exc.code}") from None
        self.up.set()


def build_trust(config: GatewayConfig) -> TrustPolicy:
    """The DIP trust anchor(s), pins and accepted DIP signer names from ``trust``."""
    bundles = [config.trust.ca_bundle] if config.trust.ca_bundle is not None else []
    return TrustPolicy.from_files(
        bundles, config.trust.pinned_sha256, signer_names=config.trust.signer_names
    )


def producer_overrides(config: GatewayConfig) -> dict[str, Any]:
    """Producer timeouts below the webhook's own bound, so batches expire rather than linger."""
    timeout_ms = int(config.ingress.produce_timeout_seconds * 1000)
    return {"request_timeout_ms": timeout_ms, "linger_ms": 2}


class IngressService:
    """The DIP webhook. ``await run(stop)`` serves until ``stop`` is set; ``port`` is the bound
    port once ``started`` is set (useful with ``listen_port: 0``); ``connected`` is set once
    the Kafka producer is up (before that, pushes are answered 503)."""

    def __init__(
        self,
        config: GatewayConfig,
        health: Health | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        trust: TrustPolicy | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        """``trust``: the policy already built from ``config`` (the run process checks it at
        start-up); built here when not given."""
        self.config = config
        self.health = health or Health()
        self.started = asyncio.Event()
        self.connected = asyncio.Event()
        self._port: int | None = None
        #: the uvicorn server while :meth:`run` runs
        self.server: uvicorn.Server | None = None
        settings = config.ingress
        self.deliverer = Deliverer(
            None, DedupWindow(settings.dedup_window), settings.produce_timeout_seconds + 1.0
        )
        self.handler = WebhookHandler(
            RouteTable.from_settings(settings),
            RoutingTable.from_config(config),
            trust or build_trust(config),
            self.deliverer,
            max_body_bytes=settings.max_body_bytes,
            max_skew=timedelta(seconds=config.trust.max_skew_seconds),
            clock=clock or (lambda: datetime.now(UTC)),
            ledger=ledger,
            ledger_timeout_seconds=settings.produce_timeout_seconds,
        )
        self.app = WebhookApp(
            self.handler,
            max_concurrent_pushes=settings.max_concurrent_pushes,
            retry_after_seconds=settings.busy_retry_after_seconds,
            body_timeout_seconds=settings.body_timeout_seconds,
        )

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("IngressService is not listening yet: await started.wait()")
        return self._port

    @property
    def scheme(self) -> str:
        return "https" if self.config.ingress.tls_cert is not None else "http"

    def _uvicorn_config(self) -> uvicorn.Config:
        s = self.config.ingress
        kwargs: dict[str, Any] = {}
        if s.tls_cert is not None and s.tls_key is not None:
            kwargs.update(ssl_certfile=str(s.tls_cert), ssl_keyfile=str(s.tls_key))
            if s.tls_client_ca is not None:
                kwargs.update(ssl_ca_certs=str(s.tls_client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
        return uvicorn.Config(
            self.app,
            lifespan="off",
            access_log=False,
            log_level="warning",
            log_config=None,
            timeout_graceful_shutdown=max(5, int(s.produce_timeout_seconds) + 2),
            limit_concurrency=None,
            backlog=2048,
            **kwargs,
        )

    def _bind(self) -> socket.socket:
        s = self.config.ingress
        family = socket.AF_INET6 if ":" in s.listen_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((s.listen_host, s.listen_port))
            sock.set_inheritable(True)
        except BaseException:
            sock.close()  # port taken or host unknown: do not leave the socket to the GC
            raise
        return sock

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then drain in-flight pushes and close the producer.

        Raises when the port cannot be bound, when the server fails to start, and when it
        stops on its own before ``stop`` is set (:class:`IngressServerFailed`)."""
        self.health.set(_COMPONENT, False, "starting")
        sock = self._bind()
        self._port = int(sock.getsockname()[1])
        server = self.server = _Server(self._uvicorn_config())
        serving = asyncio.create_task(server.serve(sockets=[sock]), name="ingress-http")
        kafka = asyncio.create_task(self._connect_kafka(stop), name="ingress-kafka")
        heart: asyncio.Task[None] | None = None
        try:
            up = asyncio.create_task(server.up.wait())
            try:
                await asyncio.wait([up, serving], return_when=asyncio.FIRST_COMPLETED)
            finally:
                up.cancel()  # also when run is cancelled during start-up
            if not server.started:
                if serving.done() and not serving.cancelled():
                    exc = serving.exception()
                    if exc is not None:
                        raise IngressServerFailed(
                            f"ingress webhook server failed to start: {exc}"
                        ) from exc
                raise IngressServerFailed("ingress webhook server stopped during start-up")
            self.started.set()
            heart = asyncio.create_task(self._heartbeat(serving, kafka), name="ingress-heartbeat")
            _log.info(
                "ingress_listening",
                host=self.config.ingress.listen_host,
                port=self._port,
                tls=self.scheme == "https",
                public_base_url=self.config.ingress.public_base_url,
            )
            stopper = asyncio.create_task(stop.wait())
            try:
                with tuned_for_streaming(_MESSAGES_IN_FLIGHT):
                    await asyncio.wait([stopper, serving], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
            if serving.done() and not stop.is_set():
                exc = None if serving.cancelled() else serving.exception()
                _log.error("ingress_server_failed", error=repr(exc))
                raise IngressServerFailed(
                    f"ingress webhook server stopped unexpectedly: {exc!r}"
                ) from exc
        finally:
            if heart is not None:
                heart.cancel()
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await serving
            kafka.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await kafka
            producer, self.deliverer.producer = self.deliverer.producer, None
            with contextlib.suppress(Exception):
                await self.deliverer.close()
            if producer is not None:
                with contextlib.suppress(Exception):
                    await producer.stop()
            sock.close()
            self.health.set(_COMPONENT, False, "stopped")
            _log.info("ingress_stopped")

    async def _heartbeat(self, serving: asyncio.Task[None], kafka: asyncio.Task[None]) -> None:
        """Beat while the server serves and the producer is up or still being connected.

        Stops beating (so ``/livez`` fails after the stall window) when the server task has
        ended or the Kafka task ended without leaving a producer behind (it failed)."""
        while True:
            if serving.done():
                return
            if kafka.done() and self.deliverer.producer is None:
                return
            self.health.beat(_COMPONENT)
            await asyncio.sleep(self.health.beat_interval)

    async def _connect_kafka(self, stop: asyncio.Event) -> None:
        """Start the producer, retrying until Kafka answers; the webhook answers 503 meanwhile."""
        while not stop.is_set():
            producer = create_producer(self.config.kafka, **producer_overrides(self.config))
            try:
                await producer.start()
            except (asyncio.CancelledError, Exception) as exc:
                # Close what start() opened, whether stopped mid-connect or refused.
                with contextlib.suppress(Exception):
                    await producer.stop()
                if isinstance(exc, asyncio.CancelledError):
                    raise
                # any start failure means "not yet"
                self.health.set(_COMPONENT, False, f"kafka unreachable: {exc}")
                _log.warning("ingress_kafka_unreachable", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _KAFKA_RETRY_SECONDS)
                continue
            self.deliverer.producer = producer
            self.health.set(_COMPONENT, True, "ok")
            self.connected.set()
            return
