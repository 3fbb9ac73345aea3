"""The seam between :class:`~gateway.dip.client.DipClient` and an HTTP library.

A transport sends bytes and returns bytes: the client signs and builds the URL and headers,
so what is signed is exactly what a transport sends, whichever library sends it. Any failure
to get an HTTP answer is one :class:`DipTransportError`, so callers catch one exception
whichever library is underneath.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import NamedTuple, Self


class DipTransportError(Exception):
    """No HTTP answer: connection refused or lost, TLS failure, timeout. An HTTP status, any
    status, is an answer and is returned, not raised."""


class TransportResponse(NamedTuple):
    status: int
    #: lower-case names; a repeated header's values joined with ", "
    headers: dict[str, str]
    body: bytes


class DipTransport(ABC):
    """Sends one request and returns the answer; use as an async context manager (or call
    :meth:`open` and :meth:`aclose`), which :class:`~gateway.dip.client.DipClient` does."""

    #: Requests sent at once at most (one per pooled HTTP/1.1 connection); more wait for a
    #: connection. None: no such limit (in memory, HTTP/2's streams).
    connections: int | None = None

    @abstractmethod
    async def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> TransportResponse:
        """Send ``body`` (none when empty) to ``url`` exactly as given (no re-encoding: the
        DIP verifies the signature over the URL as received) and never follow a redirect.
        Raises :class:`DipTransportError` when no HTTP answer comes."""

    async def open(self) -> None:  # noqa: B027 (a transport without resources needs no opening)
        """Acquire what sending needs (a connection pool): inside the event loop."""

    async def aclose(self) -> None:  # noqa: B027
        """Release what :meth:`open` acquired."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
