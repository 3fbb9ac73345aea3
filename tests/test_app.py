"""The whole gateway process (`dcp-gateway run`): ops endpoint, readiness, hot reload, stop,
start-up checks of the trust bundle and the DCP mTLS certificate, and a service that dies."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from structlog.testing import capture_logs

from dipsim import Simulator
from gateway.app import (
    ServiceFailed,
    _until_stop_or_failure,
    load_checked_dcp_credential,
    run_gateway,
)
from gateway.config import ConfigError, load_config
from gateway.kafka.embedded import free_port
from gateway.kafka.topics import ensure_topics, gateway_topics
from gateway.signing.credentials import CredentialError
from gateway.signing.pki import Purpose, create_ca, issue
from tests.kafka_fixtures import KafkaUnderTest, unique
from tests.pki_fixtures import write_pem
from tests.promtool_fixtures import run_promtool


def _kafka_env(kafka: KafkaUnderTest) -> dict[str, str]:
    """Broker, a fresh group and topic, and short group sessions (joins cost half of one)."""
    timing = kafka.group_timing()
    return {
        **kafka.env(),
        "DCP_GATEWAY__KAFKA__CONSUMER_GROUP": unique("app"),
        "DCP_GATEWAY__KAFKA__OUTBOUND_TOPICS": f"[{unique('app-out')}]",
        "DCP_GATEWAY__KAFKA__SESSION_TIMEOUT_MS": str(timing["session_timeout_ms"]),
        "DCP_GATEWAY__KAFKA__HEARTBEAT_INTERVAL_MS": str(timing["heartbeat_interval_ms"]),
    }


async def test_run_gateway_serves_probes_metrics_and_reloads_api_keys(
    dev_pki: Path, simulator: Simulator, kafka: KafkaUnderTest, tmp_path: Path
) -> None:
    ops_port, webhook_port = free_port(), free_port()
    env = {
        **_kafka_env(kafka),
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
            assert run_promtool("check", "metrics", stdin=metrics).strip() == ""
            expiry = [
                line
                for line in metrics.splitlines()
                if line.startswith("dcpgw_certificate_expiry_timestamp_seconds{")
            ]
            labels = " ".join(expiry)
            for client in config.clients:
                assert f'client="{client.name}",kind="signing"' in labels
            assert 'client="(dcp)",kind="mtls"' in labels
            assert 'client="(dcp)",kind="dip_trust_anchor"' in labels
            # The dev PKI issues for 365 days (its CA for ten years): the gauge says so.
            now = dt.datetime.now(dt.UTC).timestamp()
            for line in expiry:
                days = (float(line.rsplit(" ", 1)[1]) - now) / 86400
                assert (3648 if "dip_trust_anchor" in line else 363) < days, line
                assert days <= (3650 if "dip_trust_anchor" in line else 365), line

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


@contextlib.contextmanager
def _taken_port() -> Iterator[int]:
    """A loopback port something else is listening on while the block runs."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


async def test_a_service_that_dies_stops_the_gateway_with_an_error(
    dev_pki: Path, simulator: Simulator, kafka: KafkaUnderTest
) -> None:
    # The webhook's port is taken: ingress cannot serve, so the whole gateway must fail (not
    # run on with egress alone and report ready), and egress must be stopped, not leaked.
    with _taken_port() as taken:
        env = {
            **_kafka_env(kafka),
            "DCP_GATEWAY__DIP__BASE_URL": simulator.base_url,
            "DCP_GATEWAY__INGRESS__LISTEN_PORT": str(taken),
            "DCP_GATEWAY__OPS__HEALTH_PORT": "0",
        }
        config = load_config(dev_pki / "gateway.yaml", env)
        stop = asyncio.Event()
        with capture_logs() as logs, pytest.raises(ServiceFailed) as info:
            async with asyncio.timeout(60):
                await run_gateway(config, stop)
    assert info.value.service == "ingress"
    assert "ingress stopped before shutdown was requested" in str(info.value)
    assert "Address already in use" in str(info.value)
    assert stop.is_set()
    failed = [e for e in logs if e["event"] == "service_failed"]
    assert [e["service"] for e in failed] == ["ingress"]
    assert any(e["event"] == "gateway_stopped" for e in logs)
    leftovers = [t for t in asyncio.all_tasks() if t.get_name() in ("egress", "credential-watch")]
    assert leftovers == []


async def test_a_service_returning_before_stop_is_a_failure() -> None:
    stop = asyncio.Event()
    saw_stop = asyncio.Event()

    async def quits() -> None:
        await asyncio.sleep(0)

    async def well_behaved() -> None:
        await stop.wait()
        saw_stop.set()

    tasks = [
        asyncio.create_task(quits(), name="egress"),
        asyncio.create_task(well_behaved(), name="ingress"),
    ]
    with capture_logs() as logs, pytest.raises(ServiceFailed, match="egress stopped before"):
        await _until_stop_or_failure(tasks, stop, grace=5)
    assert stop.is_set()
    assert saw_stop.is_set(), "the other service was not given its graceful stop"
    assert all(t.done() for t in tasks)
    assert [(e["event"], e["service"]) for e in logs] == [("service_failed", "egress")]


async def test_a_service_raising_is_a_failure_with_its_cause() -> None:
    stop = asyncio.Event()

    async def breaks() -> None:
        raise OSError("disk gone")

    async def stuck() -> None:
        await asyncio.Event().wait()  # ignores stop: cut off after the grace period

    stuck_task = asyncio.create_task(stuck(), name="egress")
    tasks = [asyncio.create_task(breaks(), name="ingress"), stuck_task]
    try:
        with pytest.raises(ServiceFailed) as info:
            await _until_stop_or_failure(tasks, stop, grace=0.1)
        assert isinstance(info.value.__cause__, OSError)
        assert "OSError: disk gone" in str(info.value)
        assert not stuck_task.done()  # the caller (run_gateway) cancels what is left
    finally:
        stuck_task.cancel()


async def test_a_service_failing_during_its_graceful_stop_is_still_a_failure() -> None:
    """E.g. egress hit an internal error while draining on SIGTERM: its records stay
    uncommitted, and the exit code must say so (it was 0)."""
    stop = asyncio.Event()

    async def fails_while_draining() -> None:
        await stop.wait()
        raise RuntimeError("a bug while draining")

    tasks = [asyncio.create_task(fails_while_draining(), name="egress")]
    stop.set()
    with pytest.raises(ServiceFailed, match="egress failed while shutting down") as info:
        await _until_stop_or_failure(tasks, stop, grace=1)
    assert isinstance(info.value.__cause__, RuntimeError)


async def test_stop_requested_is_a_clean_return() -> None:
    stop = asyncio.Event()

    async def service() -> None:
        await stop.wait()

    tasks = [asyncio.create_task(service(), name="egress")]
    asyncio.get_running_loop().call_later(0.05, stop.set)
    await _until_stop_or_failure(tasks, stop, grace=5)
    assert tasks[0].done() and tasks[0].exception() is None


async def test_unreadable_trust_bundle_stops_start_up(dev_pki: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "dip-signing-ca.pem"
    bundle.write_text("this is not a certificate\n")
    config = load_config(
        dev_pki / "gateway.yaml",
        {"DCP_GATEWAY__TRUST__CA_BUNDLE": str(bundle), "DCP_GATEWAY__OPS__HEALTH_PORT": "0"},
    )
    with pytest.raises(ConfigError) as info:
        async with asyncio.timeout(30):
            await run_gateway(config, asyncio.Event())
    message = str(info.value)
    assert message.startswith(f"trust.ca_bundle: {bundle}: not a usable PEM CA bundle")
    assert "point it at the PEM file" in message


def test_run_command_exits_non_zero_with_the_field_named(dev_pki: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "dip-signing-ca.pem"
    bundle.write_text("")
    env = {
        **os.environ,
        "DCP_GATEWAY__TRUST__CA_BUNDLE": str(bundle),
        "DCP_GATEWAY__OPS__HEALTH_PORT": "0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "run", "--config", str(dev_pki / "gateway.yaml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"error: trust.ca_bundle: {bundle}: not a usable PEM CA bundle" in done.stderr
    assert "Traceback" not in done.stderr


def _mtls_env(
    tmp_path: Path, *, not_before: dt.datetime | None = None, days: int = 365
) -> dict[str, str]:
    ca = create_ca("Other DCP CA", bits=2048)
    issued = issue(
        ca, "dcp.example.test", Purpose.MTLS, bits=2048, not_before=not_before, days=days
    )
    key, cert = write_pem(tmp_path, "mtls", issued)
    return {
        "DCP_GATEWAY__DCP__MTLS_PFX": "",
        "DCP_GATEWAY__DCP__MTLS_KEY": str(key),
        "DCP_GATEWAY__DCP__MTLS_CERT": str(cert),
        "DCP_GATEWAY__OPS__HEALTH_PORT": "0",
    }


async def test_expired_dcp_mtls_certificate_is_refused_at_start(
    dev_pki: Path, tmp_path: Path
) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    config = load_config(dev_pki / "gateway.yaml", _mtls_env(tmp_path, not_before=long_ago))
    with pytest.raises(CredentialError) as info:
        async with asyncio.timeout(30):
            await run_gateway(config, asyncio.Event())
    assert "dcp mTLS certificate" in str(info.value)
    assert "certificate expired" in str(info.value)


def test_dcp_mtls_certificate_warnings_are_logged(dev_pki: Path, tmp_path: Path) -> None:
    config = load_config(dev_pki / "gateway.yaml", _mtls_env(tmp_path, days=10))
    with capture_logs() as logs:
        credential = load_checked_dcp_credential(config)
    assert "CN=dcp.example.test" in credential.subject
    warnings = [e["detail"] for e in logs if e["event"] == "credential_warning"]
    assert all(e["certificate"] == "mtls:dcp" for e in logs)
    assert any("requires 4096" in w for w in warnings)  # a 2048-bit key
    assert any("certificate expires in" in w for w in warnings)


async def test_services_are_ended_before_the_dip_connection_closes(
    dev_pki: Path, simulator: Simulator, kafka: KafkaUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service still running after the failure grace is cancelled while the DIP connection
    it may be using is still open, never after: a send on a closed client would fail records
    that were never really tried."""
    from gateway.dip import DipClient
    from gateway.egress.service import EgressService

    order: list[str] = []

    class RecordingDip(DipClient):
        async def __aexit__(self, *exc: Any) -> Any:
            order.append("dip-closed")
            return await super().__aexit__(*exc)

    async def ignores_stop(self: EgressService, stop: asyncio.Event) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            order.append("egress-ended")

    monkeypatch.setattr("gateway.app.DipClient", RecordingDip)
    monkeypatch.setattr(EgressService, "run", ignores_stop)
    with _taken_port() as taken:  # ingress cannot bind: the gateway fails
        env = {
            **_kafka_env(kafka),
            "DCP_GATEWAY__DIP__BASE_URL": simulator.base_url,
            "DCP_GATEWAY__INGRESS__LISTEN_PORT": str(taken),
            "DCP_GATEWAY__OPS__HEALTH_PORT": "0",
            "DCP_GATEWAY__EGRESS__SHUTDOWN_GRACE_SECONDS": "0",
        }
        config = load_config(dev_pki / "gateway.yaml", env)
        with pytest.raises(ServiceFailed):
            async with asyncio.timeout(60):
                await run_gateway(config, asyncio.Event())
    assert order == ["egress-ended", "dip-closed"]


async def test_a_missing_topic_stops_start_up_unless_the_gateway_may_create_it(
    dev_pki: Path, kafka: KafkaUnderTest
) -> None:
    env = {
        **_kafka_env(kafka),
        "DCP_GATEWAY__KAFKA__CREATE_TOPICS": "false",
        "DCP_GATEWAY__OPS__HEALTH_PORT": "0",
        "DCP_GATEWAY__INGRESS__ENABLED": "false",
    }
    config = load_config(dev_pki / "gateway.yaml", env)
    first = config.clients[0]
    results = unique("app-results")  # a topic nobody created: a typo, say
    first = first.model_copy(
        update={"topics": first.topics.model_copy(update={"results": results})}
    )
    config = config.model_copy(update={"clients": [first, *config.clients[1:]]})
    outbound = config.kafka.outbound_topics[0]
    with capture_logs() as logs, pytest.raises(ConfigError) as info:
        async with asyncio.timeout(60):
            await run_gateway(config, asyncio.Event())
    message = str(info.value)
    assert f"clients[0].topics.results: topic {results!r} does not exist" in message
    assert "set kafka.create_topics for development" in message
    # A topic egress only reads from is not an error (it is logged): there is nothing to read yet.
    assert "outbound_topics" not in message
    missing_reads = [e for e in logs if e["event"] == "topic_missing"]
    assert {"field": "kafka.outbound_topics[0]", "topic": outbound} in [
        {"field": e["field"], "topic": e["topic"]} for e in missing_reads
    ]
    # Ingress is off: the topics only it writes to are not asked for.
    assert "quarantine_topic" not in message and ".inbound:" not in message

    await ensure_topics(config.kafka, gateway_topics(config))
    stop, ready = asyncio.Event(), asyncio.Event()

    async def on_ready() -> None:
        ready.set()
        stop.set()

    async with asyncio.timeout(60):
        await run_gateway(config, stop, on_ready=on_ready)
    assert ready.is_set()


async def test_an_ingress_only_gateway_needs_no_dip_credentials(
    dev_pki: Path, kafka: KafkaUnderTest
) -> None:
    """Operators run egress and ingress as separate Deployments: the ingress one carries
    neither the DCP's mTLS certificate nor the clients' signing credentials (only egress uses
    them), and it starts, serves and stops without them."""
    data = yaml.safe_load((dev_pki / "gateway.yaml").read_text())
    del data["dcp"]["mtls_pfx"]
    for client in data["clients"]:
        del client["signing_pfx"]
    data["egress"] = {"enabled": False}
    path = dev_pki / "ingress-only.yaml"  # beside the PKI: its relative paths resolve
    path.write_text(yaml.safe_dump(data))
    ops_port, webhook_port = free_port(), free_port()
    env = {
        **_kafka_env(kafka),
        "DCP_GATEWAY__INGRESS__LISTEN_PORT": str(webhook_port),
        "DCP_GATEWAY__INGRESS__PUBLIC_BASE_URL": f"https://127.0.0.1:{webhook_port}",
        "DCP_GATEWAY__OPS__HEALTH_PORT": str(ops_port),
    }
    config = load_config(path, env)
    stop = asyncio.Event()
    gateway = asyncio.create_task(run_gateway(config, stop))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ops_port}", timeout=10) as http:
            async with asyncio.timeout(60):
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get("/readyz")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
            readyz = (await http.get("/readyz")).json()
    finally:
        stop.set()
        async with asyncio.timeout(60):
            await gateway
    assert gateway.exception() is None
    assert set(readyz["components"]) == {"ingress", "kafka"}
