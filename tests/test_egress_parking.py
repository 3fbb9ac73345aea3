"""Key parking end to end on real Kafka, the DIP simulator and the egress service: client 1 parks
keys. The DIP refuses key K's first record (the simulator rejects every message of client 1's
sender while the fault is on); the later K records are parked, not sent, while client 1's other
keys and client 2's record with the same key are delivered; egress restarts and K is still
parked (the state is on Kafka); ``dcp-gateway dlq release --with-head --force`` (the DIP fixed
on its side) re-drives the head and the parked records, and every K record reaches the DIP in
order; K is released, so a new K record is sent at once."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client import REGISTRY

from gateway.cli import main
from gateway.config import parse_config
from gateway.egress.parking import PARK_ID_HEADER, UNPARKED_HEADER
from tests.ingress_fixtures import consume
from tests.kafka_fixtures import KafkaUnderTest
from tests.sim_checks import assert_in_order_per_key, stored_references, until_stored
from tests.test_egress_e2e import (  # noqa: F401 (pki: the module fixture)
    Gateway,
    _collect,
    _dip_id,
    _gateway_config,
    _payload,
    _produce,
    _simulator,
    _sur,
    pki,
)

pytestmark = pytest.mark.timeout(300)

KEY = b"mpan-1200000000001"
REFUSED_KEY = b"mpan-1200000000002"  # its head is refused before sending (wrong environment)


def _parked_gauge(client: str) -> float:
    value = REGISTRY.get_sample_value("dcpgw_egress_parked_keys", {"client": client})
    return -1.0 if value is None else value


async def _until(condition: Any, seconds: float = 60.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 (a metric: no event to wait on)
            await asyncio.sleep(0.1)


async def test_a_dead_lettered_key_parks_its_successors_until_released_in_order(
    pki: Path,  # noqa: F811
    kafka: KafkaUnderTest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with _simulator(pki, rate_partial=1.0, senders=[_dip_id(1)]) as sim:
        data = _gateway_config(pki, kafka, sim).model_dump(mode="json")
        data["clients"][0]["park_keys"] = True
        config = parse_config(data, base_dir=pki)
        config_file = tmp_path / "gateway.yaml"
        config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
        topic = config.kafka.outbound_topics[0]
        client_1 = config.clients[0]
        assert client_1.topics.parked and client_1.topics.parked.endswith(".client-1.parked")
        head = _payload(1, 0)
        followers = [_payload(1, seq) for seq in (1, 2)]
        others = [(f"mpan-other-{seq}".encode(), _payload(1, 10 + seq)) for seq in range(2)]
        client_2_same_key = _payload(2, 20)
        refused_head = _payload(1, 30, environment_tag="PRD")
        refused_next = _payload(1, 31)

        # 1. The DIP rejects K's head: dead-lettered, and K parked.
        gateway = Gateway(config)
        await gateway.start()
        try:
            await _produce(config, [(topic, KEY, orjson.dumps(head))])
            first = await _collect(config, 1)
            assert [o.topic for o in first.dead] == [client_1.topics.dead_letter]
            await _until(lambda: _parked_gauge("client-1") == 1)

            # 2. The DIP is fine again: K's successors are parked, other keys and client 2's
            # record with the same key are delivered.
            sim.set_faults()
            await _produce(
                config,
                [(topic, KEY, orjson.dumps(p)) for p in followers]
                + [(topic, k, orjson.dumps(p)) for k, p in others]
                + [(topic, KEY, orjson.dumps(client_2_same_key))]
                + [(topic, REFUSED_KEY, orjson.dumps(p)) for p in (refused_head, refused_next)],
            )
            delivered = {_sur(p) for _, p in others} | {_sur(client_2_same_key)}
            await until_stored(sim, delivered, seconds=60)
            everything = await consume(
                config.kafka, client_1.topics.parked, len(followers) + 1, seconds=60
            )
            await _until(lambda: _parked_gauge("client-1") == 2)
        finally:
            await gateway.stop_gracefully()
        # A refusal at ingest parks its key too: the record behind it waits.
        assert [r.value for r in everything if r.key == REFUSED_KEY] == [orjson.dumps(refused_next)]
        parked = [r for r in everything if r.key == KEY]
        assert [r.value for r in parked] == [orjson.dumps(p) for p in followers]
        assert all(PARK_ID_HEADER in dict(r.headers) for r in parked)
        assert not stored_references(sim) & {_sur(p) for p in [head, *followers, refused_next]}

        # 3. Restarted, egress still parks K: the parked set came back from Kafka.
        later = _payload(1, 3)
        more = (b"mpan-other-9", _payload(1, 19))
        gateway = Gateway(config)
        await gateway.start()
        try:
            await _produce(
                config, [(topic, KEY, orjson.dumps(later)), (topic, more[0], orjson.dumps(more[1]))]
            )
            await until_stored(sim, {_sur(more[1])}, seconds=60)
            everything = await consume(
                config.kafka, client_1.topics.parked, len(followers) + 2, seconds=60
            )
            parked = [r for r in everything if r.key == KEY]
            assert parked[-1].value == orjson.dumps(later)
            assert _sur(later) not in stored_references(sim)
            assert _parked_gauge("client-1") == 2

            # 4. Release: a dry run sends nothing; the head's class needs --force (the DIP
            # rejected it; here the DIP was wrong and is fixed).
            release = (
                "dlq", "release", "--config", str(config_file), "--client", "client-1",
                "--key", KEY.decode(), "--with-head",
            )  # fmt: skip
            code, lines = await _cli(capsys, *release)
            assert code == 0, lines
            assert f"--execute re-drives {len(followers) + 1} to {topic} (" in lines[-1]
            assert "--force" in lines[-1]
            code, lines = await _cli(capsys, *release, "--force")
            assert code == 0, lines
            assert lines[-1].endswith(f"--execute re-drives {len(followers) + 2} to {topic}")
            # nothing produced by dry runs
            assert len(await consume(config.kafka, topic, 10, seconds=60)) == 10
            code, lines = await _cli(capsys, *release, "--execute")
            assert code == 2  # refused: a DIP rejection is not fixable by a re-send
            code, lines = await _cli(capsys, *release, "--execute", "--force")
            assert code == 0, lines
            assert lines[-1].startswith(f"re-drove {len(followers) + 2} to {topic}")
            assert lines[-1].endswith("key released")
            k_records = [head, *followers, later]
            await until_stored(sim, {_sur(p) for p in k_records}, seconds=60)
            assert_in_order_per_key(sim, [(KEY, _sur(p)) for p in k_records])
            await _until(lambda: _parked_gauge("client-1") == 1)  # the refused key's park stays

            # 5. Released: the next K record is sent at once, not parked.
            after = _payload(1, 4)
            await _produce(config, [(topic, KEY, orjson.dumps(after))])
            await until_stored(sim, {_sur(after)}, seconds=60)
        finally:
            await gateway.stop_gracefully()
    # Every K record reached the DIP exactly once, and the re-driven ones say why they passed.
    k_refs = [_sur(p) for p in [head, *followers, later, after]]
    stored = [m.sender_unique_reference for m in sim.state.messages]
    assert [s for s in stored if s in k_refs] == k_refs
    produced = await consume(config.kafka, topic, 15, seconds=60)
    released = [r for r in produced if UNPARKED_HEADER in dict(r.headers)]
    assert [r.value for r in released] == [orjson.dumps(p) for p in [head, *followers, later]]
    assert {dict(r.headers)[UNPARKED_HEADER] for r in released} == {
        dict(parked[0].headers)[PARK_ID_HEADER]
    }


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    """The command's own lines (not the running egress's log lines)."""
    code = await asyncio.to_thread(main, list(argv))
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    return code, [line for line in lines if not _LOG_LINE.match(line)]


_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")
