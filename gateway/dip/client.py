"""The DIP client: one shared mTLS connection pool, every request signed for its sender.

A DCP connects all its client MPs through one mTLS connection that uses the DCP's own
certificate; each request is signed with the certificate of the MP it is sent for, and carries
that DIP ID's API key. Signing is CPU-bound (RSA-4096, ~6 ms) and ``cryptography`` releases the
GIL, so it runs on a thread pool sized to the machine and the event loop never stalls.

The URL is built here once and both signed and sent as the same string: the DIP verifies the
signature over the URL as received, so it must not be re-encoded between the two.

Transports: ``aiohttp`` (the default) sends with an ``aiohttp.ClientSession`` directly; httpx
on top of it cost ~1 ms of event-loop CPU per request (request and header objects built twice,
URL parsing, cookie extraction), more than everything else the gateway does for a message at
batch size 1. Transport failures are still raised as ``httpx`` exceptions (the callers'
contract), mapped only on the error path. ``httpx`` uses httpx's own transport (and HTTP/2).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote, urlencode

import aiohttp
import httpx
from multidict import CIMultiDictProxy
from yarl import URL

from gateway.config import DcpSettings, DipSettings
from gateway.dip.signing_pool import SigningPool
from gateway.dip.tls import client_context, load_dcp_credential
from gateway.signing.credentials import SigningCredential
from gateway.signing.keystore import KeyStore

API_KEY_HEADER = "X-API-Key"


@dataclass(frozen=True)
class DipResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str
    sign_seconds: float = 0.0  # wall time spent waiting for the signature (pool queue + RSA)


def available_cpus() -> int:
    """CPUs this process may really use: the cgroup quota (a Kubernetes CPU limit) and the
    affinity mask, not the node's core count that ``os.cpu_count()`` reports."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as handle:
            quota, period = handle.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


def signing_pool(threads: int = 0) -> SigningPool:
    """A pool for RSA signing: one thread per usable CPU unless told otherwise."""
    return SigningPool(threads or available_cpus())


def dip_path(*segments: str) -> str:
    """``/a/b/c`` with each segment percent-encoded (DIP IDs and interface IDs are plain)."""
    return "/" + "/".join(quote(s, safe="-_.~") for s in segments)


class DipClient:
    """Signed requests to the DIP over one shared mTLS pool. Use as an async context manager."""

    def __init__(
        self,
        dip: DipSettings,
        dcp: DcpSettings,
        keystore: KeyStore,
        *,
        pool: SigningPool | None = None,
        transport: Literal["aiohttp", "httpx"] = "aiohttp",
        credential: SigningCredential | None = None,
    ) -> None:
        """``credential``: the DCP's mTLS credential if already loaded (and checked) by the
        caller; loaded from ``dcp`` otherwise."""
        self._dip = dip
        self._keystore = keystore
        self._ssl = client_context(credential or load_dcp_credential(dcp), dip.ca_bundle)
        # after the TLS context: a credential error must not leave a pool's threads behind
        self._own_pool = pool is None
        self._pool = pool or signing_pool()
        self._transport_name = transport
        self._http: httpx.AsyncClient | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        return self._dip.base_url

    @property
    def keystore(self) -> KeyStore:
        return self._keystore

    def _build_http(self) -> httpx.AsyncClient:
        timeout = httpx.Timeout(
            self._dip.request_timeout_seconds, connect=self._dip.connect_timeout_seconds
        )
        limits = httpx.Limits(
            max_connections=self._dip.max_connections,
            max_keepalive_connections=self._dip.max_connections,
        )
        return httpx.AsyncClient(
            verify=self._ssl, http2=self._dip.http2, limits=limits, timeout=timeout
        )

    def _build_session(self) -> aiohttp.ClientSession:
        """Timeouts as httpx's: connecting, waiting for a pooled connection, and each read."""
        dip = self._dip
        connector = aiohttp.TCPConnector(
            ssl=self._ssl, limit=dip.max_connections, keepalive_timeout=60
        )
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=dip.request_timeout_seconds + dip.connect_timeout_seconds,
            sock_connect=dip.connect_timeout_seconds,
            sock_read=dip.request_timeout_seconds,
        )
        return aiohttp.ClientSession(
            connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
        )

    async def __aenter__(self) -> DipClient:
        if self._transport_name == "aiohttp":
            self._session = self._build_session()
        else:
            self._http = self._build_http()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._own_pool:
            self._pool.shutdown(wait=False)

    def url(self, path: str, params: Mapping[str, str] | None = None) -> str:
        url = self._dip.base_url + path
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
    ) -> DipResponse:
        """Sign ``body`` for ``sender_dip_id`` and send it. Raises ``httpx.HTTPError`` on
        transport failures (connection, TLS, timeout); any HTTP status is returned."""
        if self._http is None and self._session is None:
            raise RuntimeError("DipClient used outside 'async with'")
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
        if self._session is not None:
            status, response_headers, content = await self._send_aiohttp(
                self._session, method, url, body, all_headers
            )
        else:
            assert self._http is not None
            response = await self._http.request(
                method, url, content=body if body else None, headers=all_headers
            )
            status, response_headers, content = (
                response.status_code,
                dict(response.headers),
                response.content,
            )
        return DipResponse(
            status=status,
            headers=response_headers,
            body=content,
            url=url,
            sign_seconds=sign_seconds,
        )

    @staticmethod
    async def _send_aiohttp(
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        body: bytes,
        headers: dict[str, str],
    ) -> tuple[int, dict[str, str], bytes]:
        """One request; the URL is sent exactly as signed (``encoded=True``: no re-quoting).

        Redirects are not followed (as with httpx): aiohttp would turn a redirected POST into a
        GET without the body, whose 2xx would pass for an accepted submission, or send the
        signed body and the API key to wherever ``Location`` points."""
        try:
            async with session.request(
                method,
                URL(url, encoded=True),
                data=body or None,
                headers=headers,
                allow_redirects=False,
            ) as response:
                content = await response.read()
                return response.status, _header_dict(response.headers), content
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _as_httpx_error(exc) from exc


def _header_dict(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    """Lower-case names, repeated headers joined with ", " (what ``dict(httpx.Headers)`` gave)."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _as_httpx_error(exc: BaseException) -> httpx.TransportError:
    """The httpx exception for an aiohttp transport failure (callers catch ``httpx.HTTPError``)."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return httpx.ConnectTimeout(message)
        return httpx.ReadTimeout(message)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return httpx.ReadError(message)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message)
    return httpx.NetworkError(message)
