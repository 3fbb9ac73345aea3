"""The webhook URL scheme: which URL the gateway registers with the DIP, and what a path means.

One callback URL per (interface, recipient DIP ID) and one per DIP ID for status messages::

    {public_base_url}{publication_path}/{interface}/{recipient_dip_id}
    {public_base_url}{status_path}/{recipient_dip_id}

e.g. ``https://gw.example/dip/publications/IF-043/1400010001`` and
``https://gw.example/dip/status/1400010001`` with the default paths.

Putting the recipient in the path lets the gateway pick the client before it parses anything,
and cross-check the DIP's own addressing (``A0``) against the webhook it used. The DIP signs the
URL as *it* called it, so the URL to verify is ``public_base_url`` + path + query, whatever the
address inside the cluster. When ``public_base_url`` carries a path prefix (``https://gw/dcp``)
the ingress controller may forward the request with or without that prefix; both are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from gateway.config import IngressSettings
from gateway.dip.vocabulary import DIP_ID_PATTERN, INTERFACE_PATTERN
from gateway.dip.webhook_urls import webhook_path


class RouteKind(StrEnum):
    PUBLICATION = "publication"
    STATUS = "status"


@dataclass(frozen=True, slots=True)
class Route:
    """What a webhook path addresses: a publication channel or the status-message channel."""

    kind: RouteKind
    recipient: str
    interface: str | None = None


@dataclass(frozen=True, slots=True)
class RouteTable:
    """Precomputed prefixes so routing a request is two string checks and a split."""

    base_prefix: str
    publication_prefix: str
    status_prefix: str
    public_base_url: str

    @classmethod
    def from_settings(cls, ingress: IngressSettings) -> RouteTable:
        return cls(
            base_prefix=urlsplit(ingress.public_base_url).path.rstrip("/"),
            publication_prefix=webhook_path(ingress.publication_path) + "/",
            status_prefix=webhook_path(ingress.status_path) + "/",
            public_base_url=ingress.public_base_url,
        )

    def resolve(self, raw_path: str) -> tuple[Route | None, str]:
        """The route a path addresses (None: 404) and the path without the public base URL's
        own prefix, if the proxy kept it.

        Ambiguous when the prefix is also the webhook path's first segment (base ``/dip`` and
        publications under ``/dip/publications``): ``/dip/publications/...`` may be a request
        whose prefix the proxy stripped, or not. The reading that addresses a webhook wins, so
        both proxy styles route, and the signed URL follows the same reading.
        """
        if self.base_prefix and raw_path.startswith(self.base_prefix + "/"):
            stripped = raw_path[len(self.base_prefix) :]
            route = self._route(stripped)
            if route is None:
                kept = self._route(raw_path)
                if kept is not None:
                    return kept, raw_path
            return route, stripped
        return self._route(raw_path), raw_path

    def public_url(self, local_path: str, query: str) -> str:
        """The URL the DIP signed: public base URL + local path (+ ``?query`` when there is one)."""
        url = self.public_base_url + local_path
        return f"{url}?{query}" if query else url

    def _route(self, path: str) -> Route | None:
        if path.startswith(self.publication_prefix):
            parts = path[len(self.publication_prefix) :].split("/")
            if (
                len(parts) == 2
                and INTERFACE_PATTERN.fullmatch(parts[0])
                and DIP_ID_PATTERN.fullmatch(parts[1])
            ):
                return Route(RouteKind.PUBLICATION, parts[1], parts[0])
            return None
        if path.startswith(self.status_prefix):
            rest = path[len(self.status_prefix) :]
            if DIP_ID_PATTERN.fullmatch(rest):
                return Route(RouteKind.STATUS, rest)
        return None
