"""Typed configuration: one YAML file plus ``DCP_GATEWAY__...`` environment overrides.

Secrets (API keys, PFX files, passwords) are *paths* to files, as Kubernetes mounts them:
never inlined, never logged. Relative paths resolve against the config file's folder, so a
dev PKI folder can be moved as a whole. Every mistake stops start-up with a message naming the
field and the fix (:class:`ConfigError`).

Environment overrides use ``__`` between path segments and YAML for the value, e.g.
``DCP_GATEWAY__KAFKA__BOOTSTRAP_SERVERS=kafka:9092`` or ``DCP_GATEWAY__EGRESS__LINGER_MS=5``.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.dip.webhook_urls import webhook_path
from gateway.signing.fingerprint import normalise_fingerprint

ENV_PREFIX = "DCP_GATEWAY__"

DIP_ID_PATTERN = re.compile(r"^[0-9]{10}$")
MPID_PATTERN = re.compile(r"^[A-Z0-9]{4}$")
INTERFACE_PATTERN = re.compile(r"^(IF|REP)-[0-9]{3}[A-B]?$")
TOPIC_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,249}$")

#: ``ops.event_loop``; :mod:`gateway.ops.eventloop` builds the loop.
EventLoopChoice = Literal["auto", "uvloop", "asyncio"]


class Environment(StrEnum):
    PRD = "PRD"
    SITB = "SITB"
    SIT = "SIT"
    UIT = "UIT"
    DEV = "DEV"


class RoleCode(StrEnum):
    SUP = "SUP"
    SDS = "SDS"
    MSA = "MSA"
    ADS = "ADS"
    MSS = "MSS"
    REGS = "REGS"
    LDSO = "LDSO"
    UMSO = "UMSO"
    UMSDS = "UMSDS"
    SMSO = "SMSO"
    MDR = "MDR"
    MAP = "MAP"
    MDS = "MDS"
    LSS = "LSS"
    ISD = "ISD"
    VAS = "VAS"
    EES = "EES"


class ConfigError(Exception):
    """Start-up must stop: the message names each bad field and how to fix it."""


class FieldProblems(ValueError):
    """What a model validator found wrong, field by field: ``(path, message)`` pairs, the path
    relative to the model that raised it (``""`` for the model itself).

    :func:`format_validation_error` lists each under its full path (``kafka.sasl_password_file``),
    like the errors of single fields, rather than under the model that noticed them.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in self.problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _base_dir(info: ValidationInfo) -> Path:
    ctx = info.context or {}
    base = ctx.get("base_dir")
    return Path(base) if base is not None else Path.cwd()


def _resolve(value: Path, info: ValidationInfo) -> Path:
    path = value.expanduser()
    if not path.is_absolute():
        path = _base_dir(info) / path
    return path


def _must_exist(value: Path | None, info: ValidationInfo) -> Path | None:
    if value is None:
        return None
    path = _resolve(value, info)
    ctx = info.context or {}
    if ctx.get("check_files", True) and not path.is_file():
        raise ValueError(f"file {path} does not exist: create it or correct the path")
    return path


class DipSettings(_Model):
    """Where the DIP is and how the gateway's one shared connection to it behaves."""

    base_url: str = Field(description="DIP base URL, e.g. https://api.uit.dip.example")
    ca_bundle: Path | None = Field(
        default=None, description="PEM bundle to verify the DIP's server certificate"
    )
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    max_connections: int = Field(default=16, ge=1, le=1024)
    http2: bool = False

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must be an absolute http(s) URL, e.g. https://dip.example")
        return v.rstrip("/")

    @field_validator("ca_bundle")
    @classmethod
    def _files(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return _must_exist(v, info)


class DcpSettings(_Model):
    """The DCP's own identity: its DCP ID and the mTLS certificate of the shared connection."""

    dcp_id: str = Field(description="10-digit DCP ID")
    mtls_pfx: Path | None = Field(default=None, description="PFX with the DCP mTLS key+cert")
    mtls_key: Path | None = None
    mtls_cert: Path | None = None
    mtls_password_file: Path | None = None

    @field_validator("dcp_id", mode="before")
    @classmethod
    def _dcp_id(cls, v: Any) -> str:
        return _dip_id(v)

    @field_validator("mtls_pfx", "mtls_key", "mtls_cert", "mtls_password_file")
    @classmethod
    def _files(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return _must_exist(v, info)

    @model_validator(mode="after")
    def _one_source(self) -> DcpSettings:
        pem = self.mtls_key is not None or self.mtls_cert is not None
        if self.mtls_pfx is not None and pem:
            raise ValueError("set either mtls_pfx or mtls_key + mtls_cert, not both")
        if pem and (self.mtls_key is None or self.mtls_cert is None):
            raise ValueError("mtls_key and mtls_cert go together: set both")
        return self


class TrustSettings(_Model):
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
        return _must_exist(v, info)

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


class KafkaSettings(_Model):
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
        description="idempotent producer; turn off for brokers without InitProducerId (Tansu)",
    )
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = Field(
        default="zstd",
        description="codec of the records the gateway produces (results, dead letters, inbound "
        "messages). zstd (Kafka 2.1+, librdkafka 1.0+ consumers) costs ~0.25 us per 370-byte "
        "result at a 70:1 ratio; aiokafka's gzip compresses at level 9: ~5.4 us at 37:1, on "
        "the event loop",
    )
    consumer_group: str = "dcp-gateway-egress"
    check_crcs: bool = Field(
        default=True,
        description="verify the CRC-32C of every fetched record batch (Apache Kafka's default; "
        "librdkafka's is off, since the broker checked it on produce and TCP or TLS protect "
        "it on the way). Costs egress's event loop ~0.4 us per 700-byte record",
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
    create_topics: bool = Field(
        default=False, description="create missing topics at start (dev and tests)"
    )

    @field_validator("ssl_ca_file", "ssl_cert_file", "ssl_key_file", "sasl_password_file")
    @classmethod
    def _files(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return _must_exist(v, info)

    @field_validator("outbound_topics")
    @classmethod
    def _topics(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for t in v:
            _topic(t)
        return v

    @field_validator("quarantine_topic", "dead_letter_topic", "status_outbound_topic")
    @classmethod
    def _topic_field(cls, v: str | None) -> str | None:
        return None if v is None else _topic(v)

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


class EgressSettings(_Model):
    """Kafka -> DIP: batching, concurrency, retries."""

    enabled: bool = True
    max_batch_messages: int = Field(default=100, ge=1, le=10_000)
    max_batch_bytes: int = Field(default=1_000_000, ge=1_024)
    linger_ms: float = Field(default=20.0, ge=0)
    max_in_flight_messages: int = Field(
        default=20_000,
        ge=1,
        description="records consumed but not final; at the limit fetching holds (buffers kept), "
        "and after a long hold the partitions are paused. Also sizes the young GC generation "
        "while egress runs (5 per record, 20,000 to 500,000)",
    )
    max_concurrent_requests: int = Field(default=32, ge=1)
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
    max_attempts: int = Field(default=8, ge=1, description="tries per request before dead-letter")
    backoff_initial_ms: float = Field(default=200.0, gt=0)
    backoff_max_ms: float = Field(default=30_000.0, gt=0)
    schema_validation: bool = True
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    transport: Literal["aiohttp", "httpx"] = Field(
        default="aiohttp", description="httpx over aiohttp (fast) or httpx's own transport"
    )


class IngressSettings(_Model):
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

    @field_validator("tls_cert", "tls_key", "tls_client_ca")
    @classmethod
    def _files(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return _must_exist(v, info)

    @field_validator("public_base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must be an absolute URL as the DIP calls it, e.g. https://gw.example")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _tls(self) -> IngressSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        return self


class OpsSettings(_Model):
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


class DipIdConfig(_Model):
    """One DIP ID of a client MP."""

    dip_id: str
    role: RoleCode
    mpid: str
    effective_from: date | None = None
    effective_to: date | None = None
    api_key_file: Path
    secondary_api_key_file: Path | None = None
    publications: tuple[str, ...] = Field(
        default=(), description="interfaces (IF-xxx) whose publications this DIP ID receives"
    )

    @field_validator("dip_id", mode="before")
    @classmethod
    def _id(cls, v: Any) -> str:
        return _dip_id(v)

    @field_validator("role", mode="before")
    @classmethod
    def _role(cls, v: Any) -> Any:
        if isinstance(v, str) and v.upper() not in RoleCode.__members__:
            raise ValueError(
                f"unknown role code {v!r}: use one of {', '.join(RoleCode.__members__)}"
            )
        return v.upper() if isinstance(v, str) else v

    @field_validator("mpid")
    @classmethod
    def _mpid(cls, v: str) -> str:
        if not MPID_PATTERN.fullmatch(v):
            raise ValueError(f"MPID {v!r} must be 4 upper-case letters or digits, e.g. ABCD")
        return v

    @field_validator("api_key_file", "secondary_api_key_file")
    @classmethod
    def _files(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return _must_exist(v, info)

    @field_validator("publications")
    @classmethod
    def _interfaces(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for item in v:
            if not INTERFACE_PATTERN.fullmatch(item):
                raise ValueError(f"{item!r} is not an interface ID like IF-043 or REP-002")
        return v

    @model_validator(mode="after")
    def _dates(self) -> DipIdConfig:
        if self.effective_from and self.effective_to and self.effective_to < self.effective_from:
            raise ValueError("effective_to is before effective_from: swap or correct the dates")
        return self

    def effective_on(self, day: date) -> bool:
        if self.effective_from is not None and day < self.effective_from:
            return False
        return not (self.effective_to is not None and day > self.effective_to)


class ClientTopics(_Model):
    inbound: str
    results: str
    dead_letter: str
    status: str | None = None

    @field_validator("inbound", "results", "dead_letter", "status")
    @classmethod
    def _topic_field(cls, v: str | None) -> str | None:
        return None if v is None else _topic(v)


class ClientConfig(_Model):
    """One client MP of the DCP."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    signing_pfx: Path | None = None
    signing_key: Path | None = None
    signing_cert: Path | None = None
    signing_password_file: Path | None = None
    set_dcp_id: bool = Field(
        default=False, description="fill S1.DIPConnectionProviderID with the DCP ID"
    )
    schema_validation: bool | None = Field(default=None, description="None = egress default")
    schema_validation_exempt: tuple[str, ...] = Field(
        default=(), description="interfaces not validated before sending"
    )
    topics: ClientTopics
    dip_ids: tuple[DipIdConfig, ...] = Field(min_length=1)

    @field_validator("signing_pfx", "signing_key", "signing_cert", "signing_password_file")
    @classmethod
    def _files(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return _must_exist(v, info)

    @model_validator(mode="after")
    def _signing(self) -> ClientConfig:
        pem = self.signing_key is not None or self.signing_cert is not None
        if self.signing_pfx is None and not pem:
            raise ValueError("set signing_pfx (or signing_key + signing_cert) for this client")
        if self.signing_pfx is not None and pem:
            raise ValueError("set either signing_pfx or signing_key + signing_cert, not both")
        if pem and (self.signing_key is None or self.signing_cert is None):
            raise ValueError("signing_key and signing_cert go together: set both")
        return self

    def validates(self, interface_id: str, default: bool) -> bool:
        enabled = default if self.schema_validation is None else self.schema_validation
        return enabled and interface_id not in self.schema_validation_exempt


class GatewayConfig(_Model):
    """The whole gateway configuration."""

    environment: Environment
    dip: DipSettings
    dcp: DcpSettings
    trust: TrustSettings = TrustSettings(pinned_sha256=())
    kafka: KafkaSettings = KafkaSettings()
    egress: EgressSettings = EgressSettings()
    ingress: IngressSettings = IngressSettings()
    ops: OpsSettings = OpsSettings()
    clients: tuple[ClientConfig, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _cross_checks(self) -> GatewayConfig:
        seen: dict[str, str] = {}
        names: set[str] = set()
        for client in self.clients:
            if client.name in names:
                raise ValueError(f"client name {client.name!r} is used twice: names must be unique")
            names.add(client.name)
            for dip in client.dip_ids:
                if dip.dip_id in seen:
                    raise ValueError(
                        f"DIP ID {dip.dip_id} is configured for both {seen[dip.dip_id]!r} and "
                        f"{client.name!r}: a DIP ID belongs to exactly one client"
                    )
                seen[dip.dip_id] = client.name
        problems: list[tuple[str, str]] = []
        if self.ingress.enabled and self.trust.ca_bundle is None and not self.trust.pinned_sha256:
            problems.append(
                (
                    "trust",
                    "ingress needs the DIP trust anchor: set trust.ca_bundle or "
                    "trust.pinned_sha256 (or disable ingress)",
                )
            )
        if (
            self.ingress.enabled
            and self.trust.ca_bundle is not None
            and not self.trust.signer_names
        ):
            problems.append(
                (
                    "trust.signer_names",
                    "required with trust.ca_bundle while ingress is enabled: the DIP CA also "
                    "issues every MP's signing certificate, so list the CN or DNS name of the "
                    "DIP's publication signing certificate (dcp-gateway pki inspect shows it), "
                    "or pin that certificate with trust.pinned_sha256 instead of trust.ca_bundle",
                )
            )
        if not self.egress.enabled and not self.ingress.enabled:
            problems.append(
                (
                    "egress.enabled",
                    "egress and ingress are both disabled, so the gateway would do nothing: "
                    "enable at least one of egress.enabled and ingress.enabled",
                )
            )
        if self.environment is Environment.PRD and not self.dip.base_url.startswith("https://"):
            problems.append(
                (
                    "dip.base_url",
                    f"environment PRD needs an https:// DIP URL, not {self.dip.base_url!r}: "
                    "use the DIP's https address",
                )
            )
        grace_ms = self.egress.shutdown_grace_seconds * 1000
        if self.egress.enabled and grace_ms >= self.kafka.rebalance_timeout_ms:
            problems.append(
                (
                    "egress.shutdown_grace_seconds",
                    f"{self.egress.shutdown_grace_seconds:g} s is not below "
                    f"kafka.rebalance_timeout_ms ({self.kafka.rebalance_timeout_ms} ms): on a "
                    "rebalance egress drains in-flight work for up to this long before it "
                    "rejoins, and a member that has not rejoined when the rebalance times out "
                    "loses its partitions while its retries may still reach the DIP after the "
                    "new owner's later messages for the same key. Lower "
                    "egress.shutdown_grace_seconds or raise kafka.rebalance_timeout_ms",
                )
            )
        problems += self._http2_problems()
        problems += self._webhook_path_problems()
        problems += self._topic_problems()
        if problems:
            raise FieldProblems(problems)
        return self

    def _http2_problems(self) -> list[tuple[str, str]]:
        """HTTP/2 is httpx's alone, and httpx needs the ``h2`` package for it."""
        if not self.dip.http2:
            return []
        if self.egress.transport != "httpx":
            return [
                (
                    "dip.http2",
                    f"HTTP/2 needs egress.transport 'httpx' (the {self.egress.transport!r} "
                    "transport speaks HTTP/1.1): set egress.transport to 'httpx' or dip.http2 "
                    "to false",
                )
            ]
        if importlib.util.find_spec("h2") is None:
            return [
                (
                    "dip.http2",
                    "HTTP/2 needs the h2 package, which is not installed: "
                    "pip install 'httpx[http2]', or set dip.http2 to false",
                )
            ]
        return []

    def _webhook_path_problems(self) -> list[tuple[str, str]]:
        if not self.ingress.enabled:
            return []
        # Compared as routing does, segment by segment: /dip/status -> /dip/status/
        publication = webhook_path(self.ingress.publication_path) + "/"
        status = webhook_path(self.ingress.status_path) + "/"
        if publication.startswith(status) or status.startswith(publication):
            return [
                (
                    "ingress.status_path",
                    f"{self.ingress.status_path!r} overlaps ingress.publication_path "
                    f"{self.ingress.publication_path!r} (one is a prefix of the other), so a "
                    "webhook call could match both: use separate paths, e.g. /dip/publications "
                    "and /dip/status",
                )
            ]
        return []

    def _topic_problems(self) -> list[tuple[str, str]]:
        """Each client's topics are its own, and none is a topic the gateway shares."""
        kafka = self.kafka
        problems: list[tuple[str, str]] = []
        shared: dict[str, str] = {}
        for i, topic in enumerate(kafka.outbound_topics):
            shared.setdefault(topic, f"kafka.outbound_topics[{i}]")
        if kafka.status_outbound_topic is not None:
            # Egress may read statuses from an outbound topic too: it subscribes once.
            shared.setdefault(kafka.status_outbound_topic, "kafka.status_outbound_topic")
        for name in ("quarantine_topic", "dead_letter_topic"):
            topic = getattr(kafka, name)
            if topic in shared:
                problems.append(
                    (
                        f"kafka.{name}",
                        f"topic {topic!r} is also {shared[topic]}: the gateway would read back "
                        f"what it writes there; give kafka.{name} its own topic",
                    )
                )
            shared.setdefault(topic, f"kafka.{name}")
        owners: dict[str, str] = {}
        for i, client in enumerate(self.clients):
            topics = client.topics
            for name in ("inbound", "results", "dead_letter", "status"):
                topic = getattr(topics, name)
                if topic is None:
                    continue
                path = f"clients[{i}].topics.{name}"
                if topic in shared:
                    problems.append(
                        (
                            path,
                            f"topic {topic!r} is the shared {shared[topic]}: give client "
                            f"{client.name!r} a topic of its own",
                        )
                    )
                    continue
                owner = owners.setdefault(topic, client.name)
                if owner != client.name:
                    problems.append(
                        (
                            path,
                            f"topic {topic!r} is also a topic of client {owner!r}: each "
                            f"client needs its own topics (one client must never read another's "
                            "messages)",
                        )
                    )
        return problems

    def client_for(self, dip_id: str) -> ClientConfig | None:
        for client in self.clients:
            if any(d.dip_id == dip_id for d in client.dip_ids):
                return client
        return None


def _dip_id(v: Any) -> str:
    # Runs before pydantic's str check, so an unquoted YAML number gets this message (the fix)
    # rather than "Input should be a valid string".
    if not isinstance(v, str) or not DIP_ID_PATTERN.fullmatch(v):
        raise ValueError(
            f'DIP ID {v!r} must be exactly 10 digits, quoted in YAML (e.g. "1494431682")'
        )
    return v


def _topic(v: str) -> str:
    if not TOPIC_PATTERN.fullmatch(v):
        raise ValueError(f"topic {v!r} may use only letters, digits, '.', '_' and '-'")
    return v


# -- loading ----------------------------------------------------------------------------


def apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Overlay ``DCP_GATEWAY__A__B=value`` onto ``data['a']['b']`` (value parsed as YAML)."""
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        node: dict[str, Any] = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = yaml.safe_load(raw) if raw != "" else None
    return data


def format_validation_error(exc: ValidationError, source: str) -> str:
    errors = exc.errors()
    item_locs = [tuple(e.get("loc", ())) for e in errors]

    def follow_on(err: Any) -> bool:
        # pydantic also reports "at least 1 item" for a list whose only items failed: noise
        # that points at the wrong field, so it is dropped when an item error is listed.
        loc = tuple(err.get("loc", ()))
        return err.get("type") == "too_short" and any(
            len(other) > len(loc) and other[: len(loc)] == loc for other in item_locs
        )

    problems: list[tuple[str, str]] = []
    for err in errors:
        if follow_on(err):
            continue
        loc = _location(err.get("loc", ()))
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, FieldProblems):
            problems += [(_join(loc, path), msg) for path, msg in cause.problems]
            continue
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        if err.get("type") == "missing":
            msg = "required field is missing: add it"
        elif err.get("type") == "extra_forbidden":
            msg = "unknown field: remove it or check its spelling"
        problems.append((loc, msg))
    lines = [f"{source}: {len(problems)} problem(s) in the configuration:"]
    lines += [f"  - {loc or '(top level)'}: {msg}" for loc, msg in problems]
    return "\n".join(lines)


def _join(base: str, path: str) -> str:
    if not base or not path:
        return base or path
    return base + path if path.startswith("[") else f"{base}.{path}"


def _location(loc: tuple[int | str, ...] | list[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_config(
    data: Mapping[str, Any],
    *,
    base_dir: Path,
    source: str = "config",
    check_files: bool = True,
) -> GatewayConfig:
    """Validate already-loaded data; raises :class:`ConfigError` with every problem listed."""
    try:
        return GatewayConfig.model_validate(
            data, context={"base_dir": base_dir, "check_files": check_files}
        )
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_config(
    path: Path, environ: Mapping[str, str] | None = None, *, check_files: bool = True
) -> GatewayConfig:
    """Read YAML, apply environment overrides, validate. Raises :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (pass --config PATH)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    data = apply_env_overrides(loaded, os.environ if environ is None else environ)
    return parse_config(
        data, base_dir=path.resolve().parent, source=str(path), check_files=check_files
    )
