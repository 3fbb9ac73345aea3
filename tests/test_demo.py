"""The demo behind `make run`: every part really runs and messages really flow both ways."""

from __future__ import annotations

from pathlib import Path

from gateway.demo import run_demo
from tests.kafka_fixtures import KafkaUnderTest


async def test_demo_moves_messages_to_the_dip_and_back(
    tmp_path: Path, kafka: KafkaUnderTest
) -> None:
    counts = await run_demo(
        tmp_path,
        clients=2,
        bits=2048,
        rate=40,
        duration=12,
        kafka_bootstrap=kafka.bootstrap_servers,
        report_every=4,
        handle_signals=False,
    )
    assert counts.produced >= 100
    # Accepted by the simulator (result records) and pushed back to the webhook (inbound).
    assert counts.accepted > 0
    assert counts.inbound > 0
    # The deliberately bad ones are dead-lettered, each kind with its own reason.
    assert counts.dead_lettered > 0
    reasons = " ".join(counts.reasons)
    assert "environmentTag" in reasons
    assert "MSG1001 - Schema Failure" in reasons
    assert (tmp_path / "dev-pki" / "gateway.yaml").is_file()
