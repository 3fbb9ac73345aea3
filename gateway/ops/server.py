"""The operations HTTP endpoint: ``/metrics`` (Prometheus), ``/livez``, ``/readyz``.

Served by aiohttp on its own port so probes and scrapes never queue behind webhook traffic.
"""

from __future__ import annotations

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from gateway.ops.health import Health


def ops_app(health: Health, registry: CollectorRegistry = REGISTRY) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        # ``?name[]=a&name[]=b``: only those series, as prometheus_client's own handler does.
        # The whole exposition costs the event loop ~1 ms; a poller that wants two counters
        # several times a second (the load test) should not add that to what it measures.
        names = request.query.getall("name[]", [])
        source = registry.restricted_registry(names) if names else registry
        return web.Response(
            body=generate_latest(source), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    def _probe(result: tuple[bool, dict[str, str]]) -> web.Response:
        ok, report = result
        return web.Response(
            status=200 if ok else 503,
            body=orjson.dumps({"ok": ok, "components": report}),
            content_type="application/json",
        )

    async def livez(_request: web.Request) -> web.Response:
        return _probe(health.liveness())

    async def readyz(_request: web.Request) -> web.Response:
        return _probe(health.readiness())

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    return app


async def start_ops_server(
    health: Health, host: str, port: int, registry: CollectorRegistry = REGISTRY
) -> web.AppRunner:
    """Start serving; the caller keeps the runner and calls ``cleanup()`` at shutdown."""
    runner = web.AppRunner(ops_app(health, registry), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
