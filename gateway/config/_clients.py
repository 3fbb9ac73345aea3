"""A client MP of the DCP: its DIP IDs, signing credentials and Kafka topics."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from gateway.config._fields import ConfigModel, dip_id, must_exist, topic_name
from gateway.dip.vocabulary import INTERFACE_PATTERN, MPID_PATTERN, RoleCode

_CLIENT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class DipIdConfig(ConfigModel):
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
        return dip_id(v)

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
        return must_exist(v, info)

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


class ClientTopics(ConfigModel):
    inbound: str | None = Field(
        default=None, description="the client's publications (required while ingress is on)"
    )
    results: str
    dead_letter: str
    status: str | None = None
    retry: str | None = Field(
        default=None,
        description="where the client's records wait while the DIP holds it off (429, 503, no "
        "answer, 401/403), so they never block other clients' partitions; read by the egress "
        "consumer group, so one per group: default `<kafka.consumer_group>.<name>.retry`",
    )
    parked: str | None = Field(
        default=None,
        description="with park_keys: where the client's records wait whose key has a "
        "dead-lettered record, until `dcp-gateway dlq release` re-drives them; default "
        "`<kafka.consumer_group>.<name>.parked`",
    )

    @field_validator("inbound", "results", "dead_letter", "status", "retry", "parked")
    @classmethod
    def _topic_field(cls, v: str | None) -> str | None:
        return None if v is None else topic_name(v)


class ClientConfig(ConfigModel):
    """One client MP of the DCP."""

    name: str
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
    weight: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="the client's share of egress.max_concurrent_requests and of the in-flight "
        "window when clients compete (relative to the other clients' weights)",
    )
    park_keys: bool = Field(
        default=False,
        description="once a record is dead-lettered, later records with the same Kafka key "
        "(e.g. the MPAN) go to topics.parked instead of the DIP until `dcp-gateway dlq "
        'release` re-drives them (docs/operations.md, "Key parking")',
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        # Names label metrics and logs: one form everywhere.
        if not _CLIENT_NAME.fullmatch(v):
            raise ValueError(
                f"client name {v!r} must be lower-case letters, digits and '-' (starting with a "
                "letter or digit, at most 63 characters), e.g. client-1"
            )
        return v

    @field_validator("signing_pfx", "signing_key", "signing_cert", "signing_password_file")
    @classmethod
    def _files(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return must_exist(v, info)

    @model_validator(mode="after")
    def _signing(self) -> ClientConfig:
        # Whether one is needed at all depends on egress: see _checks.signing_problems.
        pem = self.signing_key is not None or self.signing_cert is not None
        if self.signing_pfx is not None and pem:
            raise ValueError("set either signing_pfx or signing_key + signing_cert, not both")
        if pem and (self.signing_key is None or self.signing_cert is None):
            raise ValueError("signing_key and signing_cert go together: set both")
        return self

    @property
    def signs(self) -> bool:
        """Whether a signing credential is configured (egress needs one for every client)."""
        return self.signing_pfx is not None or self.signing_key is not None

    def validates(self, interface_id: str, default: bool) -> bool:
        enabled = default if self.schema_validation is None else self.schema_validation
        return enabled and interface_id not in self.schema_validation_exempt
