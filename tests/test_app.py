"""The whole gateway process (`dcp-gateway run`): ops endpoint, readiness, hot reload, stop."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx

from dipsim import Simulator
from gateway.app import run_gateway
from gateway.config import load_config
from gateway.kafka.embedded import free_port
from tests.kafka_fixtures import KafkaUnderTest, unique


async def test_run_gateway_serves_probes_metrics_and_reloads_api_keys(
    dev_pki: Path, simulator: Simulator, kafka: KafkaUnderTest, tmp_path: Path
) -> None:
    ops_port, webhook_port = free_port(), free_port()
    env = {
        "DCP_GATEWAY__KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "DCP_GATEWAY__KAFKA__CONSUMER_GROUP": unique("app"),
        "DCP_GATEWAY__KAFKA__OUTBOUND_TOPICS": f"[{unique('app-out')}]",
        "DCP_GATEWAY__DIP__BASE_URL": simulator.base_url,
        "DCP_GATEWAY__INGRESS__LISTEN_PORT": str(webhook_port),
        "DCP_GATEWAY__INGRESS__PUBLIC_BASE_URL": f"https://127.0.0.1:{webhook_port}",
        "DCP_GATEWAY__OPS__HEALTH_PORT": str(ops_port),
        "DCP_GATEWAY__OPS__RELOAD_INTERVAL_SECONDS": "0.2",
    }
    config = load_config(dev_pki / "gateway.yaml", env)
    api_key_file = config.clients[0].dip_ids[0].api_key_file
    original_key = api_key_file.read_text()
    stop = asyncio.Event()
    ready = asyncio.Event()

    async def on_ready() -> None:
        ready.set()

    gateway = asyncio.create_task(run_gateway(config, stop, on_ready=on_ready))
    try:
        async with asyncio.timeout(60):
            await ready.wait()
        base = f"http://127.0.0.1:{ops_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            async with asyncio.timeout(60):
                while (await http.get("/readyz")).status_code != 200:  # noqa: ASYNC110 (polling HTTP)
                    await asyncio.sleep(0.1)
            readyz = (await http.get("/readyz")).json()
            assert readyz["ok"] is True
            assert set(readyz["components"]) >= {"egress", "ingress"}
            assert (await http.get("/livez")).status_code == 200

            metrics = (await http.get("/metrics")).text
            expiry = [
                line
                for line in metrics.splitlines()
                if line.startswith("dcpgw_certificate_days_to_expiry{")
            ]
            labels = " ".join(expiry)
            for client in config.clients:
                assert f'certificate="signing:{client.name}"' in labels
            assert 'certificate="mtls:dcp"' in labels
            # The dev PKI issues for 365 days: the gauge says so (within a day).
            assert all(363 < float(line.rsplit(" ", 1)[1]) <= 365 for line in expiry)

            # Rotate an API key file in place: the running gateway picks it up.
            before = _reloads(metrics)
            api_key_file.write_text("rotated-key-" + os.urandom(8).hex() + "\n")
            async with asyncio.timeout(30):
                while _reloads((await http.get("/metrics")).text) <= before:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
    finally:
        api_key_file.write_text(original_key)
        stop.set()
        async with asyncio.timeout(60):
            await gateway
    assert gateway.exception() is None


def _reloads(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('dcpgw_credential_reloads_total{outcome="ok"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
