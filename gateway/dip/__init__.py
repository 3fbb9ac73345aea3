"""Everything the gateway shares about the DIP: its vocabulary, the signed client over one
transport seam, the DCP's mTLS context and the webhook URLs registered with it.

No module here imports the configuration at run time (only for annotations): the
configuration imports :mod:`gateway.dip.vocabulary`, which runs this file first.
"""

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
    available_cpus,
    dip_path,
    mtls_transport,
    signing_pool,
)
from gateway.dip.signing_pool import SigningPool
from gateway.dip.tls import client_context
from gateway.dip.vocabulary import (
    DIP_ID_PATTERN,
    INTERFACE_PATTERN,
    MPID_PATTERN,
    Environment,
    RoleCode,
)
from gateway.dip.webhook_urls import (
    WebhookSite,
    publication_callback_url,
    status_callback_url,
    webhook_path,
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
    "publication_callback_url",
    "signing_pool",
    "status_callback_url",
    "webhook_path",
]
