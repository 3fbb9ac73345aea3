"""Ingress metrics: what the webhook accepted, refused (and why), and how long Kafka took."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PUSHES = Counter(
    "dcpgw_ingress_pushes_total",
    "Webhook requests answered, by channel (publication/status) and HTTP status.",
    ["channel", "status"],
)
REJECTED = Counter(
    "dcpgw_ingress_rejected_total",
    "Webhook requests refused before routing, by reason (see gateway.ingress.pipeline).",
    ["reason"],
)
MESSAGES = Counter(
    "dcpgw_ingress_messages_total",
    "Messages of accepted pushes, by channel and outcome (routed/duplicate/quarantined/failed).",
    ["channel", "outcome"],
)
PUSH_SECONDS = Histogram(
    "dcpgw_ingress_push_seconds",
    "Time from a push's body being read to its answer (verification + Kafka acks).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
