"""OpenTelemetry tracing: off by default; on, the span tree of a batch and of a webhook push,
with the W3C ``traceparent`` read from and written to Kafka headers (SDK in-memory exporter,
real Kafka, the DIP simulator)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.config import KafkaSettings
from gateway.ingress.samples import body_of, publication
from gateway.kafka.clients import create_producer
from gateway.kafka.topics import ensure_topics, gateway_topics
from gateway.ops import tracing
from gateway.signing.credentials import SigningCredential
from tests.ingress_fixtures import consume, first_webhook, gateway_config, push, running, tx
from tests.kafka_fixtures import KafkaUnderTest
from tests.test_egress_e2e import Gateway, _collect, _gateway_config, _payload, _simulator
from tests.test_egress_e2e import pki as egress_pki  # noqa: F401  (module fixture)
from tests.test_ingress_webhook import (
    dev_pki,  # noqa: F401  (module fixture)
    dip_signer,  # noqa: F401  (module fixture)
)

PRODUCER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{PRODUCER_TRACE}-{PRODUCER_SPAN}-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        yield exporter
    finally:
        tracing.use(None)


class Record(NamedTuple):
    value: bytes
    key: bytes | None
    partition: int | None
    headers: list[tuple[str, bytes]] | None


async def produce(settings: KafkaSettings, topic: str, records: Sequence[Record]) -> None:
    """Produce ``records`` to ``topic`` one by one, each acknowledged before the next."""
    producer = create_producer(settings)
    await producer.start()
    try:
        for r in records:
            sent = await producer.send(
                topic, r.value, key=r.key, partition=r.partition, headers=r.headers
            )
            await sent
    finally:
        await producer.stop()


def _one(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def _children(spans: tuple[ReadableSpan, ...], parent: ReadableSpan) -> set[str]:
    assert parent.context is not None
    return {
        s.name for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id
    }


def _traceparent_ids(value: bytes) -> tuple[int, int]:
    _, trace_id, span_id, _ = value.decode().split("-")
    return int(trace_id, 16), int(span_id, 16)


def test_off_by_default_costs_nothing_and_writes_no_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert tracing.configure_from_env() is False
    assert not tracing.enabled()
    with tracing.span("anything") as current:
        assert current is None
    assert tracing.record_headers() is None
    assert tracing.parent_from({"traceparent": TRACEPARENT}) is None


async def test_a_batch_is_one_trace_linked_to_its_records_and_written_into_its_results(
    egress_pki: Path,  # noqa: F811
    kafka: KafkaUnderTest,
    spans: InMemorySpanExporter,
) -> None:
    async with _simulator(egress_pki) as sim:
        config = _gateway_config(egress_pki, kafka, sim, linger_ms=500, max_batch_messages=2)
        await ensure_topics(config.kafka, gateway_topics(config))
        topic = config.kafka.outbound_topics[0]
        traced = [("traceparent", TRACEPARENT.encode())]
        records = [
            Record(orjson.dumps(_payload(1, seq)), b"meter-1", None, headers)
            for seq, headers in ((1, traced), (2, None))
        ]
        await produce(config.kafka, topic, records)
        gateway = Gateway(config)
        await gateway.start()
        try:
            outcomes = await _collect(config, 2)
        finally:
            await gateway.stop_gracefully()
    assert len(outcomes.results) == 2 and not outcomes.dead

    finished = spans.get_finished_spans()
    batch = _one(finished, "egress.batch")
    assert batch.context is not None and batch.parent is None
    assert [link.context.trace_id for link in batch.links] == [int(PRODUCER_TRACE, 16)]
    assert batch.attributes is not None and batch.attributes["messaging.batch.message_count"] == 2
    assert _children(finished, batch) == {"egress.consume", "dip.request", "egress.outcome_write"}
    request = _one(finished, "dip.request")
    assert _children(finished, request) == {"dip.sign"}
    assert request.attributes is not None
    assert request.attributes["http.response.status_code"] == 201
    write = _one(finished, "egress.outcome_write")
    assert write.context is not None
    for result in outcomes.results:
        trace_id, span_id = _traceparent_ids(result.headers["traceparent"])
        assert (trace_id, span_id) == (batch.context.trace_id, write.context.span_id)


async def test_a_push_is_one_trace_under_the_dips_and_written_into_the_inbound_record(
    kafka: KafkaUnderTest,
    dev_pki: Path,  # noqa: F811
    dip_signer: SigningCredential,  # noqa: F811
    spans: InMemorySpanExporter,
) -> None:
    config = gateway_config(dev_pki, kafka.settings())
    client, recipient, url = first_webhook(config)
    body = body_of([publication(recipient, tx())])

    def with_traceparent(headers: dict[str, str]) -> None:
        headers["traceparent"] = TRACEPARENT

    async with running(config) as (_, http):
        answer = await push(http, url, body, dip_signer, tamper=with_traceparent)
        assert answer.status_code == 201
        [record] = await consume(config.kafka, client.topics.inbound, 1)
    await asyncio.sleep(0)

    finished = spans.get_finished_spans()
    pushed = _one(finished, "ingress.push")
    assert pushed.context is not None and pushed.parent is not None
    assert pushed.context.trace_id == int(PRODUCER_TRACE, 16)  # a child of the DIP's span
    assert pushed.parent.span_id == int(PRODUCER_SPAN, 16)
    assert _children(finished, pushed) == {"ingress.verify", "ingress.produce"}
    produce = _one(finished, "ingress.produce")
    assert produce.context is not None
    header = dict(record.headers)["traceparent"]
    assert _traceparent_ids(header) == (pushed.context.trace_id, produce.context.span_id)
