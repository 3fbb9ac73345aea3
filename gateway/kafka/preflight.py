"""Start-up check of the Kafka connection settings against a real broker.

aiokafka reports a refused certificate, a wrong SASL password or a broker without the
idempotent producer as "Unable to bootstrap" or ``UnknownError`` and retries for ever, so a
mistake in ``kafka.*`` looked like an outage: the pod never became ready and the log named no
field. This check connects once the way the clients will and turns each refusal into a
:class:`~gateway.config.ConfigError` that names the field and the fix. A broker that cannot be
reached at all is not a configuration mistake: it is logged, and the services wait for it.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import structlog
from aiokafka.conn import AIOKafkaConnection, create_conn
from aiokafka.errors import (
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
    for_code,
)
from aiokafka.protocol.transaction import InitProducerIdRequest

from gateway.config import ConfigError, KafkaSettings
from gateway.kafka.clients import common_kwargs

_log = structlog.get_logger(__name__)

#: InitProducerId answers that mean "ask again shortly" (a coordinator still loading).
_RETRIABLE = frozenset({7, 14, 15, 16, 51})  # timeout, loading, unavailable, not coord., busy
_CLUSTER_AUTHORIZATION_FAILED = 31
_TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53

#: Bound of the whole check (the startup probe must outlive it, as the topic check's).
_PREFLIGHT_SECONDS = 15.0


async def check_kafka_connection(settings: KafkaSettings) -> str | None:
    """Connect to the first bootstrap server that answers; raise :class:`ConfigError` for a
    refused TLS certificate, SASL login or idempotent producer. Returns the broker checked
    (``host:port``), or None when none answered in time."""
    kwargs = _connection_kwargs(settings)
    try:
        async with asyncio.timeout(_PREFLIGHT_SECONDS):
            for host, port in _bootstrap(settings.bootstrap_servers):
                conn = await _connect(host, port, settings, kwargs)
                if conn is None:
                    continue
                try:
                    if settings.enable_idempotence:
                        await _check_idempotence(conn, f"{host}:{port}")
                finally:
                    conn.close()
                return f"{host}:{port}"
    except TimeoutError:
        pass
    _log.warning(
        "kafka_preflight_incomplete",
        bootstrap_servers=settings.bootstrap_servers,
        detail="no broker answered in time; the services keep trying",
    )
    return None


def _connection_kwargs(settings: KafkaSettings) -> dict[str, Any]:
    try:
        kwargs = common_kwargs(settings)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(
            f"kafka.ssl_cert_file / kafka.ssl_key_file / kafka.ssl_ca_file: cannot load the TLS "
            f"files ({exc}): give PEM files of a certificate, its key and the broker CA"
        ) from None
    kwargs.pop("bootstrap_servers")
    kwargs["request_timeout_ms"] = 10_000
    return kwargs


def _bootstrap(servers: str) -> list[tuple[str, int]]:
    pairs = []
    for server in servers.split(","):
        host, _, port = server.strip().rpartition(":")
        pairs.append((host.strip("[]") or server.strip(), int(port or 9092)))
    return pairs


async def _connect(
    host: str, port: int, settings: KafkaSettings, kwargs: dict[str, Any]
) -> AIOKafkaConnection | None:
    """A connection that passed TLS and SASL, or None when the broker did not answer."""
    where = f"{host}:{port}"
    try:
        return await create_conn(host, port, **kwargs)
    except ssl.SSLCertVerificationError as exc:
        raise ConfigError(
            f"kafka.ssl_ca_file: the broker at {where} presented a certificate this gateway "
            f"does not trust ({exc.verify_message}): point kafka.ssl_ca_file at the CA that "
            "issued the brokers' certificates"
        ) from None
    except ssl.SSLError as exc:
        raise ConfigError(
            f"kafka.ssl_cert_file: the TLS handshake with {where} failed ({exc.reason or exc}): "
            "a broker that requires client certificates needs kafka.ssl_cert_file and "
            "kafka.ssl_key_file of a certificate its truststore accepts"
        ) from None
    except SaslAuthenticationFailed as exc:
        raise ConfigError(
            f"kafka.sasl_password_file: the broker at {where} refused the SASL "
            f"{settings.sasl_mechanism} login of user {settings.sasl_username!r} ({exc}): check "
            "kafka.sasl_username and the password in kafka.sasl_password_file"
        ) from None
    except UnsupportedSaslMechanismError as exc:
        raise ConfigError(
            f"kafka.sasl_mechanism: the broker at {where} does not offer "
            f"{settings.sasl_mechanism} ({exc}): use one of the mechanisms its listener enables"
        ) from None
    except (OSError, KafkaError, TimeoutError) as exc:
        context = kwargs.get("ssl_context")
        alert = None if context is None else await _tls_alert(host, port, context)
        if alert is not None:
            raise ConfigError(
                f"kafka.ssl_cert_file: the broker at {where} ended the TLS session ({alert}): "
                "it wants a client certificate it trusts; set kafka.ssl_cert_file and "
                "kafka.ssl_key_file to one issued by the CA in its truststore"
            ) from None
        _log.warning("kafka_preflight_unreachable", broker=where, error=str(exc) or repr(exc))
        return None


async def _tls_alert(host: str, port: int, context: ssl.SSLContext) -> str | None:
    """The TLS alert a broker sends right after the handshake, if any.

    With TLS 1.3 the client finishes its handshake before the server judges the client
    certificate, so a refusal reaches aiokafka only as a closed connection; reading once
    here shows the alert itself (e.g. ``TLSV13_ALERT_CERTIFICATE_REQUIRED``).
    """
    try:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection(host, port, ssl=context)
            try:
                await reader.read(1)
            finally:
                writer.close()
    except ssl.SSLError as exc:
        return str(exc.reason or exc)
    except (OSError, TimeoutError):
        pass
    return None


async def _check_idempotence(conn: AIOKafkaConnection, where: str) -> None:
    """Ask for a producer ID as the idempotent producer will, before it does (and dies)."""
    while True:
        response = await conn.send(InitProducerIdRequest(None, 60_000))
        code = response.error_code
        if code == 0:
            return
        if code in _RETRIABLE:
            await asyncio.sleep(0.2)
            continue
        if code in (_CLUSTER_AUTHORIZATION_FAILED, _TRANSACTIONAL_ID_AUTHORIZATION_FAILED):
            raise ConfigError(
                f"kafka.enable_idempotence: the broker at {where} refused this principal a "
                f"producer ID ({for_code(code).__name__}): grant it IdempotentWrite on the "
                "cluster (or Write on the topics, Kafka 2.8+), or set "
                "kafka.enable_idempotence: false"
            )
        raise ConfigError(
            f"kafka.enable_idempotence: the broker at {where} cannot give an idempotent "
            f"producer a producer ID (InitProducerId answered {for_code(code).__name__}): "
            "use a broker that supports it (Apache Kafka does), or set "
            "kafka.enable_idempotence: false for a broker without it, such as the embedded "
            "Tansu of `make run` (a retried produce may then duplicate or reorder records)"
        )
