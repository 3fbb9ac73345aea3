"""The whole configuration: every section, and the checks that span sections."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, model_validator

from gateway.config import _checks
from gateway.config._clients import ClientConfig
from gateway.config._errors import FieldProblems
from gateway.config._fields import ConfigModel
from gateway.config._sections import (
    AuditSettings,
    DcpSettings,
    DipSettings,
    EgressSettings,
    IngressSettings,
    KafkaSettings,
    OpsSettings,
    TrackingSettings,
    TrustSettings,
)
from gateway.dip.vocabulary import Environment


class GatewayConfig(ConfigModel):
    """The whole gateway configuration."""

    environment: Environment
    dip: DipSettings
    dcp: DcpSettings
    trust: TrustSettings = TrustSettings(pinned_sha256=())
    kafka: KafkaSettings = KafkaSettings()
    egress: EgressSettings = EgressSettings()
    ingress: IngressSettings = IngressSettings()
    ops: OpsSettings = OpsSettings()
    audit: AuditSettings = AuditSettings()
    tracking: TrackingSettings = TrackingSettings()
    clients: tuple[ClientConfig, ...] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _default_retry_topics(cls, data: Any) -> Any:
        """``clients[].topics.retry`` defaults to ``<consumer group>.<client>.retry``: a retry
        backlog is measured against the group's committed offsets, so two deployments (two
        groups) on one cluster must not share one."""
        if not isinstance(data, dict) or not isinstance(data.get("clients"), list | tuple):
            return data
        kafka = data.get("kafka")
        group = KafkaSettings.model_fields["consumer_group"].default
        if isinstance(kafka, dict):
            group = kafka.get("consumer_group", group)
        elif isinstance(kafka, KafkaSettings):
            group = kafka.consumer_group
        prefix = _UNSAFE_TOPIC_CHARS.sub("_", str(group))
        clients = [_with_retry_topic(client, prefix) for client in data["clients"]]
        # The parked keys are the group's state too (see gateway.egress.parking).
        if isinstance(kafka, dict) and kafka.get("parked_keys_topic") is None:
            kafka = {**kafka, "parked_keys_topic": f"{prefix}.parked-keys"}
        elif isinstance(kafka, KafkaSettings) and kafka.parked_keys_topic is None:
            kafka = kafka.model_copy(update={"parked_keys_topic": f"{prefix}.parked-keys"})
        elif kafka is None:
            kafka = {"parked_keys_topic": f"{prefix}.parked-keys"}
        return {**data, "kafka": kafka, "clients": clients}

    @model_validator(mode="after")
    def _cross_checks(self) -> GatewayConfig:
        _checks.check_unique_clients(self.clients)
        problems = [
            *_checks.trust_problems(self.ingress, self.trust),
            *_checks.service_problems(self.egress, self.ingress),
            *_checks.signing_problems(self.egress, self.clients),
            *_checks.inbound_problems(self.ingress, self.clients),
            *_checks.environment_problems(self.environment, self.dip),
            *_checks.grace_problems(self.egress, self.kafka),
            *_checks.http2_problems(self.dip, self.egress),
            *_checks.webhook_path_problems(self.ingress),
            *_checks.topic_problems(self.kafka, self.clients),
            *_checks.audit_problems(self.audit, self.kafka, self.clients),
            *_checks.tracking_problems(self.tracking, self.clients),
        ]
        if problems:
            raise FieldProblems(problems)
        return self

    def client_for(self, dip_id: str) -> ClientConfig | None:
        for client in self.clients:
            if any(d.dip_id == dip_id for d in client.dip_ids):
                return client
        return None


_UNSAFE_TOPIC_CHARS = re.compile(r"[^a-zA-Z0-9._-]")


def _with_retry_topic(client: Any, prefix: str) -> Any:
    """The client's retry and parked topics, defaulted to ``<prefix>.<name>.<kind>``."""
    if isinstance(client, ClientConfig):
        update = {
            kind: f"{prefix}.{client.name}.{kind}"
            for kind in ("retry", "parked")
            if getattr(client.topics, kind) is None
        }
        if not update:
            return client
        return client.model_copy(update={"topics": client.topics.model_copy(update=update)})
    if isinstance(client, dict) and isinstance(client.get("topics"), dict):
        topics = client["topics"]
        if isinstance(client.get("name"), str):
            defaults = {
                kind: f"{prefix}.{client['name']}.{kind}"
                for kind in ("retry", "parked")
                if topics.get(kind) is None
            }
            return {**client, "topics": {**topics, **defaults}}
    return client
