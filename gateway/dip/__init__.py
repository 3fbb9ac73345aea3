"""Everything the gateway shares about the DIP: its vocabulary, the signed client over one
transport seam, the DCP's mTLS context and the webhook URLs registered with it.

No module here imports the configuration at run time (only for annotations): the
configuration imports :mod:`gateway.dip.vocabulary`, which runs this file first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway._lazy import lazy_exports
from gateway.dip.vocabulary import (
    DIP_ID_PATTERN,
    INTERFACE_PATTERN,
    MPID_PATTERN,
    Environment,
    RoleCode,
)

if TYPE_CHECKING:
    from gateway._cpus import available_cpus
    from gateway.dip._transports import (
        AiohttpTransport,
        DipTransport,
        DipTransportError,
        HttpxTransport,
        MemoryTransport,
        TransportRequest,
        TransportResponse,
    )
    from gateway.dip.client import (
        API_KEY_HEADER,
        DipClient,
        DipResponse,
        TransportName,
        dip_path,
        mtls_transport,
        new_signing_pool,
    )
    from gateway.dip.signing_pool import SigningPool
    from gateway.dip.tls import client_context
    from gateway.dip.webhook_urls import (
        WebhookSite,
        publication_callback_url,
        status_callback_url,
        webhook_path,
    )

__getattr__ = lazy_exports(
    __name__,
    {
        "AiohttpTransport": "gateway.dip._transports",
        "DipTransport": "gateway.dip._transports",
        "DipTransportError": "gateway.dip._transports",
        "HttpxTransport": "gateway.dip._transports",
        "MemoryTransport": "gateway.dip._transports",
        "TransportRequest": "gateway.dip._transports",
        "TransportResponse": "gateway.dip._transports",
        "API_KEY_HEADER": "gateway.dip.client",
        "DipClient": "gateway.dip.client",
        "DipResponse": "gateway.dip.client",
        "TransportName": "gateway.dip.client",
        "available_cpus": "gateway._cpus",
        "dip_path": "gateway.dip.client",
        "mtls_transport": "gateway.dip.client",
        "new_signing_pool": "gateway.dip.client",
        "SigningPool": "gateway.dip.signing_pool",
        "client_context": "gateway.dip.tls",
        "WebhookSite": "gateway.dip.webhook_urls",
        "publication_callback_url": "gateway.dip.webhook_urls",
        "status_callback_url": "gateway.dip.webhook_urls",
        "webhook_path": "gateway.dip.webhook_urls",
    },
)

__all__ = [
    "API_KEY_HEADER",
    "DIP_ID_PATTERN",
    "INTERFACE_PATTERN",
    "MPID_PATTERN",
    "AiohttpTransport",
    "DipClient",
    "DipResponse",
    "DipTransport",
    "DipTransportError",
    "Environment",
    "HttpxTransport",
    "MemoryTransport",
    "RoleCode",
    "SigningPool",
    "TransportName",
    "TransportRequest",
    "TransportResponse",
    "WebhookSite",
    "available_cpus",
    "client_context",
    "dip_path",
    "mtls_transport",
    "new_signing_pool",
    "publication_callback_url",
    "status_callback_url",
    "webhook_path",
]
