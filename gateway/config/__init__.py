"""Typed configuration: one YAML file plus ``DCP_GATEWAY__...`` environment overrides.

Secrets (API keys, PFX files, passwords) are *paths* to files, as Kubernetes mounts them:
never inlined, never logged. Relative paths resolve against the config file's folder, so a
dev PKI folder can be moved as a whole. Every mistake stops start-up with a message naming the
field and the fix (:class:`ConfigError`).

Environment overrides use ``__`` between path segments and YAML for the value, e.g.
``DCP_GATEWAY__KAFKA__BOOTSTRAP_SERVERS=kafka:9092`` or ``DCP_GATEWAY__EGRESS__LINGER_MS=5``.
"""

from __future__ import annotations

from gateway.config._clients import ClientConfig, ClientTopics, DipIdConfig
from gateway.config._errors import ConfigError, FieldProblems
from gateway.config._format import format_validation_error
from gateway.config._gateway import GatewayConfig
from gateway.config._load import ENV_PREFIX, apply_env_overrides, load_config, parse_config
from gateway.config._sections import (
    AuditSettings,
    DcpSettings,
    DipSettings,
    EgressSettings,
    EventLoopChoice,
    IngressSettings,
    KafkaSettings,
    OpsSettings,
    TrackingSettings,
    TrustSettings,
)
from gateway.dip.vocabulary import Environment, RoleCode

__all__ = [
    "ENV_PREFIX",
    "AuditSettings",
    "ClientConfig",
    "ClientTopics",
    "ConfigError",
    "DcpSettings",
    "DipIdConfig",
    "DipSettings",
    "EgressSettings",
    "Environment",
    "EventLoopChoice",
    "FieldProblems",
    "GatewayConfig",
    "IngressSettings",
    "KafkaSettings",
    "OpsSettings",
    "RoleCode",
    "TrackingSettings",
    "TrustSettings",
    "apply_env_overrides",
    "format_validation_error",
    "load_config",
    "parse_config",
]
