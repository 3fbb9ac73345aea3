"""The demo behind ``make run``: the whole gateway on embedded defaults, messages flowing.

It sets up, on this machine only: a dev PKI (kept in ``var/demo/dev-pki`` between runs), an
embedded Kafka-compatible broker (unless one is configured), the DIP simulator in its own
process (started as a program: the gateway never imports it), and the gateway itself
(egress + ingress, exactly as ``dcp-gateway run`` would). It registers the webhooks, then
produces a steady stream of outbound messages for every client — mostly valid, with a few
deliberately bad ones — and prints, every few seconds, what reached each place: accepted by
the DIP (results topics), dead-lettered with a reason, and publications the DIP pushed back
to the webhook (inbound topics).

On Ctrl-C the gateway stops first, draining what is in flight while the simulator still
answers; the simulator and the broker run in their own sessions, so the terminal's SIGINT
reaches only the demo, which stops them after the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.app import run_gateway
from gateway.config import GatewayConfig, load_config
from gateway.dip import admin
from gateway.dip.client import DipClient
from gateway.kafka.clients import create_consumer, create_producer
from gateway.kafka.embedded import (
    EMBEDDED_BROKER_SETTINGS,
    EmbeddedBroker,
    die_with_parent,
    free_port,
)
from gateway.kafka.topics import ensure_topics, gateway_topics
from gateway.keys import build_keystore, load_dcp_credential
from gateway.schema.samples import sample_payload
from gateway.signing.pki import DevPkiOptions, create_dev_pki

_SIM_READY = "dipsim listening on "
_INTERFACES = ("IF-043", "IF-021")
_SPOILT: dict[int, tuple[str, str, str]] = {
    3: ("environmentTag", "PRD", "another environment's tag"),  # must never be sent
    7: ("senderUniqueReference", "not-a-reference", "a schema error"),
}
"""``seq % 10`` of the deliberately bad messages: the S1 field spoilt, its value, what it shows."""


def bad_share() -> str:
    kinds = " or ".join(what for _, _, what in _SPOILT.values())
    return f"{len(_SPOILT)} in 10 deliberately bad: {kinds}"


@dataclass
class DemoCounts:
    produced: int = 0
    accepted: int = 0
    dead_lettered: int = 0
    inbound: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    metrics_url: str = ""  # the running gateway's /metrics, once it is known

    def line(self) -> str:
        return (
            f"produced {self.produced:>6}  accepted by DIP {self.accepted:>6}  "
            f"dead-lettered {self.dead_lettered:>4}  publications received {self.inbound:>6}"
        )


def _ensure_dev_pki(folder: Path, clients: int, bits: int) -> Path:
    """Create the dev PKI once; later runs reuse it (keys are slow to make at 4096 bits)."""
    if not (folder / "dev-pki.json").is_file():
        print(f"creating a development PKI in {folder} ({clients} clients, RSA-{bits}) ...")
        create_dev_pki(folder, DevPkiOptions(clients=clients, bits=bits))
    return folder


@dataclass(frozen=True)
class SimulatorProgram:
    url: str
    pid: int


@contextlib.asynccontextmanager
async def _simulator(pki: Path, port: int, ready_timeout: float = 60.0) -> AsyncIterator[str]:
    """The demo's simulator (full schema checks): its base URL."""
    async with simulator_program(pki, port, ("--schema-validation",), ready_timeout) as sim:
        yield sim.url


@contextlib.asynccontextmanager
async def simulator_program(
    pki: Path, port: int, extra_args: Sequence[str] = (), ready_timeout: float = 60.0
) -> AsyncIterator[SimulatorProgram]:
    """Run the DIP simulator as a separate program (the gateway never imports it).

    Its output is read without blocking the event loop, drained for as long as it runs (a full
    pipe would stall it), and the pipe is closed with the process.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dipsim.cli",
        "--dev-pki",
        str(pki),
        "--port",
        str(port),
        *extra_args,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # Ctrl-C is the demo's to handle: the simulator must outlive the gateway's drain.
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    assert proc.stdout is not None
    drain: asyncio.Task[None] | None = None
    try:
        try:
            async with asyncio.timeout(ready_timeout):
                url = await _ready_url(proc, proc.stdout)
        except TimeoutError:
            raise RuntimeError(
                f"the DIP simulator did not start within {ready_timeout:g}s"
            ) from None
        drain = asyncio.create_task(_discard(proc.stdout), name="dipsim-stdout")
        yield SimulatorProgram(url, proc.pid)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        # The process is gone, so its output ends: read it to the end, where the pipe closes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drain or _discard(proc.stdout), 10)


async def _ready_url(proc: asyncio.subprocess.Process, stdout: asyncio.StreamReader) -> str:
    while True:
        line = (await stdout.readline()).decode("utf-8", "replace")
        if not line:
            raise RuntimeError(f"the DIP simulator exited with code {await proc.wait()}")
        if line.startswith(_SIM_READY):
            return line[len(_SIM_READY) :].strip()


async def _discard(stdout: asyncio.StreamReader) -> None:
    while await stdout.read(65536):
        pass


def _overrides(
    bootstrap: str, sim_url: str, webhook_port: int, ops_port: int, *, embedded: bool
) -> dict[str, str]:
    env = dict(EMBEDDED_BROKER_SETTINGS) if embedded else {}
    env |= {
        "DCP_GATEWAY__KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "DCP_GATEWAY__DIP__BASE_URL": sim_url,
        "DCP_GATEWAY__INGRESS__LISTEN_PORT": str(webhook_port),
        "DCP_GATEWAY__INGRESS__PUBLIC_BASE_URL": f"https://127.0.0.1:{webhook_port}",
        "DCP_GATEWAY__OPS__HEALTH_PORT": str(ops_port),
        "DCP_GATEWAY__EGRESS__LINGER_MS": "50",
    }
    # The operator's own DCP_GATEWAY__* variables win over the demo's choices.
    env.update({k: v for k, v in os.environ.items() if k.startswith("DCP_GATEWAY__")})
    return env


def demo_messages(config: GatewayConfig) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs: every client sends to every other client's DIP IDs; the messages
    :data:`_SPOILT` names are deliberately wrong, to show dead-lettering."""
    senders = [(c, d) for c in config.clients for d in c.dip_ids]
    for seq in itertools.count(1):
        client, dip = senders[seq % len(senders)]
        others = [d.dip_id for c in config.clients if c is not client for d in c.dip_ids]
        interface = _INTERFACES[seq % len(_INTERFACES)]
        payload: dict[str, Any] = sample_payload(
            interface,
            sender_dip_id=dip.dip_id,
            sender_role=dip.role.value,
            recipients=others[:1] or [dip.dip_id],
            seq=seq,
            environment_tag=config.environment.value,
        )
        spoilt = _SPOILT.get(seq % 10)
        if spoilt is not None:
            field_name, value, _ = spoilt
            payload["CommonBlock"]["S1"][field_name] = value
        key = str(payload["CommonBlock"].get("M0", {}).get("MPANCore", seq)).encode()
        yield key, orjson.dumps(payload)


async def _produce(
    config: GatewayConfig, rate: float, counts: DemoCounts, stop: asyncio.Event
) -> None:
    producer = create_producer(config.kafka)
    await producer.start()
    try:
        topic = config.kafka.outbound_topics[0]
        for key, value in demo_messages(config):
            if stop.is_set():
                return
            await producer.send(topic, value, key=key)
            counts.produced += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0 / rate)
    finally:
        await producer.stop()


async def _watch(config: GatewayConfig, counts: DemoCounts, stop: asyncio.Event) -> None:
    results = {c.topics.results for c in config.clients}
    dead = {c.topics.dead_letter for c in config.clients} | {config.kafka.dead_letter_topic}
    inbound = {c.topics.inbound for c in config.clients if c.topics.inbound}
    consumer = create_consumer(
        config.kafka, *(results | dead | inbound), group_id=None, auto_offset_reset="latest"
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                if tp.topic in results:
                    counts.accepted += len(records)
                elif tp.topic in inbound:
                    counts.inbound += len(records)
                else:
                    counts.dead_lettered += len(records)
                    for r in records:
                        reason = dict(r.headers).get("dcpgw-reason", b"").decode()[:70]
                        counts.reasons[reason or "(no reason header)"] += 1
    finally:
        await consumer.stop()


async def _report(counts: DemoCounts, every: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
        print(counts.line(), flush=True)


async def _announce_stop(stop: asyncio.Event) -> None:
    await stop.wait()
    print("stopping the gateway first: it drains in-flight messages ...", flush=True)


async def _sync_webhooks(config: GatewayConfig) -> None:
    keystore = await asyncio.to_thread(build_keystore, config)
    credential = await asyncio.to_thread(load_dcp_credential, config.dcp)
    async with DipClient.over_mtls(config.dip, credential, keystore) as dip:
        plan = admin.plan_sync(admin.desired_webhooks(config), [], keystore.dip_ids)
        results = await admin.apply_sync(dip, config, plan)
    ok = sum(r.ok for r in results)
    print(f"registered {ok}/{len(results)} webhooks with the DIP simulator")


async def run_demo(
    workdir: Path,
    *,
    clients: int = 3,
    bits: int = 4096,
    rate: float = 20.0,
    duration: float | None = None,
    kafka_bootstrap: str | None = None,
    report_every: float = 3.0,
    handle_signals: bool = True,
    counts: DemoCounts | None = None,
) -> DemoCounts:
    """Run the demo until Ctrl-C / SIGTERM or for ``duration`` seconds; return the counts
    (``counts``, when given, is filled while it runs)."""
    from gateway.app import install_signal_handlers

    pki = _ensure_dev_pki(workdir / "dev-pki", clients, bits)
    counts = counts if counts is not None else DemoCounts()
    stop = asyncio.Event()
    if handle_signals:
        install_signal_handlers(stop)
    async with contextlib.AsyncExitStack() as stack:
        kafka_bootstrap = kafka_bootstrap or os.environ.get("DCP_GATEWAY__KAFKA__BOOTSTRAP_SERVERS")
        bootstrap = kafka_bootstrap
        if not bootstrap:
            bootstrap = stack.enter_context(EmbeddedBroker()).bootstrap_servers
            print(f"embedded Kafka-compatible broker (Tansu) on {bootstrap}")
        sim_url = await stack.enter_async_context(_simulator(pki, free_port()))
        print(f"DIP simulator on {sim_url}")
        env = _overrides(bootstrap, sim_url, free_port(), free_port(), embedded=not kafka_bootstrap)
        config = load_config(pki / "gateway.yaml", env)
        await ensure_topics(config.kafka, gateway_topics(config))
        counts.metrics_url = f"http://127.0.0.1:{config.ops.health_port}/metrics"
        print(
            f"gateway: {len(config.clients)} clients, environment {config.environment.value}, "
            f"webhook {config.ingress.public_base_url}, metrics {counts.metrics_url}"
        )

        async def started() -> None:
            await _sync_webhooks(config)
            print(
                f"producing {rate:g} messages/s to {config.kafka.outbound_topics[0]} "
                f"({bad_share()}); Ctrl-C to stop"
            )
            for coro in (
                _watch(config, counts, stop),
                _report(counts, report_every, stop),
                _produce(config, rate, counts, stop),
            ):
                background.append(asyncio.create_task(coro))

        background: list[asyncio.Task[None]] = [asyncio.create_task(_announce_stop(stop))]
        timer = None
        if duration is not None:
            timer = asyncio.get_running_loop().call_later(duration, stop.set)
        try:
            await run_gateway(config, stop, on_ready=started)
        finally:
            stop.set()
            if timer is not None:
                timer.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            print("gateway stopped; stopping the DIP simulator and the broker", flush=True)
    print(counts.line())
    for reason, n in counts.reasons.most_common(5):
        print(f"  dead-letter reason x{n}: {reason}")
    return counts
