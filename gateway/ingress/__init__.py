"""Ingress: DIP webhook pushes -> signature verified -> each client's Kafka topics.

The service runs the webhook; the pipeline pieces are public too because ``dcp-gateway dip
replay`` delivers fetched publications through the same path a push takes.
"""

from gateway.ingress.dedup import DedupKey, DedupWindow
from gateway.ingress.deliver import Deliverer
from gateway.ingress.envelope import (
    EnvelopeError,
    Publication,
    StatusMessage,
    parse_publications,
    parse_status_messages,
)
from gateway.ingress.pipeline import Outcome, RoutingTable, plan_deliveries
from gateway.ingress.routes import Route, RouteKind, RouteTable
from gateway.ingress.service import (
    IngressServerFailed,
    IngressService,
    build_trust,
    producer_overrides,
)

__all__ = [
    "DedupKey",
    "DedupWindow",
    "Deliverer",
    "EnvelopeError",
    "IngressServerFailed",
    "IngressService",
    "Outcome",
    "Publication",
    "Route",
    "RouteKind",
    "RouteTable",
    "RoutingTable",
    "StatusMessage",
    "build_trust",
    "parse_publications",
    "parse_status_messages",
    "plan_deliveries",
    "producer_overrides",
]
