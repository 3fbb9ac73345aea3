"""Abandoning in-flight work (revoke, shutdown) must not start the batches queued behind it.

A batch waiting on the key gate is started when the batch ahead of it finishes. Cancelling the
batch ahead finishes it too (its ``finally`` releases its keys); if that started the waiting
batch, the batch would be sent after the partition was revoked (maybe while another gateway
owns it) or against a stopping producer. Real Kafka feeds a real egress service; the DIP is an
in-memory transport that never answers, so what reaches it is exactly what egress started.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import orjson

from dipsim import Simulator
from gateway.dip import DipClient, MemoryTransport, TransportRequest, TransportResponse
from gateway.egress import EgressService
from gateway.kafka.topics import ensure_topics, gateway_topics
from gateway.keys import build_keystore
from tests.kafka_fixtures import KafkaUnderTest
from tests.test_egress_e2e import _gateway_config, _payload, _produce, _sur, pki  # noqa: F401

_NO_SIMULATOR = cast(Simulator, SimpleNamespace(base_url="https://127.0.0.1:9"))


async def test_a_stop_starts_no_batch_that_was_waiting_on_the_key_gate(
    pki: Path,  # noqa: F811 (the module fixture of test_egress_e2e)
    kafka: KafkaUnderTest,
) -> None:
    sent: list[list[str]] = []
    first_sent = asyncio.Event()

    async def never_answers(request: TransportRequest) -> TransportResponse:
        items = orjson.loads(request.body)
        sent.append([i["payload"]["CommonBlock"]["S1"]["senderUniqueReference"] for i in items])
        first_sent.set()
        await asyncio.Event().wait()
        raise AssertionError("never answered")

    config = _gateway_config(
        pki, kafka, _NO_SIMULATOR, shutdown_grace_seconds=0, linger_ms=0, ordering_scope="key"
    )
    await ensure_topics(config.kafka, gateway_topics(config))
    topic = config.kafka.outbound_topics[0]
    first, second = _payload(1, 0), _payload(2, 1)  # two senders: two batches
    # One key, ordered across senders: the second batch waits on the key gate until the first
    # is final.
    await _produce(config, [(topic, b"meter-1", orjson.dumps(p)) for p in (first, second)])
    keystore = build_keystore(config)
    before = asyncio.all_tasks()
    async with DipClient(config.dip.base_url, keystore, MemoryTransport(never_answers)) as dip:
        stop = asyncio.Event()
        run = asyncio.create_task(EgressService(config, keystore, dip).run(stop))
        async with asyncio.timeout(60):
            await first_sent.wait()
        stop.set()  # no grace: the first batch is abandoned
        async with asyncio.timeout(60):
            await run
        # A batch started by the stop would still be running: this DIP never answers.
        left = asyncio.all_tasks() - before - {asyncio.current_task()}
        if left:
            _, running = await asyncio.wait(left, timeout=10)
            assert not running, f"work still running after the stop; the DIP was sent {sent}"
    assert sent == [[_sur(first)]]
