"""Prometheus metrics of the egress path (``dcpgw_egress_`` prefix, base units).

Counters are labelled by client and interface: few enough series (clients x interfaces used)
and exactly what an operator asks ("is alice's IF-021 being rejected?"). Label children are
cached per (client, interface) so the hot path does one dict lookup, not a label resolution.
Interfaces outside the known list count as ``other`` (see :func:`interface_label`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, NamedTuple

from prometheus_client import Counter, Enum, Gauge, Histogram

from gateway.egress.reasons import DeadLetterReason
from gateway.ops.metrics import OTHER_INTERFACE, interface_label

if TYPE_CHECKING:
    from gateway.egress.holds import Hold

CONSUMED = Counter(
    "dcpgw_egress_messages_consumed_total",
    "Records read from outbound topics.",
    ["client", "interface"],
)
ACCEPTED = Counter(
    "dcpgw_egress_messages_accepted_total", "Messages the DIP accepted.", ["client", "interface"]
)
REJECTED = Counter(
    "dcpgw_egress_messages_rejected_total",
    "Messages the DIP rejected (sent to the client's dead-letter topic).",
    ["client", "interface"],
)
DEAD_LETTERED = Counter(
    "dcpgw_egress_messages_dead_lettered_total",
    "Messages written to a dead-letter topic, by reason class (gateway.egress.reasons).",
    ["client", "interface", "reason"],
)
RETRIED = Counter(
    "dcpgw_egress_messages_retried_total",
    "Messages re-sent after a retryable failure.",
    ["client", "interface"],
)
REQUESTS = Counter(
    "dcpgw_egress_requests_total",
    "DIP submissions by client and HTTP status (error: no answer).",
    ["client", "status"],
)
API_KEY_FALLBACKS = Counter(
    "dcpgw_egress_api_key_fallbacks_total",
    "Requests re-sent with the secondary API key after the primary got a 401 (rotation).",
    ["client"],
)
OUTCOME_WRITE_FAILURES = Counter(
    "dcpgw_egress_outcome_write_failures_total",
    "Failed attempts to produce result or dead-letter records (retried; commits wait).",
)
DEAD_LETTER_VALUES_DROPPED = Counter(
    "dcpgw_egress_dead_letter_values_dropped_total",
    "Dead letters the broker refused for their size, written again without the original value "
    "(their headers point at the source record).",
    ["topic"],
)
COMMIT_FAILURES = Counter(
    "dcpgw_egress_commit_failures_total", "Failed consumer offset commits (retried)."
)
END_TO_END_SECONDS = Histogram(
    "dcpgw_egress_end_to_end_seconds",
    "From the Kafka timestamp of a submission's first record to the DIP's final answer (one "
    "observation per answered submission).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
BATCH_SIZE = Histogram(
    "dcpgw_egress_batch_messages",
    "Messages per DIP submission.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)
SIGN_SECONDS = Histogram(
    "dcpgw_egress_sign_seconds",
    "Time to sign one request (on the signing pool).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
REQUEST_SECONDS = Histogram(
    "dcpgw_egress_request_seconds",
    "Time from sending a signed request to the DIP's answer.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
IN_FLIGHT = Gauge("dcpgw_egress_in_flight_messages", "Records consumed but not final yet.")
REQUESTS_WAITING = Gauge(
    "dcpgw_egress_requests_waiting",
    "Batches ready to send that wait for one of egress.max_concurrent_requests request slots. "
    "Above 0 while the gateway's CPU is not busy: the slots limit throughput (Little's law: "
    "slots / round trip = requests/s at most).",
)
REQUESTS_WAITING_FOR_CONNECTION = Gauge(
    "dcpgw_egress_requests_waiting_for_connection",
    "Signed requests that wait for a free connection of the DIP pool (dip.max_connections "
    "below egress.max_concurrent_requests): above 0, the pool limits throughput.",
)
PAUSED = Gauge(
    "dcpgw_egress_fetch_paused",
    "1 while no records are taken for back-pressure (held at the in-flight limit, or paused).",
)
CONSUMER_LAG = Gauge(
    "dcpgw_egress_consumer_lag_records",
    "Records between the consumer position and the partition end.",
    ["topic", "partition"],
)

CLIENT_STATE = Enum(
    "dcpgw_egress_client_state",
    "Whether the DIP holds the client off: open, throttled (429), unavailable (502-504, no "
    "answer) or auth (401/403 with every key: its credentials, the client is stopped).",
    ["client"],
    states=["open", "throttled", "unavailable", "auth"],
)
CLIENT_HELD_SINCE = Gauge(
    "dcpgw_egress_client_held_since_timestamp_seconds",
    "When the current hold of the client began (0: not held).",
    ["client"],
)
DIVERTING = Gauge(
    "dcpgw_egress_client_diverting",
    "1 while the client's records go to its retry topic instead of the DIP (held, or its retry "
    "backlog not drained yet).",
    ["client"],
)
DIVERTED = Counter(
    "dcpgw_egress_messages_diverted_total",
    "Records moved to the client's retry topic: the DIP held the client off, or it held more "
    "than its share of a full in-flight window.",
    ["client"],
)
PARKED_KEYS = Gauge(
    "dcpgw_egress_parked_keys",
    "Kafka keys of the client (park_keys) parked behind a dead-lettered record, waiting for "
    "`dcp-gateway dlq release`.",
    ["client"],
)
PARKED = Counter(
    "dcpgw_egress_messages_parked_total",
    "Records moved to the client's parked topic because their key was parked.",
    ["client"],
)
CLIENT_MESSAGES_IN_FLIGHT = Gauge(
    "dcpgw_egress_client_in_flight_messages",
    "The client's records consumed but not final (its use of egress.max_in_flight_messages), "
    "from the outbound topics (source=outbound) and read back from its retry topic "
    "(source=retry); sampled every 5 s.",
    ["client", "source"],
)
CLIENT_REQUESTS_IN_FLIGHT = Gauge(
    "dcpgw_egress_client_requests_in_flight",
    "DIP requests of the client under way: its use of the fairly shared request slots.",
    ["client"],
)


def client_hold(client: str, hold: Hold | None) -> None:
    """Export a client's hold state (on change only)."""
    CLIENT_STATE.labels(client).state("open" if hold is None else hold.kind.value)
    CLIENT_HELD_SINCE.labels(client).set(0 if hold is None else _wall(hold.since))


def _wall(monotonic: float) -> float:
    """Epoch seconds of a ``time.monotonic()`` instant."""
    return time.time() - (time.monotonic() - monotonic)


class Counters(NamedTuple):
    """The per-message counters' children for one (client, interface), looked up once."""

    consumed: Counter
    accepted: Counter
    rejected: Counter
    retried: Counter
    client: str
    interface: str  # the label value

    def dead_lettered(self, reason: DeadLetterReason) -> Counter:
        """The dead-letter counter of this client and interface for ``reason`` (off the hot
        path: dead letters are the exception)."""
        return DEAD_LETTERED.labels(self.client, self.interface, reason.value)


_cache: dict[tuple[str, str], Counters] = {}


def counters(client: str, interface: str) -> Counters:
    """The counters of one client and interface (``.labels`` costs a lock and a dict walk)."""
    key = (client, interface)
    found = _cache.get(key)
    if found is None:
        label = interface_label(interface)
        if label == OTHER_INTERFACE:  # cached under "other" only: the cache stays bounded
            key = (client, label)
            found = _cache.get(key)
        if found is None:
            found = _cache[key] = Counters(
                CONSUMED.labels(client, label),
                ACCEPTED.labels(client, label),
                REJECTED.labels(client, label),
                RETRIED.labels(client, label),
                client,
                label,
            )
    return found
