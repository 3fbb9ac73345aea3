"""DIP transports, in httpx's ``_transports`` style: one small interface, one module per
implementation."""

from gateway.dip._transports.aiohttp_transport import AiohttpTransport
from gateway.dip._transports.base import DipTransport, DipTransportError, TransportResponse
from gateway.dip._transports.httpx_transport import HttpxTransport
from gateway.dip._transports.memory import Handler, MemoryTransport, TransportRequest

__all__ = [
    "AiohttpTransport",
    "DipTransport",
    "DipTransportError",
    "Handler",
    "HttpxTransport",
    "MemoryTransport",
    "TransportRequest",
    "TransportResponse",
]
