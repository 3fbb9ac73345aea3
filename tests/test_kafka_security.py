"""Secured Kafka as DCPs run it: Apache Kafka listeners with TLS (client certificates) and
SASL/SCRAM-SHA-512 over TLS, for egress and ingress; a refused certificate, login or producer
ID stops start-up naming the field (the start-up check, ``gateway.kafka.preflight``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.app import run_gateway
from gateway.cli import main as cli_main
from gateway.config import ConfigError, KafkaSettings, load_config
from gateway.demo import run_demo
from gateway.kafka.embedded import EmbeddedBroker
from gateway.kafka.preflight import check_kafka_connection
from gateway.signing.pki import Purpose, cert_pem, create_ca, issue, key_pem
from tests import apache_kafka
from tests.pki_fixtures import write_pem

SCRAM_USER, SCRAM_PASSWORD = "dcp-gateway", "scram-test-password"


@dataclass(frozen=True)
class SecuredKafka:
    broker: apache_kafka.ApacheKafka
    ca: Path  # the CA of the broker's and the client's certificates
    client_cert: Path
    client_key: Path
    password_file: Path
    stranger_ca: Path  # a CA that issued nothing here

    def ssl_env(self) -> dict[str, str]:
        return {
            "DCP_GATEWAY__KAFKA__BOOTSTRAP_SERVERS": self.broker.ssl_bootstrap_servers,
            "DCP_GATEWAY__KAFKA__SECURITY_PROTOCOL": "SSL",
            "DCP_GATEWAY__KAFKA__SSL_CA_FILE": str(self.ca),
            "DCP_GATEWAY__KAFKA__SSL_CERT_FILE": str(self.client_cert),
            "DCP_GATEWAY__KAFKA__SSL_KEY_FILE": str(self.client_key),
        }

    def sasl_env(self, password_file: Path | None = None) -> dict[str, str]:
        return {
            "DCP_GATEWAY__KAFKA__BOOTSTRAP_SERVERS": self.broker.sasl_ssl_bootstrap_servers,
            "DCP_GATEWAY__KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "DCP_GATEWAY__KAFKA__SSL_CA_FILE": str(self.ca),
            "DCP_GATEWAY__KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
            "DCP_GATEWAY__KAFKA__SASL_USERNAME": SCRAM_USER,
            "DCP_GATEWAY__KAFKA__SASL_PASSWORD_FILE": str(password_file or self.password_file),
        }


@pytest.fixture(scope="module")
def secured_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    if missing := apache_kafka.missing_tools():
        pytest.skip(f"secured listeners need Apache Kafka: not on PATH: {missing}")
    folder = tmp_path_factory.mktemp("kafka-tls")
    ca = create_ca("Kafka test CA", bits=2048)
    server = issue(
        ca, "kafka.test", Purpose.SERVER, bits=2048, dns_names=["localhost"],
        ip_addresses=["127.0.0.1"],
    )  # fmt: skip
    keystore = folder / "broker.pem"
    keystore.write_bytes(key_pem(server.key) + cert_pem(server.cert) + cert_pem(ca.cert))
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(cert_pem(ca.cert))
    client_key, client_cert = write_pem(folder, "gateway", issue(ca, "gw", Purpose.MTLS, bits=2048))
    stranger = folder / "stranger-ca.pem"
    stranger.write_bytes(cert_pem(create_ca("Look-alike Kafka CA", bits=2048).cert))
    password_file = folder / "kafka.password"
    password_file.write_text(SCRAM_PASSWORD + "\n")
    tls = apache_kafka.BrokerTls(keystore=keystore, truststore=ca_file)
    with apache_kafka.ApacheKafka(tls=tls, scram_users={SCRAM_USER: SCRAM_PASSWORD}) as broker:
        yield SecuredKafka(broker, ca_file, client_cert, client_key, password_file, stranger)


@pytest.mark.parametrize("listener", ["ssl", "sasl_ssl"])
async def test_egress_and_ingress_run_over_a_secured_listener(
    secured_kafka: SecuredKafka, listener: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's messages go Kafka -> DIP simulator -> webhook -> Kafka, every Kafka client
    (the gateway's and the demo's own) on the secured listener, idempotent producer on."""
    env = secured_kafka.ssl_env() if listener == "ssl" else secured_kafka.sasl_env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    counts = await run_demo(
        tmp_path, clients=2, bits=2048, rate=40, duration=15, report_every=5,
        handle_signals=False,
    )  # fmt: skip
    config = load_config(tmp_path / "dev-pki" / "gateway.yaml", env)
    assert config.kafka.security_protocol == listener.upper()
    assert config.kafka.enable_idempotence is True
    assert counts.produced > 0
    assert counts.accepted > 0, "egress delivered nothing over the secured listener"
    assert counts.inbound > 0, "ingress wrote nothing over the secured listener"


async def test_a_wrong_scram_password_stops_start_up_naming_the_field(
    secured_kafka: SecuredKafka, dev_pki: Path, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    config = load_config(dev_pki / "gateway.yaml", secured_kafka.sasl_env(wrong))
    with pytest.raises(ConfigError, match=r"kafka\.sasl_password_file") as refused:
        await run_gateway(config, asyncio.Event())
    assert "not-the-password" not in str(refused.value)
    assert SCRAM_USER in str(refused.value)


async def test_an_untrusted_broker_certificate_stops_start_up_naming_the_field(
    secured_kafka: SecuredKafka, dev_pki: Path
) -> None:
    env = secured_kafka.ssl_env() | {
        "DCP_GATEWAY__KAFKA__SSL_CA_FILE": str(secured_kafka.stranger_ca)
    }
    config = load_config(dev_pki / "gateway.yaml", env)
    with pytest.raises(ConfigError, match=r"kafka\.ssl_ca_file: .*does not trust"):
        await run_gateway(config, asyncio.Event())


async def test_a_missing_client_certificate_is_named(secured_kafka: SecuredKafka) -> None:
    settings = KafkaSettings(
        bootstrap_servers=secured_kafka.broker.ssl_bootstrap_servers,
        security_protocol="SSL",
        ssl_ca_file=secured_kafka.ca,
    )
    with pytest.raises(ConfigError, match=r"kafka\.ssl_cert_file"):
        await check_kafka_connection(settings)


async def test_the_right_settings_pass_the_start_up_check(secured_kafka: SecuredKafka) -> None:
    for env in (secured_kafka.ssl_env(), secured_kafka.sasl_env()):
        values = {k.removeprefix("DCP_GATEWAY__KAFKA__").lower(): v for k, v in env.items()}
        await check_kafka_connection(KafkaSettings.model_validate(values))


async def test_a_broker_without_the_idempotent_producer_stops_start_up(
    tansu: EmbeddedBroker,
) -> None:
    """Tansu lists InitProducerId but answers it with UNKNOWN_SERVER_ERROR; the idempotent
    producer then died with ``UnknownError`` and ingress never became ready."""
    durable = KafkaSettings(bootstrap_servers=tansu.bootstrap_servers)
    with pytest.raises(ConfigError, match=r"kafka\.enable_idempotence: .*UnknownError"):
        await check_kafka_connection(durable)
    relaxed = durable.model_copy(update={"enable_idempotence": False})
    await check_kafka_connection(relaxed)


def test_check_connect_reports_the_kafka_login_before_deploying(
    secured_kafka: SecuredKafka,
    dev_pki: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`dcp-gateway check --connect`: an operator's dry run of the start-up check."""
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    for password_file, expected in ((secured_kafka.password_file, 0), (wrong, 1)):
        for name, value in secured_kafka.sasl_env(password_file).items():
            monkeypatch.setenv(name, value)
        code = cli_main(["check", "--config", str(dev_pki / "gateway.yaml"), "--connect"])
        out = capsys.readouterr().out
        kafka_lines = [line for line in out.splitlines() if line[6:].startswith("kafka")]
        assert code == expected, out
        if expected == 0:
            assert any(line.startswith("OK    kafka: 127.0.0.1:") for line in kafka_lines), out
        else:
            assert any(
                line.startswith("FAIL  kafka: kafka.sasl_password_file") for line in kafka_lines
            ), out
