"""Prometheus metrics of the submission ledger (``dcpgw_ledger_`` prefix)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RECORDS = Counter(
    "dcpgw_ledger_records_total",
    "Ledger records by direction (egress: DIP requests, ingress: verified pushes) and outcome "
    "(written: acknowledged by Kafka, failed: not written).",
    ["direction", "outcome"],
)
PENDING = Gauge(
    "dcpgw_ledger_pending_records",
    "Ledger records handed to the producer and not yet acknowledged (egress commits wait).",
)
