"""Prometheus metrics of response tracking (``dcpgw_tracking_`` prefix). Every pod that runs
tracking reads all of the topics, so every pod exports the same figures: aggregate with max."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

AWAITING = Gauge(
    "dcpgw_tracking_awaiting_responses",
    "Accepted requests (with a senderCorrelationID) whose response publication has not arrived.",
    ["client", "interface"],
)
OLDEST = Gauge(
    "dcpgw_tracking_oldest_awaiting_seconds",
    "Age of the oldest accepted request still awaiting its response publication (0: none).",
    ["client", "interface"],
)
MATCHED = Counter(
    "dcpgw_tracking_responses_total",
    "Response publications matched to an accepted request, by the request's client, interface.",
    ["client", "interface"],
)
EXPIRED = Counter(
    "dcpgw_tracking_expired_total",
    "Accepted requests no longer tracked: no response within tracking.horizon_hours.",
    ["client", "interface"],
)
