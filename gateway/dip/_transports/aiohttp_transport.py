"""The default transport: an ``aiohttp.ClientSession`` over one mTLS connection pool."""

from __future__ import annotations

import ssl
from collections.abc import Mapping

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from gateway.dip._transports.base import DipTransport, DipTransportError, TransportResponse


class AiohttpTransport(DipTransport):
    """HTTP/1.1 with keep-alive; timeouts as httpx's: connecting, waiting for a pooled
    connection, and each read."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        *,
        max_connections: int,
        connect_timeout: float,
        request_timeout: float,
    ) -> None:
        self._ssl = ssl_context
        self._max_connections = self.connections = max_connections
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(
            ssl=self._ssl, limit=self._max_connections, keepalive_timeout=60
        )
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self._request_timeout + self._connect_timeout,
            sock_connect=self._connect_timeout,
            sock_read=self._request_timeout,
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> TransportResponse:
        """``encoded=True``: the URL goes out as signed, not re-quoted. Redirects are not
        followed: aiohttp would turn a redirected POST into a GET without the body, whose 2xx
        would pass for an accepted submission, or send the signed body and the API key to
        wherever ``Location`` points."""
        if self._session is None:
            raise RuntimeError("DIP transport used before open() (use 'async with')")
        try:
            async with self._session.request(
                method,
                URL(url, encoded=True),
                data=body or None,
                headers=headers,
                allow_redirects=False,
            ) as response:
                content = await response.read()
                return TransportResponse(response.status, _header_dict(response.headers), content)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise DipTransportError(_describe(exc)) from exc


def _header_dict(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _describe(exc: BaseException) -> str:
    """What went wrong in words an operator can act on, then aiohttp's detail."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        what = "connect timeout"
    elif isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        what = "read timeout"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        what = "cannot connect"
    elif isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        what = "connection lost while reading the answer"
    elif isinstance(exc, aiohttp.InvalidURL):
        what = "unusable URL"
    else:
        what = "network error"
    return f"{what}: {detail}"
