"""Response tracking: accepted requests await the publication that answers their correlation ID.

End to end, the whole gateway (egress, ingress, tracking) against the simulator on real Kafka:
client 1 sends three requests with correlation IDs to client 2; client 2 answers one of them
(a message to client 1 with the same ``senderCorrelationID``, which the simulator publishes to
client 1's webhook with ``D0.initialCorrelationID``). Client 1 then awaits two responses.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client import REGISTRY

from dipsim import Simulator
from gateway.config import ConfigError, load_config, parse_config
from gateway.schema.samples import sample_payload
from gateway.tracking.awaiting import Awaiting
from tests.dipsim_fixtures import DevPki
from tests.ingress_fixtures import consume
from tests.kafka_fixtures import KafkaUnderTest
from tests.test_ledger import cli, config_file, produce, running_gateway

pytestmark = pytest.mark.timeout(240)


def _message(pki: DevPki, sender: int, recipient: int, seq: int, correlation: str) -> bytes:
    payload = sample_payload(
        "IF-043",
        sender_dip_id=pki.dip_id(sender),
        sender_role="SUP",
        recipients=[pki.dip_id(recipient)],
        seq=seq,
    )
    payload["CommonBlock"]["S1"]["senderCorrelationID"] = correlation
    return orjson.dumps(payload)


def _sample(name: str, client: str) -> float:
    value = REGISTRY.get_sample_value(name, {"client": client, "interface": "IF-043"})
    return value or 0.0


async def _until(name: str, client: str, expected: float) -> None:
    """Poll the gauge the tracker exports every 0.1 s (no event to wait on across it)."""
    async with asyncio.timeout(30):
        while _sample(name, client) != expected:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def test_requests_await_their_response_publication_until_it_arrives(
    kafka: KafkaUnderTest, pki: DevPki, simulator: Simulator
) -> None:
    tracking: dict[str, Any] = {"enabled": True, "export_interval_seconds": 0.1}
    path = config_file(pki, simulator, kafka, tracking=tracking)
    config = load_config(path)
    assert await cli("dip", "webhooks", "sync", "--config", str(path)) == 0
    tag = uuid.uuid4().hex[:8]
    matched_before = _sample("dcpgw_tracking_responses_total", "client-1")
    async with running_gateway(config):
        requests = [_message(pki, 0, 1, seq, f"CI-{tag}-{seq}") for seq in range(3)]
        await produce(config, requests)
        await consume(config.kafka, config.clients[0].topics.results, 3)
        await _until("dcpgw_tracking_awaiting_responses", "client-1", 3)
        assert _sample("dcpgw_tracking_oldest_awaiting_seconds", "client-1") > 0

        await produce(config, [_message(pki, 1, 0, 10, f"CI-{tag}-1")])  # client 2 answers
        await consume(config.kafka, config.clients[0].topics.inbound, 1)
        await _until("dcpgw_tracking_awaiting_responses", "client-1", 2)
        assert _sample("dcpgw_tracking_responses_total", "client-1") == matched_before + 1


def test_a_response_read_before_its_request_ends_the_wait_at_once() -> None:
    state = Awaiting(horizon_ms=60_000)
    assert state.response("alice", "CI-1") is None  # read first (another topic, another pace)
    assert state.request("alice", "IF-021", "CI-1", 1_000) is True
    assert state.request("alice", "IF-021", "CI-2", 2_000) is False
    assert state.request("bob", "IF-021", "CI-2", 2_500) is False  # bob's own conversation
    assert state.response("carol", "CI-2") is None  # not carol's request: answers nothing
    groups = state.groups()
    assert groups[("alice", "IF-021")] == (1, 2_000)
    assert state.response("alice", "CI-2") == ("alice", "IF-021")
    assert state.groups()[("alice", "IF-021")] == (0, None)
    assert state.expire(62_000) == {}
    assert state.expire(62_501) == {("bob", "IF-021"): 1}  # past the horizon: given up
    assert state.groups()[("bob", "IF-021")] == (0, None)


def test_tracking_needs_every_clients_inbound_topic(pki: DevPki) -> None:
    data: dict[str, Any] = yaml.safe_load((pki.root / "gateway.yaml").read_text())
    del data["clients"][1]["topics"]["inbound"]
    data["ingress"] = {"enabled": False}  # (ingress itself would need it too)
    data["tracking"] = {"enabled": True}
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=pki.root)
    assert "clients[1].topics.inbound" in str(info.value)
    data["tracking"]["enabled"] = False
    assert not parse_config(data, base_dir=pki.root).tracking.enabled
