"""The operations endpoint's /metrics: the whole exposition, or only the series asked for."""

from __future__ import annotations

import aiohttp
from prometheus_client import CollectorRegistry, Counter

from gateway.kafka.embedded import free_port
from gateway.ops.health import Health
from gateway.ops.server import start_ops_server


async def test_metrics_answers_only_the_series_asked_for() -> None:
    """``?name[]=``, as prometheus_client's own handler: a poller reading two counters several
    times a second (the load test) does not make the gateway render every series each time."""
    registry = CollectorRegistry()
    Counter("wanted", "A series asked for.", registry=registry).inc(3)
    Counter("other", "A series not asked for.", registry=registry).inc()
    port = free_port()
    runner = await start_ops_server(Health(), "127.0.0.1", port, registry)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/metrics"
            async with session.get(url) as response:
                everything = await response.text()
            async with session.get(url, params=[("name[]", "wanted_total")]) as response:
                assert response.status == 200
                assert response.content_type == "text/plain"
                asked = await response.text()
    finally:
        await runner.cleanup()
    assert "wanted_total 3.0" in everything and "other_total 1.0" in everything
    assert "wanted_total 3.0" in asked and "other_total" not in asked
