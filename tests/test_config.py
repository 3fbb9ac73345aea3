"""Configuration errors name the field path and the fix; environment overrides apply.

The base configuration is the one ``create_dev_pki`` writes, so every file it names exists
and each test breaks exactly one thing.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import ConfigError, GatewayConfig, load_config, parse_config
from gateway.kafka.topics import gateway_topic_uses
from gateway.keys import build_keystore
from tests import pki_fixtures

dev_pki_dir = pki_fixtures.dev_pki_dir  # the session fixture, used by name below


def _base(dev_pki_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((dev_pki_dir / "gateway.yaml").read_text())
    return copy.deepcopy(data)


def _error(data: dict[str, Any], base_dir: Path) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=base_dir, source="test.yaml")
    return str(info.value)


def test_dev_config_loads(dev_pki_dir: Path) -> None:
    config = load_config(dev_pki_dir / "gateway.yaml", environ={})
    assert isinstance(config, GatewayConfig)
    assert [c.name for c in config.clients] == ["client-1", "client-2"]
    pfx = config.clients[0].signing_pfx
    assert pfx is not None
    assert pfx.is_absolute()
    assert pfx.is_file()


@pytest.mark.parametrize("bad", ["123456789", "12345678901", "14000100O1", 1400010001])
def test_wrong_dip_id(dev_pki_dir: Path, bad: object) -> None:
    data = _base(dev_pki_dir)
    data["clients"][0]["dip_ids"][0]["dip_id"] = bad
    message = _error(data, dev_pki_dir)
    assert "clients[0].dip_ids[0].dip_id" in message
    assert "10 digits" in message


def test_unknown_role_code(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["clients"][1]["dip_ids"][0]["role"] = "BOSS"
    message = _error(data, dev_pki_dir)
    assert "clients[1].dip_ids[0].role" in message
    assert "unknown role code 'BOSS'" in message


def test_role_code_case_insensitive(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["clients"][0]["dip_ids"][0]["role"] = "ldso"
    config = parse_config(data, base_dir=dev_pki_dir)
    assert config.clients[0].dip_ids[0].role == "LDSO"


def test_missing_file(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["clients"][0]["dip_ids"][0]["api_key_file"] = "clients/client-1/nope.api-key"
    message = _error(data, dev_pki_dir)
    assert "clients[0].dip_ids[0].api_key_file" in message
    assert "nope.api-key does not exist" in message


def test_missing_signing_pfx(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["clients"][1]["signing_pfx"] = "clients/client-2/missing.pfx"
    assert "clients[1].signing_pfx" in _error(data, dev_pki_dir)


def test_duplicate_dip_id_across_clients(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["clients"][1]["dip_ids"][0]["dip_id"] = data["clients"][0]["dip_ids"][0]["dip_id"]
    message = _error(data, dev_pki_dir)
    assert "DIP ID 1400010001 is configured for both 'client-1' and 'client-2'" in message


def test_duplicate_client_name(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["clients"][1]["name"] = "client-1"
    assert "client name 'client-1' is used twice" in _error(data, dev_pki_dir)


@pytest.mark.parametrize("bad", ["AB", "abcd", "ABCDE", "AB-D"])
def test_bad_mpid(dev_pki_dir: Path, bad: str) -> None:
    data = _base(dev_pki_dir)
    data["clients"][0]["dip_ids"][0]["mpid"] = bad
    message = _error(data, dev_pki_dir)
    assert "clients[0].dip_ids[0].mpid" in message
    assert "4 upper-case letters or digits" in message


def test_effective_to_before_from(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    dip = data["clients"][0]["dip_ids"][0]
    dip["effective_from"] = "2026-06-01"
    dip["effective_to"] = "2026-05-31"
    message = _error(data, dev_pki_dir)
    assert "clients[0].dip_ids[0]" in message
    assert "effective_to is before effective_from" in message


def test_unknown_field(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["kafka"]["bootstrap_server"] = "typo:9092"
    message = _error(data, dev_pki_dir)
    assert "kafka.bootstrap_server: unknown field" in message


def test_missing_required_field(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    del data["dcp"]["dcp_id"]
    assert "dcp.dcp_id: required field is missing" in _error(data, dev_pki_dir)


def test_missing_trust_anchor_with_ingress_enabled(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    del data["trust"]["ca_bundle"]
    message = _error(data, dev_pki_dir)
    assert "trust.ca_bundle or trust.pinned_sha256" in message
    data["ingress"]["enabled"] = False
    assert parse_config(data, base_dir=dev_pki_dir).trust.ca_bundle is None


def test_signer_names_are_required_with_a_ca_bundle_only_while_ingress_verifies(
    dev_pki_dir: Path,
) -> None:
    data = _base(dev_pki_dir)
    assert data["trust"]["ca_bundle"]
    data["trust"]["signer_names"] = []
    message = _error(data, dev_pki_dir)
    assert "trust.signer_names: required with trust.ca_bundle while ingress is enabled" in message
    assert "pinned_sha256" in message  # the alternative is named
    data["ingress"]["enabled"] = False  # nothing verifies publications: nothing to refuse
    config = parse_config(data, base_dir=dev_pki_dir)
    assert config.trust.ca_bundle is not None and config.trust.signer_names == ()


def test_every_problem_is_listed(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["clients"][0]["dip_ids"][0]["mpid"] = "x"
    data["clients"][1]["dip_ids"][0]["role"] = "NOPE"
    message = _error(data, dev_pki_dir)
    assert "2 problem(s)" in message
    assert "clients[0].dip_ids[0].mpid" in message
    assert "clients[1].dip_ids[0].role" in message


def _write(dev_pki_dir: Path, data: dict[str, Any], name: str) -> Path:
    path = dev_pki_dir / name  # beside the PKI, so its relative paths resolve
    path.write_text(yaml.safe_dump(data))
    return path


def test_env_override_applied(dev_pki_dir: Path) -> None:
    path = _write(dev_pki_dir, _base(dev_pki_dir), "env-override.yaml")
    config = load_config(
        path,
        environ={
            "DCP_GATEWAY__KAFKA__BOOTSTRAP_SERVERS": "kafka-0.kafka:9092",
            "DCP_GATEWAY__EGRESS__LINGER_MS": "5",
            "UNRELATED": "x",
        },
    )
    assert config.kafka.bootstrap_servers == "kafka-0.kafka:9092"
    assert config.egress.linger_ms == 5.0


def test_env_override_is_validated(dev_pki_dir: Path) -> None:
    path = _write(dev_pki_dir, _base(dev_pki_dir), "env-bad.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"DCP_GATEWAY__EGRESS__MAX_BATCH_MESSAGES": "0"})
    assert "egress.max_batch_messages" in str(info.value)


def test_config_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml", environ={})


def test_config_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("clients: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path, environ={})


# -- cross-checks between fields -----------------------------------------------------------


def test_client_topic_used_by_two_clients(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["clients"][1]["topics"]["inbound"] = data["clients"][0]["topics"]["inbound"]
    message = _error(data, dev_pki_dir)
    assert (
        "clients[1].topics.inbound: topic 'client-1.dip.inbound' is also a topic of client "
        "'client-1'" in message
    )
    assert "each client needs its own topics" in message


@pytest.mark.parametrize(
    ("field", "shared", "shared_path"),
    [
        ("results", "dip.outbound", "kafka.outbound_topics[0]"),
        ("status", "dip.status.outbound", "kafka.status_outbound_topic"),
        ("inbound", "dip.inbound.quarantine", "kafka.quarantine_topic"),
        ("dead_letter", "dip.outbound.dead-letter", "kafka.dead_letter_topic"),
    ],
)
def test_client_topic_is_a_shared_topic(
    dev_pki_dir: Path, field: str, shared: str, shared_path: str
) -> None:
    data = _base(dev_pki_dir)
    data["clients"][0]["topics"][field] = shared
    message = _error(data, dev_pki_dir)
    assert f"clients[0].topics.{field}: topic {shared!r} is the shared {shared_path}" in message
    assert "give client 'client-1' a topic of its own" in message


def test_dead_letter_topic_is_an_outbound_topic(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["kafka"]["outbound_topics"] = ["dip.outbound", "dip.outbound.more"]
    data["kafka"]["dead_letter_topic"] = "dip.outbound.more"
    message = _error(data, dev_pki_dir)
    expected = "kafka.dead_letter_topic: topic 'dip.outbound.more' is also kafka.outbound_topics[1]"
    assert expected in message


def test_status_topic_may_be_an_outbound_topic(dev_pki_dir: Path) -> None:
    # Egress subscribes to the union of both, so sharing one topic is a supported layout.
    data = _base(dev_pki_dir)
    data["kafka"]["status_outbound_topic"] = "dip.outbound"
    assert parse_config(data, base_dir=dev_pki_dir).kafka.status_outbound_topic == "dip.outbound"


@pytest.mark.parametrize(
    ("publication_path", "status_path"),
    [
        ("/dip", "/dip/status"),
        ("/dip/status/publications", "/dip/status"),
        ("/dip/status", "dip/status/"),
        ("/", "/dip/status"),
    ],
)
def test_webhook_paths_overlap(dev_pki_dir: Path, publication_path: str, status_path: str) -> None:
    data = _base(dev_pki_dir)
    data["ingress"]["publication_path"] = publication_path
    data["ingress"]["status_path"] = status_path
    message = _error(data, dev_pki_dir)
    assert f"ingress.status_path: {status_path!r} overlaps ingress.publication_path" in message
    assert "use separate paths" in message


def test_webhook_paths_sharing_only_a_string_prefix_are_fine(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["ingress"]["publication_path"] = "/dip/status-publications"
    data["ingress"]["status_path"] = "/dip/status"
    config = parse_config(data, base_dir=dev_pki_dir)
    assert config.ingress.publication_path == "/dip/status-publications"


def test_sasl_needs_a_password_file(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["kafka"].update(
        security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="gw"
    )
    message = _error(data, dev_pki_dir)
    assert "1 problem(s)" in message
    assert "kafka.sasl_password_file: security_protocol SASL_SSL needs it" in message
    (dev_pki_dir / "kafka-sasl-password").write_text("secret\n")
    data["kafka"]["sasl_password_file"] = "kafka-sasl-password"
    config = parse_config(data, base_dir=dev_pki_dir)
    assert config.kafka.sasl_password_file == dev_pki_dir / "kafka-sasl-password"


def test_sasl_protocol_lists_each_missing_setting(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["kafka"]["security_protocol"] = "SASL_PLAINTEXT"
    message = _error(data, dev_pki_dir)
    assert "3 problem(s)" in message
    for name in ("sasl_mechanism", "sasl_username", "sasl_password_file"):
        assert f"kafka.{name}: security_protocol SASL_PLAINTEXT needs it: set {name}" in message


def test_sasl_mechanism_without_a_sasl_protocol(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["kafka"]["sasl_mechanism"] = "PLAIN"
    message = _error(data, dev_pki_dir)
    assert "kafka.sasl_mechanism: set, but security_protocol PLAINTEXT does not use SASL" in (
        message
    )


def test_kafka_ssl_cert_without_key(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["kafka"].update(security_protocol="SSL", ssl_cert_file="webhook/server.pem")
    message = _error(data, dev_pki_dir)
    assert "kafka.ssl_key_file: ssl_cert_file and ssl_key_file go together" in message
    data["kafka"]["ssl_key_file"] = "webhook/server.key"
    assert parse_config(data, base_dir=dev_pki_dir).kafka.ssl_key_file is not None


def test_kafka_ssl_key_without_cert(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["kafka"].update(security_protocol="SSL", ssl_key_file="webhook/server.key")
    assert "kafka.ssl_cert_file: ssl_cert_file and ssl_key_file go together" in _error(
        data, dev_pki_dir
    )


def test_kafka_ssl_files_without_tls(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["kafka"]["ssl_ca_file"] = "ca/dip-ca.pem"
    message = _error(data, dev_pki_dir)
    assert "kafka.ssl_ca_file: set, but security_protocol PLAINTEXT does not use TLS" in message


def test_production_needs_https_to_the_dip(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["environment"] = "PRD"
    data["dip"]["base_url"] = "http://dip.example"
    message = _error(data, dev_pki_dir)
    assert "dip.base_url: environment PRD needs an https:// DIP URL" in message
    data["dip"]["base_url"] = "https://dip.example"
    assert parse_config(data, base_dir=dev_pki_dir).dip.base_url == "https://dip.example"


def test_plain_http_to_the_dip_is_fine_outside_production(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["dip"]["base_url"] = "http://127.0.0.1:8444"
    assert parse_config(data, base_dir=dev_pki_dir).dip.base_url == "http://127.0.0.1:8444"


def test_egress_and_ingress_both_disabled(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["egress"] = {"enabled": False}
    data["ingress"]["enabled"] = False
    message = _error(data, dev_pki_dir)
    assert "egress.enabled: egress and ingress are both disabled" in message
    assert "enable at least one of egress.enabled and ingress.enabled" in message


def test_an_inbound_topic_is_required_only_while_ingress_is_on(dev_pki_dir: Path) -> None:
    """Operators run egress and ingress as separate Deployments: the egress one names no
    inbound topics."""
    data = _base(dev_pki_dir)
    del data["clients"][1]["topics"]["inbound"]
    message = _error(data, dev_pki_dir)
    assert "clients[1].topics.inbound: ingress routes the publications for client" in message
    data["ingress"]["enabled"] = False
    config = parse_config(data, base_dir=dev_pki_dir)
    assert config.clients[1].topics.inbound is None
    assert all(use.topic for use in gateway_topic_uses(config))  # nothing to create or check


def test_cross_check_problems_are_all_listed(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["environment"] = "PRD"
    data["dip"]["base_url"] = "http://dip.example"
    data["clients"][1]["topics"]["results"] = data["clients"][0]["topics"]["results"]
    message = _error(data, dev_pki_dir)
    assert "2 problem(s)" in message
    assert "  - dip.base_url: " in message
    assert "  - clients[1].topics.results: " in message


def test_http2_needs_the_httpx_transport_and_the_h2_package(
    dev_pki_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _base(dev_pki_dir)
    data["dip"]["http2"] = True
    message = _error(data, dev_pki_dir)
    assert "dip.http2: HTTP/2 needs egress.transport 'httpx'" in message
    data.setdefault("egress", {})["transport"] = "httpx"
    # h2 is not a dependency: without it httpx would fail on the first request, not at start.
    monkeypatch.setitem(sys.modules, "h2", None)
    assert "dip.http2: HTTP/2 needs the h2 package" in _error(data, dev_pki_dir)
    data["dip"]["http2"] = False
    assert parse_config(data, base_dir=dev_pki_dir).egress.transport == "httpx"


def test_the_drain_on_a_rebalance_must_fit_in_the_rebalance_timeout(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["egress"] = {"shutdown_grace_seconds": 59.5}
    data["kafka"] = {**data.get("kafka", {}), "rebalance_timeout_ms": 60_000}
    assert parse_config(data, base_dir=dev_pki_dir).egress.shutdown_grace_seconds == 59.5
    data["egress"] = {"shutdown_grace_seconds": 60}
    message = _error(data, dev_pki_dir)
    assert "egress.shutdown_grace_seconds: 60 s is not below kafka.rebalance_timeout_ms" in message
    assert "raise kafka.rebalance_timeout_ms" in message
    data["egress"] = {"shutdown_grace_seconds": 60, "enabled": False}
    data["ingress"] = {**data.get("ingress", {}), "enabled": True}
    assert parse_config(data, base_dir=dev_pki_dir).egress.enabled is False  # no drain: no check


# -- errors in the project's words, settings required only where used ----------------------


def test_an_empty_section_names_the_field_and_the_fix(dev_pki_dir: Path) -> None:
    """``ingress:`` with nothing under it is YAML null, which pydantic reports as "Input should
    be a valid dictionary or instance of IngressSettings"."""
    text = yaml.safe_dump({k: v for k, v in _base(dev_pki_dir).items() if k != "ingress"})
    path = dev_pki_dir / "empty-section.yaml"
    path.write_text(text + "ingress:\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert "1 problem(s)" in message
    assert (
        "  - ingress: the section is empty: put its settings under it, indented, or remove the "
        "line to use the defaults" in message
    )
    assert "IngressSettings" not in message
    data = _base(dev_pki_dir)
    data["dip"] = None  # required: removing the line is no fix
    message = _error(data, dev_pki_dir)
    assert "  - dip: the section is empty: put its settings under it, indented\n" in message + "\n"


@pytest.mark.parametrize(
    ("section", "field", "value", "expected"),
    [
        ("ingress", "listen_port", "abc", "ingress.listen_port: must be a whole number, not 'abc'"),
        ("ingress", "listen_port", -1, "ingress.listen_port: must be at least 0, not -1"),
        ("ingress", "enabled", "maybe", "ingress.enabled: must be true or false, not 'maybe'"),
        (
            "ops",
            "log_level",
            "loud",
            "ops.log_level: must be one of 'debug', 'info', 'warning' or 'error', not 'loud'",
        ),
        (
            "kafka",
            "outbound_topics",
            "dip.outbound",
            "kafka.outbound_topics: must be a list ('- item' lines under it, or [a, b]), "
            "not 'dip.outbound'",
        ),
        ("kafka", "quarantine_topic", 5, "kafka.quarantine_topic: must be text (quote it in"),
        ("trust", "max_skew_seconds", "long", "trust.max_skew_seconds: must be a number, not"),
    ],
)
def test_type_errors_say_what_the_field_must_be(
    dev_pki_dir: Path, section: str, field: str, value: object, expected: str
) -> None:
    data = _base(dev_pki_dir)
    data.setdefault(section, {})[field] = value
    message = _error(data, dev_pki_dir)
    assert expected in message
    assert "Input should" not in message


def test_a_bad_client_name_says_which_names_are_allowed(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    data["clients"][0]["name"] = "Client One"
    message = _error(data, dev_pki_dir)
    assert "clients[0].name: client name 'Client One' must be lower-case letters" in message
    assert "e.g. client-1" in message


def test_signing_credentials_are_required_only_while_egress_signs(dev_pki_dir: Path) -> None:
    data = _base(dev_pki_dir)
    del data["clients"][0]["signing_pfx"]
    message = _error(data, dev_pki_dir)
    assert (
        "clients[0].signing_pfx: egress signs every submission of client 'client-1' with its "
        "certificate: set signing_pfx (or signing_key + signing_cert), or disable egress"
    ) in message
    data["egress"] = {"enabled": False}
    config = parse_config(data, base_dir=dev_pki_dir)
    assert not config.clients[0].signs and config.clients[1].signs
    keystore = build_keystore(config)  # what an ingress-only gateway loads
    assert not keystore.owns(config.clients[0].dip_ids[0].dip_id)
    assert keystore.owns(config.clients[1].dip_ids[0].dip_id)


def test_the_dip_pool_follows_the_request_slots_unless_set(dev_pki_dir: Path) -> None:
    """One knob by default: a pool smaller than the slots would cap requests in flight below
    them (each request holds a connection for its round trip); a set pool size wins."""
    data = _base(dev_pki_dir)
    data.setdefault("egress", {})["max_concurrent_requests"] = 300
    data["dip"].pop("max_connections", None)
    config = parse_config(data, base_dir=dev_pki_dir, source="test.yaml")
    assert config.dip.max_connections is None
    assert config.dip.connection_limit(config.egress.max_concurrent_requests) == 300
    assert config.dip.connection_limit(5000) == 1024  # not a socket per slot without end
    data["dip"]["max_connections"] = 40
    config = parse_config(data, base_dir=dev_pki_dir, source="test.yaml")
    assert config.dip.connection_limit(config.egress.max_concurrent_requests) == 40
    data["dip"]["max_connections"] = 0
    assert "dip.max_connections" in _error(data, dev_pki_dir)
