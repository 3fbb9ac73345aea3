"""The DIP client: one shared mTLS connection pool, every request signed for its sender.

A DCP connects all its client MPs through one mTLS connection that uses the DCP's own
certificate; each request is signed with the certificate of the MP it is sent for, and carries
that DIP ID's API key. Signing is CPU-bound (RSA-4096) and ``cryptography`` releases the GIL,
so it runs on a thread pool sized to the machine and the event loop never stalls.

The URL is built here once and both signed and sent as the same string: the DIP verifies the
signature over the URL as received, so it must not be re-encoded between the two.

Sending is a :class:`~gateway.dip.DipTransport`'s job: aiohttp by default (httpx's client
costs more event-loop CPU per request, see ``load-tests/README.md``), httpx when HTTP/2 is
wanted, in memory in unit tests. Whichever sends, no answer is a
:class:`~gateway.dip.DipTransportError`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, urlencode

from gateway._cpus import available_cpus
from gateway.dip._transports import AiohttpTransport, DipTransport, HttpxTransport
from gateway.dip.exchange import DipExchange, ExchangeObserver
from gateway.dip.signing_pool import SigningPool
from gateway.dip.tls import client_context
from gateway.signing.credentials import SigningCredential
from gateway.signing.keystore import KeyStore

if TYPE_CHECKING:  # annotations only: the configuration imports gateway.dip's vocabulary
    from gateway.config import DipSettings

TransportName = Literal["aiohttp", "httpx"]

API_KEY_HEADER = "X-API-Key"


@dataclass(frozen=True)
class DipResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str
    sign_seconds: float = 0.0  # wall time spent waiting for the signature (pool queue + RSA)


def new_signing_pool(threads: int = 0) -> SigningPool:
    """A pool for RSA signing: one thread per usable CPU unless told otherwise."""
    return SigningPool(threads or available_cpus())


def dip_path(*segments: str) -> str:
    """``/a/b/c`` with each segment percent-encoded (DIP IDs and interface IDs are plain)."""
    return "/" + "/".join(quote(s, safe="-_.~") for s in segments)


_FEW_REQUESTS = 16
"""Requests in flight a client is sized for when its user does not say (the CLI, the demo):
a few at a time."""


def mtls_transport(
    dip: DipSettings,
    credential: SigningCredential,
    kind: TransportName = "aiohttp",
    *,
    concurrent_requests: int = _FEW_REQUESTS,
) -> DipTransport:
    """The transport of the shared connection: ``credential`` as the client certificate, the
    DIP's server certificate checked against ``dip.ca_bundle``; as many pooled connections as
    ``dip.max_connections``, else one per request the caller has in flight at most."""
    context = client_context(credential, dip.ca_bundle)
    connections = dip.connection_limit(concurrent_requests)
    if kind == "httpx":
        return HttpxTransport(
            context,
            http2=dip.http2,
            max_connections=connections,
            connect_timeout=dip.connect_timeout_seconds,
            request_timeout=dip.request_timeout_seconds,
        )
    return AiohttpTransport(
        context,
        max_connections=connections,
        connect_timeout=dip.connect_timeout_seconds,
        request_timeout=dip.request_timeout_seconds,
    )


class DipClient:
    """Signed requests to the DIP through one transport. Use as an async context manager."""

    def __init__(
        self,
        base_url: str,
        keystore: KeyStore,
        transport: DipTransport,
        *,
        pool: SigningPool | None = None,
        observer: ExchangeObserver | None = None,
    ) -> None:
        self._base_url = base_url
        self._keystore = keystore
        self._transport = transport
        self._own_pool = pool is None
        self._pool = pool or new_signing_pool()
        self._observer = observer
        self._sending = 0  # requests handed to the transport and not answered yet

    @classmethod
    def over_mtls(
        cls,
        dip: DipSettings,
        credential: SigningCredential,
        keystore: KeyStore,
        *,
        pool: SigningPool | None = None,
        transport: TransportName = "aiohttp",
        observer: ExchangeObserver | None = None,
        concurrent_requests: int = _FEW_REQUESTS,
    ) -> DipClient:
        """The client as deployed: the DCP's mTLS ``credential`` on the shared connection,
        sized for ``concurrent_requests`` in flight (``egress.max_concurrent_requests``)."""
        # the TLS context first: a credential it refuses must not leave a pool's threads behind
        channel = mtls_transport(
            dip, credential, transport, concurrent_requests=concurrent_requests
        )
        return cls(dip.base_url, keystore, channel, pool=pool, observer=observer)

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def keystore(self) -> KeyStore:
        return self._keystore

    def waiting_for_connection(self) -> int:
        """Requests sent beyond the transport's connections: they wait for a free one. Above
        0 for long, the pool (``dip.max_connections``) is what limits the requests in flight.
        """
        limit = self._transport.connections
        return 0 if limit is None else max(0, self._sending - limit)

    @property
    def signing_queued(self) -> int:
        """Signatures waiting for a signing thread (every thread busy)."""
        return self._pool.queued

    async def settled(self) -> None:
        """Return once the observer (the submission ledger) has durably recorded every
        request sent so far; at once without one. Raises what the observer raises."""
        if self._observer is not None:
            await self._observer.settled()

    async def __aenter__(self) -> DipClient:
        await self._transport.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()
        if self._own_pool:
            self._pool.shutdown(wait=False)

    def url(self, path: str, params: Mapping[str, str] | None = None) -> str:
        url = self._base_url + path
        if params:
            url += "?" + urlencode(params)
        return url

    async def sign(
        self, credential: SigningCredential, method: str, url: str, body: bytes
    ) -> dict[str, str]:
        """Sign on the pool, off the event loop."""
        return await self._pool.run(credential.sign, method, url, body, datetime.now(UTC))

    async def request(
        self,
        method: str,
        path: str,
        sender_dip_id: str,
        body: bytes = b"",
        *,
        params: Mapping[str, str] | None = None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        references: Sequence[str | None] | None = None,
    ) -> DipResponse:
        """Sign ``body`` for ``sender_dip_id`` and send it. Raises
        :class:`~gateway.dip.DipTransportError` when no answer comes (connection, TLS,
        timeout); any HTTP status is returned. ``references``: the senderUniqueReferences
        of the messages in ``body``, passed on to the observer (the caller has them already;
        finding them again would mean parsing the body)."""
        credential = self._keystore.signer_for(sender_dip_id)
        url = self.url(path, params)
        started = time.perf_counter()
        signed = await self.sign(credential, method, url, body)
        sign_seconds = time.perf_counter() - started
        all_headers = {
            API_KEY_HEADER: api_key or self._keystore.api_key_for(sender_dip_id),
            "Content-Type": "application/json",
            "Accept": "application/json",
            **signed,
            **(headers or {}),
        }
        self._sending += 1
        try:
            status, response_headers, content = await self._transport.send(
                method, url, all_headers, body
            )
        except BaseException as exc:  # sent, maybe received: recorded, then passed on
            self._sending -= 1
            if self._observer is not None:
                error = f"{type(exc).__name__}: {exc}".rstrip(": ")
                self._observer.observe(
                    DipExchange(
                        method, path, sender_dip_id, references, signed, credential, None,
                        error=error,
                    )
                )  # fmt: skip
            raise
        self._sending -= 1
        if self._observer is not None:
            self._observer.observe(
                DipExchange(
                    method, path, sender_dip_id, references, signed, credential, status, content
                )
            )
        return DipResponse(
            status=status,
            headers=response_headers,
            body=content,
            url=url,
            sign_seconds=sign_seconds,
        )
