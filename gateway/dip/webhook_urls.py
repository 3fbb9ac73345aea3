"""The webhook URLs the gateway registers with the DIP (shared by DIP admin and ingress).

One callback URL per (interface, recipient DIP ID) and one per DIP ID for status messages::

    {public_base_url}{publication_path}/{interface}/{recipient_dip_id}
    {public_base_url}{status_path}/{recipient_dip_id}

e.g. ``https://gw.example/dip/publications/IF-043/1400010001`` and
``https://gw.example/dip/status/1400010001`` with the default paths. The admin commands build
them to register; ingress routes the same paths back (:mod:`gateway.ingress.routes`). Neither
side imports the other: both import this module.
"""

from __future__ import annotations

from typing import Protocol


class WebhookSite(Protocol):
    """Where the webhook is (``IngressSettings`` is one). Structural, so the configuration can
    check its paths with :func:`webhook_path` without this module importing it back."""

    @property
    def public_base_url(self) -> str: ...
    @property
    def publication_path(self) -> str: ...
    @property
    def status_path(self) -> str: ...


def publication_callback_url(ingress: WebhookSite, interface: str, dip_id: str) -> str:
    """The URL registered for publications of ``interface`` sent to ``dip_id``."""
    return f"{ingress.public_base_url}{webhook_path(ingress.publication_path)}/{interface}/{dip_id}"


def status_callback_url(ingress: WebhookSite, dip_id: str) -> str:
    """The URL registered for status messages sent to ``dip_id``."""
    return f"{ingress.public_base_url}{webhook_path(ingress.status_path)}/{dip_id}"


def webhook_path(path: str) -> str:
    """A configured webhook path in canonical form: one leading ``/``, no trailing ``/``."""
    path = path.strip()
    if not path.startswith("/"):
        path = "/" + path
    return path.rstrip("/")
