"""An in-process transport for unit tests: each request is answered by a function, so what
the client sends and how its caller handles each answer can be checked without sockets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import NamedTuple

from gateway.dip._transports.base import DipTransport, TransportResponse


class TransportRequest(NamedTuple):
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


Handler = Callable[[TransportRequest], Awaitable[TransportResponse]]


class MemoryTransport(DipTransport):
    """Calls ``handler`` for each request; the handler returns the answer or raises
    :class:`~gateway.dip.DipTransportError` to play a DIP that does not answer."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    async def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> TransportResponse:
        return await self._handler(TransportRequest(method, url, dict(headers), body))
