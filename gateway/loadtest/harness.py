"""What a load test runs against: a dev PKI, a broker, the DIP simulator and the gateway, each
in its own process as in production, started here unless the user points at existing ones."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import GatewayConfig, load_config
from gateway.dip import admin
from gateway.dip.client import DipClient
from gateway.keys import build_keystore, load_dcp_credential
from gateway.signing.pki import DevPkiOptions, create_dev_pki

#: The gateway's settings a load test changes; everything else is the product's default.
_LINGER_MS = 5


@dataclass(frozen=True)
class Environment:
    """Where a phase's gateway connects to."""

    pki: Path
    bootstrap: str
    tansu: bool  # the broker is Tansu (embedded, or given): its workarounds on
    sim_url: str
    webhook_port: int
    #: Connection settings of the given Kafka (TLS, SASL: ``--kafka-config``), for every phase.
    kafka: Mapping[str, Any] = field(default_factory=dict)


def pki_for(workdir: Path, clients: int, bits: int) -> Path:
    """A dev PKI with at least ``clients`` clients, kept between runs (4096-bit keys are slow
    to make): the smallest one already in ``workdir``, or a new one."""
    found = []
    for folder in workdir.glob(f"pki-*-clients-rsa{bits}"):
        size = folder.name.split("-")[1]
        if size.isdigit() and int(size) >= clients and (folder / "dev-pki.json").is_file():
            found.append((int(size), folder))
    if found:
        return min(found)[1]
    folder = workdir / f"pki-{clients}-clients-rsa{bits}"
    print(f"creating a development PKI in {folder} ({clients} clients, RSA-{bits}) ...")
    create_dev_pki(folder, DevPkiOptions(clients=clients, bits=bits))
    return folder


def phase_config(
    env: Environment,
    tag: str,
    *,
    batch: int,
    ops_port: int,
    clients: int,
    dedup_window: int = 100_000,
) -> dict[str, Any]:
    """The dev PKI's gateway.yaml with this phase's own topics, consumer group and batching,
    and only the first ``clients`` clients (each costs the gateway a key load at start)."""
    data: dict[str, Any] = yaml.safe_load((env.pki / "gateway.yaml").read_text())
    data["clients"] = data["clients"][:clients]
    data["dip"]["base_url"] = env.sim_url
    data["kafka"] = {
        "bootstrap_servers": env.bootstrap,
        # Tansu has no InitProducerId (no idempotent producers) and numbers group generations
        # from 0 (``tansu_compat``).
        "enable_idempotence": not env.tansu,
        "tansu_compat": env.tansu,
        "create_topics": True,
        "consumer_group": f"loadtest-{tag}",
        "outbound_topics": [f"loadtest.{tag}.outbound"],
        "status_outbound_topic": None,
        "dead_letter_topic": f"loadtest.{tag}.dead-letter",
        "quarantine_topic": f"loadtest.{tag}.quarantine",
        **env.kafka,
    }
    if env.tansu:
        # Tansu answers a JoinGroup after half the session timeout: the product's 10 s would
        # add 5 s to every phase's start. 6 s is still Apache Kafka's smallest allowed session.
        data["kafka"].update(session_timeout_ms=6000, heartbeat_interval_ms=1000)
    data["egress"] = {"max_batch_messages": batch, "linger_ms": _LINGER_MS}
    data["ingress"].update(
        listen_port=env.webhook_port,
        public_base_url=f"https://127.0.0.1:{env.webhook_port}",
        dedup_window=dedup_window,
    )
    data["ops"] = {"health_port": ops_port, "log_level": "warning", "log_format": "console"}
    for client in data["clients"]:
        client["topics"] = {
            kind: f"loadtest.{tag}.{client['name']}.{kind}"
            for kind in ("inbound", "results", "dead_letter", "status")
        }
    return data


def write_config(data: dict[str, Any], pki: Path, name: str) -> tuple[Path, GatewayConfig]:
    """Written next to the PKI (its paths are relative to it) and parsed, so a mistake shows
    here rather than as a gateway that does not start."""
    path = pki / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, load_config(path, {})


@dataclass
class GatewayProcess:
    pid: int
    ops_url: str
    #: One kept-alive connection for the polls, each asking only for the series it reads: a
    #: new connection and the whole exposition five times a second cost the gateway's event
    #: loop ~5 ms of CPU a second, counted in its CPU per message.
    session: aiohttp.ClientSession

    async def metrics(self, *names: str) -> list[float]:
        """For each name, the sum of its samples on the gateway's /metrics (all labels)."""
        params = [("name[]", name) for name in names]
        async with self.session.get(f"{self.ops_url}/metrics", params=params) as response:
            text = await response.text()
        totals = dict.fromkeys(names, 0.0)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in totals:
                    totals[sample.name] += sample.value
        return [totals[name] for name in names]

    async def egress_final(self) -> float:
        """Messages the gateway has finished with (accepted or dead-lettered)."""
        names = (
            "dcpgw_egress_messages_accepted_total",
            "dcpgw_egress_messages_dead_lettered_total",
        )
        return sum(await self.metrics(*names))

    async def ingress_messages(self) -> float:
        """Messages of answered pushes, whatever became of them."""
        return (await self.metrics("dcpgw_ingress_messages_total"))[0]


@contextlib.asynccontextmanager
async def gateway_process(
    config_path: Path, ops_port: int, log: Path, ready_timeout: float
) -> AsyncIterator[GatewayProcess]:
    """``dcp-gateway run --config FILE`` in its own process, until /readyz answers 200; stopped
    with SIGTERM (a graceful drain) when the block ends. Its output goes to ``log``."""
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "run",
            "--config",
            str(config_path),
            stdout=out,
            stderr=out,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    ops_url = f"http://127.0.0.1:{ops_port}"
    try:
        await _ready(proc, ops_url, ready_timeout, log)
        async with aiohttp.ClientSession() as session:
            yield GatewayProcess(proc.pid, ops_url, session)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _ready(proc: asyncio.subprocess.Process, ops_url: str, within: float, log: Path) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                tail = (await asyncio.to_thread(log.read_bytes))[-2000:].decode(errors="replace")
                raise RuntimeError(f"the gateway exited with {proc.returncode}:\n{tail}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(f"{ops_url}/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the gateway was not ready within {within:g}s (log: {log})")


@contextlib.asynccontextmanager
async def _dip_client(config: GatewayConfig) -> AsyncIterator[DipClient]:
    """A DIP client as the gateway's, for the few calls the load test makes itself."""
    keystore = await asyncio.to_thread(build_keystore, config)
    credential = await asyncio.to_thread(load_dcp_credential, config.dcp)
    async with DipClient.over_mtls(config.dip, credential, keystore) as dip:
        yield dip


async def set_dip_latency(config: GatewayConfig, latency_ms: float) -> None:
    """The simulator's injected latency (its ``/_sim/faults``; mTLS like any DIP call)."""
    sender = config.clients[0].dip_ids[0].dip_id
    async with _dip_client(config) as dip:
        body = orjson.dumps({"latency_ms": latency_ms})
        response = await dip.request("POST", "/_sim/faults", sender, body)
    if response.status != 200:
        raise RuntimeError(f"the simulator refused the faults: {response.status} {response.body!r}")


async def register_webhooks(config: GatewayConfig) -> int:
    """Every client DIP ID's publication webhooks at the simulator (``dip webhooks sync``)."""
    async with _dip_client(config) as dip:
        plan = admin.plan_sync(admin.desired_webhooks(config), [], dip.keystore.dip_ids)
        results = await admin.apply_sync(dip, config, plan)
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"webhook registration failed: {failed[0]}")
    return len(results)
