"""The gateway process: egress and ingress side by side, sharing one key store and one
mTLS connection pool, with the ops endpoint, credential hot reload and graceful shutdown.

``run_gateway`` is the imperative shell around everything; ``dcp-gateway run`` and the demo
both call it. Shutdown is one :class:`asyncio.Event`: SIGTERM sets it, each service stops
fetching / accepting, finishes or abandons in-flight work within its grace period, commits
what is final, and returns. A service that ends before ``stop`` was set (an error, or a plain
return) is a failure: the others are stopped the same way and :class:`ServiceFailed` is raised,
so the process exits non-zero and Kubernetes restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog
from aiokafka.errors import KafkaError

from gateway.config import ConfigError, GatewayConfig
from gateway.dip import DipClient, new_signing_pool
from gateway.kafka.preflight import check_kafka_connection
from gateway.kafka.topics import (
    compacted_topic_uses,
    ensure_topics,
    gateway_topic_uses,
    gateway_topics,
    missing_topics,
)
from gateway.kafka.watch import HEALTH_NAME as KAFKA_HEALTH
from gateway.kafka.watch import watch_kafka
from gateway.keys import build_keystore, load_dcp_credential
from gateway.ops import CREDENTIAL_RELOADS, Health, export_certificate_expiry, start_ops_server
from gateway.signing import KeyStore, Severity, SigningCredential, TrustPolicy, usable_findings

_log = structlog.get_logger(__name__)

#: Beyond egress's own grace: how long the others get to stop after one service failed.
_FAILURE_GRACE_MARGIN_SECONDS = 5.0


class ServiceFailed(RuntimeError):
    """A service ended before the gateway was asked to stop, or failed while stopping; the
    process must exit non-zero."""

    def __init__(self, service: str, detail: str, *, stopping: bool = False) -> None:
        when = "failed while shutting down" if stopping else "stopped before shutdown was requested"
        super().__init__(f"{service} {when}: {detail}")
        self.service = service


def _load_ingress_trust(config: GatewayConfig) -> TrustPolicy | None:
    """The webhook's DIP trust policy (None with ingress off). Built at start-up, before
    anything connects, so an unreadable ``trust.ca_bundle`` stops the gateway with a
    :class:`ConfigError` instead of failing the ingress service later."""
    if not config.ingress.enabled:
        return None
    from gateway.ingress import build_trust

    try:
        return build_trust(config)
    except (ValueError, OSError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"trust.ca_bundle: {config.trust.ca_bundle}: not a usable PEM CA bundle ({detail}): "
            "point it at the PEM file of the CA certificate(s) the DIP signs publications with"
        ) from None


def load_checked_dcp_credential(
    config: GatewayConfig, now: datetime | None = None
) -> SigningCredential:
    """The DCP's mTLS credential, judged as the key store judges signing credentials: an
    ERROR finding refuses it (:class:`CredentialError`), a WARNING is logged."""
    credential = load_dcp_credential(config.dcp)
    findings = usable_findings(credential, now or datetime.now(UTC), "dcp mTLS certificate ")
    for warning in (f for f in findings if f.severity is Severity.WARNING):
        _log.warning("credential_warning", certificate="mtls:dcp", detail=warning.message)
    return credential


async def _watch_credentials(
    keystore: KeyStore,
    interval: float,
    stop: asyncio.Event,
    mtls: SigningCredential | None,
    trust: TrustPolicy | None,
) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        if stop.is_set():
            return
        events = await asyncio.to_thread(keystore.reload_if_changed)
        for event in events:
            CREDENTIAL_RELOADS.labels(outcome="ok" if event.ok else "failed").inc()
        export_certificate_expiry(keystore, mtls, trust.anchors if trust else ())


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGTERM (Kubernetes) and SIGINT (a terminal) both mean: shut down gracefully."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


_TOPIC_CHECK_SECONDS = 15.0
"""Longest the start-up topic check may take (the startup probe must not expire during it)."""


async def _check_topics_exist(config: GatewayConfig) -> None:
    """Stop start-up when a topic the running services write to is missing (``create_topics``
    off); a missing topic they read from is only logged.

    Without this a mistyped results or dead-letter topic would surface only when the first
    outcome could not be written, with that partition's commits stuck behind it."""
    enabled = {"egress": config.egress.enabled, "ingress": config.ingress.enabled}
    every = [*gateway_topic_uses(config), *compacted_topic_uses(config)]
    uses = [use for use in every if enabled[use.service]]
    try:
        async with asyncio.timeout(_TOPIC_CHECK_SECONDS):
            missing = set(await missing_topics(config.kafka, (use.topic for use in uses)))
    except (KafkaError, TimeoutError) as exc:  # the services wait for Kafka themselves
        _log.warning("topic_check_skipped", error=str(exc) or type(exc).__name__)
        return
    problems: list[str] = []
    for use in uses:
        if use.topic not in missing:
            continue
        if not use.writes:
            _log.warning(
                "topic_missing", field=use.field, topic=use.topic, effect="nothing to read yet"
            )
            continue
        problems.append(
            f"{use.field}: topic {use.topic!r} does not exist (or this principal may not describe "
            "it): create it, correct the name, or set kafka.create_topics for development"
        )
    if problems:
        raise ConfigError("; ".join(problems))


async def run_gateway(
    config: GatewayConfig,
    stop: asyncio.Event,
    *,
    health: Health | None = None,
    on_ready: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run egress and/or ingress (as configured) until ``stop`` is set."""
    from gateway.egress import EgressService
    from gateway.ingress import IngressService

    health = health or Health()
    # Cheap checks first: a wrong file stops start-up before anything connects.
    trust = await asyncio.to_thread(_load_ingress_trust, config)
    dcp_credential: SigningCredential | None = None
    if config.egress.enabled:  # only egress connects to the DIP
        dcp_credential = await asyncio.to_thread(load_checked_dcp_credential, config)
    keystore = await asyncio.to_thread(build_keystore, config)
    export_certificate_expiry(keystore, dcp_credential, trust.anchors if trust else ())
    await check_kafka_connection(config.kafka)
    if config.kafka.create_topics:
        created = await ensure_topics(config.kafka, gateway_topics(config))
        if created:
            _log.info("topics_created", topics=created)
    else:
        await _check_topics_exist(config)

    ops_runner = None
    port = config.ops.health_port
    if port:
        ops_runner = await start_ops_server(health, "0.0.0.0", port)
    pool = new_signing_pool(config.egress.signing_threads) if config.egress.enabled else None
    tasks: list[asyncio.Task[None]] = []
    try:
        async with contextlib.AsyncExitStack() as connection:
            dip = None
            ledger = None
            if config.audit.enabled:  # entered first: it outlives the services that write it
                from gateway.ledger.publisher import Ledger

                mtls = dcp_credential.fingerprint_sha256 if dcp_credential else None
                ledger = await connection.enter_async_context(Ledger(config, mtls_fingerprint=mtls))
            if dcp_credential is not None:  # egress enabled
                dip = await connection.enter_async_context(
                    DipClient.over_mtls(
                        config.dip,
                        dcp_credential,
                        keystore,
                        pool=pool,
                        transport=config.egress.transport,
                        observer=ledger,
                        concurrent_requests=config.egress.max_concurrent_requests,
                    )
                )
            try:
                tasks.append(
                    asyncio.create_task(
                        _watch_credentials(
                            keystore,
                            config.ops.reload_interval_seconds,
                            stop,
                            dcp_credential,
                            trust,
                        ),
                        name="credential-watch",
                    )
                )
                # Declare every component before it starts, so /readyz cannot report ready
                # while one of them is still connecting (the Kafka watch: until its first probe).
                for name, enabled in (
                    (KAFKA_HEALTH, True),
                    ("egress", config.egress.enabled),
                    ("ingress", config.ingress.enabled),
                ):
                    if enabled:
                        health.set(name, False, "starting")
                tasks.append(
                    asyncio.create_task(watch_kafka(config.kafka, health, stop), name="kafka-watch")
                )
                if dip is not None:  # egress is enabled
                    egress = EgressService(config, keystore, dip, health)
                    tasks.append(asyncio.create_task(egress.run(stop), name="egress"))
                if config.tracking.enabled:
                    from gateway.tracking.service import ResponseTracker

                    tracker = ResponseTracker(config)
                    tasks.append(asyncio.create_task(tracker.run(stop), name="tracking"))
                if config.ingress.enabled:
                    ingress = IngressService(config, health, trust=trust, ledger=ledger)
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
                await _until_stop_or_failure(
                    tasks,
                    stop,
                    grace=config.egress.shutdown_grace_seconds + _FAILURE_GRACE_MARGIN_SECONDS,
                )
            finally:
                # Still inside the DipClient block: a service cut off after the grace period
                # ends while the connection it may be sending on is open, not after.
                await _end_all(tasks, stop)
    finally:
        await _end_all(tasks, stop)  # also when DipClient() itself failed
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if ops_runner is not None:
            await ops_runner.cleanup()
        _log.info("gateway_stopped")


async def _end_all(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
    """Set ``stop``, cancel the services still running, and wait for all of them."""
    stop.set()
    for task in tasks:
        if not task.done():
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _until_stop_or_failure(
    tasks: list[asyncio.Task[None]], stop: asyncio.Event, *, grace: float
) -> None:
    """Wait for ``stop``, then for every service to finish its own shutdown.

    A service that ends first, by an error or by simply returning, is a failure: it is logged,
    ``stop`` is set so the others shut down as they would on SIGTERM (for up to ``grace``
    seconds; the caller cancels what is left), and :class:`ServiceFailed` is raised.
    """
    stopper = asyncio.create_task(stop.wait(), name="stop-wait")
    try:
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        stopping = stop.is_set()
        failure = _first_failure([t for t in tasks if t in done], stopping=stopping)
        if failure is not None:
            task, detail, cause = failure
            _log.error("service_failed", service=task.get_name(), error=detail)
            stop.set()
            others = [t for t in tasks if not t.done()]
            if others:
                await asyncio.wait(others, timeout=grace)
            raise ServiceFailed(task.get_name(), detail, stopping=stopping) from cause
        # Graceful: give every service the chance to finish its own shutdown. One that fails
        # while draining (an internal error: its records stay uncommitted) still makes the
        # process exit non-zero, so the failure is seen and counted by Kubernetes.
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        failed: tuple[asyncio.Task[None], BaseException] | None = None
        for task, outcome in zip(tasks, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                _log.error("service_shutdown_failed", service=task.get_name(), error=repr(outcome))
                failed = failed or (task, outcome)
        if failed is not None:
            task, exc = failed
            detail = f"{type(exc).__name__}: {exc}"
            raise ServiceFailed(task.get_name(), detail, stopping=True) from exc
    finally:
        stopper.cancel()


def _first_failure(
    ended: list[asyncio.Task[None]], *, stopping: bool
) -> tuple[asyncio.Task[None], str, BaseException | None] | None:
    """The first ended task that failed: raised, was cancelled, or returned unasked."""
    for task in ended:
        if task.cancelled():
            return task, "cancelled", None
        exc = task.exception()
        if exc is not None:
            return task, f"{type(exc).__name__}: {exc}", exc
        if not stopping:
            return task, "returned without an error", None
    return None
