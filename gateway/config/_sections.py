"""The settings of each section of the configuration, one model per section."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from gateway.config._errors import FieldProblems
from gateway.config._fields import HTTP_URL_PATTERN, ConfigModel, dip_id, must_exist, topic_name
from gateway.signing.fingerprint import normalise_fingerprint

#: ``ops.event_loop``; :mod:`gateway.ops.eventloop` builds the loop.
EventLoopChoice = Literal["auto", "uvloop", "asyncio"]


#: The most connections ``dip.max_connections`` may set, and the pool's size when one
#: connection per request slot would be more (each is a socket and a TLS session at the DIP).
_MAX_CONNECTIONS = 1024


class DipSettings(ConfigModel):
    """Where the DIP is and how the gateway's one shared connection to it behaves."""

    base_url: str = Field(description="DIP base URL, e.g. https://api.uit.dip.example")
    ca_bundle: Path | None = Field(
        default=None, description="PEM bundle to verify the DIP's server certificate"
    )
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    max_connections: int | None = Field(
        default=None,
        ge=1,
        le=_MAX_CONNECTIONS,
        description="mTLS connections in the pool to the DIP. Each request holds one for its "
        "round trip, so a pool smaller than egress.max_concurrent_requests caps requests in "
        "flight below the slots (then dcpgw_egress_requests_waiting_for_connection > 0). "
        "null: one per request slot (egress.max_concurrent_requests), at most 1,024. Each "
        "new connection "
        "costs the gateway an RSA signature (its TLS handshake) and the DIP a TLS session",
    )
    http2: bool = False

    def connection_limit(self, concurrent_requests: int) -> int:
        """The pool's size: ``max_connections``, or one connection per request slot (at most
        1,024)."""
        return self.max_connections or min(concurrent_requests, _MAX_CONNECTIONS)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not HTTP_URL_PATTERN.match(v):
            raise ValueError("must be an absolute http(s) URL, e.g. https://dip.example")
        return v.rstrip("/")

    @field_validator("ca_bundle")
    @classmethod
    def _files(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return must_exist(v, info)


class DcpSettings(ConfigModel):
    """The DCP's own identity: its DCP ID and the mTLS certificate of the shared connection."""

    dcp_id: str = Field(description="10-digit DCP ID")
    mtls_pfx: Path | None = Field(default=None, description="PFX with the DCP mTLS key+cert")
    mtls_key: Path | None = None
    mtls_cert: Path | None = None
    mtls_password_file: Path | None = None

    @field_validator("dcp_id", mode="before")
    @classmethod
    def _dcp_id(cls, v: Any) -> str:
        return dip_id(v)

    @field_validator("mtls_pfx", "mtls_key", "mtls_cert", "mtls_password_file")
    @classmethod
    def _files(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return must_exist(v, info)

    @model_validator(mode="after")
    def _one_source(self) -> DcpSettings:
        pem = self.mtls_key is not None or self.mtls_cert is not None
        if self.mtls_pfx is not None and pem:
            raise ValueError("set either mtls_pfx or mtls_key + mtls_cert, not both")
        if pem and (self.mtls_key is None or self.mtls_cert is None):
            raise ValueError("mtls_key and mtls_cert go together: set both")
        return self


class TrustSettings(ConfigModel):
    """The DIP trust anchor for publications pushed to the webhook.

    The DIP's CA issues every MP's signing certificate too, so chaining to ``ca_bundle`` does
    not make a certificate the DIP's: ``signer_names`` lists the names (subject CN or DNS
    subjectAltName) of the DIP's publication signing certificate(s), and is required with
    ``ca_bundle`` when ingress is enabled (only ingress verifies publications). A pinned
    certificate (``pinned_sha256``) needs no name.
    """

    ca_bundle: Path | None = Field(
        default=None, description="PEM CA bundle the DIP signer chains to"
    )
    pinned_sha256: tuple[str, ...] = Field(
        default=(), description="SHA-256 fingerprints of accepted DIP signing certificates"
    )
    signer_names: tuple[str, ...] = Field(
        default=(),
        description="CN / DNS subjectAltName values of the DIP's publication signing "
        "certificate(s); required with ca_bundle when ingress is enabled",
    )
    max_skew_seconds: float = Field(default=300.0, gt=0)

    @field_validator("ca_bundle")
    @classmethod
    def _files(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return must_exist(v, info)

    @field_validator("pinned_sha256")
    @classmethod
    def _pins(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(normalise_fingerprint(item) for item in v)

    @field_validator("signer_names")
    @classmethod
    def _names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for item in v:
            name = item.strip().lower()
            if not name or any(c.isspace() for c in name):
                raise ValueError(
                    f"{item!r} is not a certificate name: give the DIP signing certificate's "
                    "CN or DNS name, e.g. dip-signing.example"
                )
            out.append(name)
        return tuple(out)


class KafkaSettings(ConfigModel):
    """Connection to the DCP's Kafka cluster and the gateway's shared topics."""

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "dcp-gateway"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    ssl_ca_file: Path | None = None
    ssl_cert_file: Path | None = None
    ssl_key_file: Path | None = None
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password_file: Path | None = None
    enable_idempotence: bool = Field(
        default=True,
        description="idempotent producer (acks=all): a retried produce of a result, dead letter "
        "or inbound message can neither duplicate nor reorder it. Start-up checks that the "
        "broker grants a producer ID; only for a broker without InitProducerId (the embedded "
        "Tansu) turn it off",
    )
    tansu_compat: bool = Field(
        default=False,
        description="work around the embedded Tansu broker: a stopping consumer leaves its "
        "group from generation 0 too (Tansu numbers the first generation 0, and aiokafka "
        "leaves only from 1, so a restarted gateway waited for the old member's session to "
        "expire). Set by `pki dev-init` for `make run`; never needed on Apache Kafka",
    )
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = Field(
        default="zstd",
        description="codec of the records the gateway produces (results, dead letters, inbound "
        "messages). zstd (Kafka 2.1+, librdkafka 1.0+ consumers) costs the event loop far "
        "less than aiokafka's gzip (level 9), at a better ratio (load-tests/README.md)",
    )
    consumer_group: str = "dcp-gateway-egress"
    group_instance_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=249,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="static group membership (KIP-345): a restarted member with the same ID "
        "takes its partitions back at once instead of after the old member's session expires. "
        "Give each replica its own stable ID (the pod name: a container restarted in its pod "
        "keeps it). A static member does not leave on shutdown, so a replica that goes away "
        "for good holds its partitions until kafka.session_timeout_ms",
    )
    check_crcs: bool = Field(
        default=True,
        description="verify the CRC-32C of every fetched record batch (Apache Kafka's default; "
        "librdkafka's is off, since the broker checked it on produce and TCP or TLS protect "
        "it on the way). Costs egress's event loop a little per record "
        "(load-tests/bench_kafka_consume.py)",
    )
    session_timeout_ms: int = Field(
        default=10_000,
        ge=1000,
        description="consumer group session: a member silent this long is removed from the "
        "group (the broker bounds it by group.min/max.session.timeout.ms, 6000 by default)",
    )
    heartbeat_interval_ms: int = Field(
        default=3000, ge=100, description="consumer heartbeats; at most a third of the session"
    )
    rebalance_timeout_ms: int = Field(
        default=60_000,
        ge=1000,
        description="how long a rebalance waits for members to rejoin; egress drains in-flight "
        "work (up to egress.shutdown_grace_seconds) before it rejoins",
    )
    max_poll_interval_ms: int = Field(
        default=300_000, ge=1000, description="longest gap between polls before leaving the group"
    )
    outbound_topics: tuple[str, ...] = ("dip.outbound",)
    status_outbound_topic: str | None = "dip.status.outbound"
    quarantine_topic: str = "dip.inbound.quarantine"
    dead_letter_topic: str = Field(
        default="dip.outbound.dead-letter",
        description="for records no client owns (unknown or unreadable sender)",
    )
    redrive_log_topic: str = Field(
        default="dip.outbound.dead-letter.redrives",
        description="`dcp-gateway dlq redrive --execute` records each dead letter it re-drove "
        "here (key: the dead letter's topic/partition/offset), so a second run skips it. "
        "Compacted (cleanup.policy=compact); only the dlq command uses it",
    )
    parked_keys_topic: str | None = Field(
        default=None,
        description="the keys parked for clients with park_keys (key: client and Kafka key; a "
        "tombstone once released), read to its end by egress at start. Compacted; default "
        "`<kafka.consumer_group>.parked-keys`",
    )
    create_topics: bool = Field(
        default=False, description="create missing topics at start (dev and tests)"
    )

    @field_validator("ssl_ca_file", "ssl_cert_file", "ssl_key_file", "sasl_password_file")
    @classmethod
    def _files(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return must_exist(v, info)

    @field_validator("outbound_topics")
    @classmethod
    def _topics(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for t in v:
            topic_name(t)
        return v

    @field_validator(
        "quarantine_topic",
        "dead_letter_topic",
        "status_outbound_topic",
        "redrive_log_topic",
        "parked_keys_topic",
    )
    @classmethod
    def _topic_field(cls, v: str | None) -> str | None:
        return None if v is None else topic_name(v)

    @model_validator(mode="after")
    def _group_timing(self) -> KafkaSettings:
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError(
                "heartbeat_interval_ms must be at most a third of session_timeout_ms, so a "
                "member survives a lost heartbeat"
            )
        return self

    @model_validator(mode="after")
    def _sasl(self) -> KafkaSettings:
        problems: list[tuple[str, str]] = []
        sasl_fields = {
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_username": self.sasl_username,
            "sasl_password_file": self.sasl_password_file,
        }
        if self.security_protocol.startswith("SASL"):
            problems += [
                (name, f"security_protocol {self.security_protocol} needs it: set {name}")
                for name, value in sasl_fields.items()
                if value is None
            ]
        elif self.sasl_mechanism is not None:
            problems.append(
                (
                    "sasl_mechanism",
                    f"set, but security_protocol {self.security_protocol} does not use SASL: "
                    "use SASL_SSL (or SASL_PLAINTEXT), or remove the sasl_* settings",
                )
            )
        if problems:
            raise FieldProblems(problems)
        return self

    @model_validator(mode="after")
    def _ssl(self) -> KafkaSettings:
        problems: list[tuple[str, str]] = []
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            missing = "ssl_key_file" if self.ssl_key_file is None else "ssl_cert_file"
            problems.append(
                (
                    missing,
                    "ssl_cert_file and ssl_key_file go together (the client certificate and "
                    f"its key): set {missing} too, or remove the other",
                )
            )
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            problems += [
                (
                    name,
                    f"set, but security_protocol {self.security_protocol} does not use TLS: "
                    f"use SSL (or SASL_SSL), or remove {name}",
                )
                for name in ("ssl_ca_file", "ssl_cert_file", "ssl_key_file")
                if getattr(self, name) is not None
            ]
        if problems:
            raise FieldProblems(problems)
        return self


#: ``egress.max_linger_ms`` when unset (or ``linger_ms`` if that is longer).
_MAX_LINGER_MS = 100.0


class EgressSettings(ConfigModel):
    """Kafka -> DIP: batching, concurrency, retries."""

    enabled: bool = True
    max_batch_messages: int = Field(default=100, ge=1, le=10_000)
    max_batch_bytes: int = Field(default=1_000_000, ge=1_024)
    linger_ms: float = Field(
        default=20.0,
        ge=0,
        description="an open batch is sent when its oldest message has waited this long (or "
        "when it is full)",
    )
    max_linger_ms: float | None = Field(
        default=None,
        ge=0,
        description="while every signing thread is busy with a queue behind it, or every "
        "request slot or DIP connection is taken, an open batch keeps filling past linger_ms, "
        "up to this long: a signature is the dearest part of a request, so when they are "
        "scarce each one carries more messages (fewer requests, no queue of small ones), and "
        "when they are not nothing waits longer than linger_ms. Unset: 100, or linger_ms if "
        "that is longer; equal to linger_ms: off",
    )
    max_in_flight_messages: int = Field(
        default=20_000,
        ge=1,
        description="records consumed but not final; at the limit fetching holds (buffers kept), "
        "and after a long hold the partitions are paused. Also sizes the young GC generation "
        "while egress runs (5 per record, 20,000 to 500,000)",
    )
    max_concurrent_requests: int = Field(
        default=256,
        ge=1,
        description="DIP requests in flight (signing or waiting for the answer), shared by "
        "the clients by weight. By Little's law the requests in flight are the request rate "
        "times the time each takes, so the rate this allows is at most this / the DIP's round "
        "trip: at batch size 1 (a request per message) 256 slots carry ~1,650 requests/s with "
        "a 150 ms round trip, ~2.5 CPUs of RSA-4096 signing (32 carried ~200). Memory is "
        "bounded by max_in_flight_messages, not by this. Raise it when "
        "dcpgw_egress_requests_waiting stays above 0 while the CPU is not busy",
    )
    outcome_produce_interval_ms: float = Field(
        default=50.0,
        ge=0,
        le=1000,
        description="result and dead-letter records: at most one produce request per partition "
        "per this interval unless a batch fills (the first after a quiet spell goes at once), so "
        "at low rates one request carries many results: less CPU for the gateway and the "
        "broker; offsets are committed up to this much later. 0: produce as soon as possible",
    )
    signing_threads: int = Field(
        default=0,
        ge=0,
        description="0 = one per CPU the process may use (the cgroup v2 CPU limit, else cores)",
    )
    duplicate_message_codes: tuple[str, ...] = Field(
        default=("MSG1002",),
        description="DIP message codes that refuse a message as a duplicate of the sender's own "
        "senderUniqueReference: an earlier copy was delivered (a re-send after a crash), so the "
        "message gets a result flagged `dcpgw-delivered-earlier`, not a dead letter. The DIP "
        "does not publish its code: the default is the simulator's; () turns this off",
    )
    max_attempts: int = Field(
        default=8,
        ge=1,
        description="tries per request before dead-letter, for answers that concern the request "
        "(500, 408, 425); 429, 502-504 and no answer hold the client instead "
        "(hold_budget_seconds)",
    )
    hold_budget_seconds: float = Field(
        default=21_600.0,
        gt=0,
        description="how long a client's messages may wait while the DIP holds the client off "
        "(429, 502-504, no answer, 401/403 with every key) before they are dead-lettered",
    )
    auth_probe_seconds: float = Field(
        default=60.0,
        gt=0,
        description="a client stopped by 401/403 (its credentials) is tried again this often, "
        "and at once when its API key files change",
    )
    ordering_scope: Literal["sender_key", "key"] = Field(
        default="sender_key",
        description="records reach the DIP in order per (sender DIP ID, Kafka key) and partition: "
        "different MPs are independent parties, so one held client never holds another's "
        "records; `key`: in order per Kafka key across senders, and then a held client's "
        "records wait where they are (no retry topic), holding other senders' records with "
        "their keys",
    )
    backoff_initial_ms: float = Field(default=200.0, gt=0)
    backoff_max_ms: float = Field(default=30_000.0, gt=0)
    schema_validation: bool = True
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    poison_crash_limit: int = Field(
        default=3,
        ge=1,
        description="a record in this many batches that failed with an internal error (each "
        "stops egress; the process restarts) is dead-lettered with reason class `internal` "
        "instead of being sent again, so one poison record cannot stop every client. Counted "
        "in the committed offset's metadata (docs/reliability.md)",
    )
    transport: Literal["aiohttp", "httpx"] = Field(
        default="aiohttp",
        description="library of the DIP connection: aiohttp (HTTP/1.1), or httpx, which "
        "dip.http2 needs",
    )

    @property
    def max_linger_seconds(self) -> float:
        """``max_linger_ms`` as set, else 100 ms or ``linger_ms`` if that is longer."""
        if self.max_linger_ms is None:
            return max(self.linger_ms, _MAX_LINGER_MS) / 1000
        return self.max_linger_ms / 1000

    @model_validator(mode="after")
    def _lingers(self) -> EgressSettings:
        if self.max_linger_ms is not None and self.max_linger_ms < self.linger_ms:
            raise ValueError(
                f"max_linger_ms ({self.max_linger_ms:g}) is below linger_ms "
                f"({self.linger_ms:g}): set max_linger_ms to at least linger_ms (equal turns "
                "the longer linger off)"
            )
        return self


class IngressSettings(ConfigModel):
    """The webhook the DIP pushes publications to."""

    enabled: bool = True
    listen_host: str = "0.0.0.0"
    listen_port: int = Field(default=8443, ge=0, le=65535, description="0: any free port")
    public_base_url: str = Field(
        default="https://localhost:8443",
        description="URL the DIP calls (the signature covers it), not the in-cluster address",
    )
    publication_path: str = "/dip/publications"
    status_path: str = "/dip/status"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = Field(default=None, description="ask the DIP for a client cert")
    max_body_bytes: int = Field(default=10_000_000, ge=1_024)
    dedup_window: int = Field(default=100_000, ge=0, description="transaction IDs remembered")
    produce_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="longest wait for Kafka acks before answering the DIP 503 (it retries)",
    )
    max_message_count: int | None = Field(
        default=None, ge=1, description="maxMessageCount registered with each webhook"
    )
    max_concurrent_pushes: int = Field(
        default=256,
        ge=1,
        description="pushes handled at once; more are answered 503 with Retry-After (the DIP "
        "retries), so a burst cannot pile up unbounded bodies and Kafka waits",
    )
    busy_retry_after_seconds: int = Field(
        default=1, ge=0, description="Retry-After of the 503 answered over max_concurrent_pushes"
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="longest time to receive a push's body; slower ones are answered 408, so a "
        "slow sender (slowloris) cannot hold a max_concurrent_pushes slot for ever",
    )

    @field_validator("tls_cert", "tls_key", "tls_client_ca")
    @classmethod
    def _files(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return must_exist(v, info)

    @field_validator("public_base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not HTTP_URL_PATTERN.match(v):
            raise ValueError("must be an absolute URL as the DIP calls it, e.g. https://gw.example")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _tls(self) -> IngressSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        return self


class OpsSettings(ConfigModel):
    health_port: int = Field(
        default=8080, ge=0, le=65535, description="/metrics, /livez, /readyz; 0 disables"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    reload_interval_seconds: float = Field(default=10.0, gt=0)
    event_loop: EventLoopChoice = Field(
        default="auto",
        description="auto: uvloop when installed (less event-loop CPU per request), else asyncio",
    )


class AuditSettings(ConfigModel):
    """The submission ledger (opt-in): one record per DIP request and per verified push on an
    audit topic (hashes, certificates, statuses, transaction IDs; never a body or a secret)."""

    enabled: bool = Field(
        default=False,
        description="write the ledger; egress commits a record only once its ledger records "
        "are acknowledged",
    )
    topic: str = Field(default="dip.audit", description="the ledger's topic (kept long)")

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        return topic_name(v)


class TrackingSettings(ConfigModel):
    """Response tracking (opt-in): accepted requests awaiting their response publication, per
    client and interface, matched by correlation ID (results against inbound publications)."""

    enabled: bool = Field(
        default=False,
        description="read every client's results and inbound topics and export the "
        "dcpgw_tracking_ gauges (every client then needs topics.inbound)",
    )
    horizon_hours: float = Field(
        default=48.0,
        gt=0,
        description="how far back it reads at start, and how long a request is awaited "
        "before it is counted as expired",
    )
    export_interval_seconds: float = Field(default=15.0, gt=0)
