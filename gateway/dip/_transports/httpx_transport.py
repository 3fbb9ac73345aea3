"""httpx's own transport: kept for HTTP/2 (``dip.http2``), which only httpx speaks here."""

from __future__ import annotations

import ssl
from collections.abc import Mapping

import httpx

from gateway.dip._transports.base import DipTransport, DipTransportError, TransportResponse


class HttpxTransport(DipTransport):
    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        *,
        http2: bool,
        max_connections: int,
        connect_timeout: float,
        request_timeout: float,
    ) -> None:
        self._ssl = ssl_context
        self._http2 = http2
        self.connections = None if http2 else max_connections
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._timeout = httpx.Timeout(request_timeout, connect=connect_timeout)
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        self._client = httpx.AsyncClient(
            verify=self._ssl, http2=self._http2, limits=self._limits, timeout=self._timeout
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> TransportResponse:
        """httpx follows no redirects unless asked, and sends a ``str`` URL as given."""
        if self._client is None:
            raise RuntimeError("DIP transport used before open() (use 'async with')")
        try:
            response = await self._client.request(
                method, url, content=body or None, headers=headers
            )
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            raise DipTransportError(f"{type(exc).__name__}: {exc}") from exc
        return TransportResponse(response.status_code, dict(response.headers), response.content)
