"""Egress benchmark: Kafka -> EgressService -> DIP simulator, messages/s and CPU per message.

Run: ``.venv/bin/python load-tests/bench_egress.py [--single N] [--batched N] [--batch 500]``

Set-up, so that ``time.process_time()`` of this process is the gateway's CPU only:

* a fresh 4096-bit dev PKI (the production key size; signing cost depends on it);
* Tansu (``EmbeddedBroker``) and the simulator (``python -m dipsim.cli``) in their own processes;
* the messages (schema-valid IF-043 from ``sample_payload``) are produced before timing starts;
* timing runs from the first record consumed to the last message whose result record Kafka
  acknowledged (that is after the simulator's acknowledgement), read from the egress metrics.

Beside it, the same run measures RSA-4096 signing with the same key (one thread: CPU per
signature; and the pool's signatures/s) and the cost of the pre-flight schema validation, and
prints the ratio CPU per message / CPU per signature for batch size 1 (target <= 1.25).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

from dipsim.process import start_in_subprocess
from gateway.config import GatewayConfig, parse_config
from gateway.dip.client import DipClient, signing_pool
from gateway.egress import metrics
from gateway.egress.service import EgressService
from gateway.kafka.clients import create_producer
from gateway.kafka.embedded import EmbeddedBroker
from gateway.kafka.topics import ensure_topics, gateway_topics
from gateway.keys import build_keystore
from gateway.schema import default_registry
from gateway.schema.samples import sample_payload
from gateway.signing.pki import DevPkiOptions, create_dev_pki

SENDER = "1400010001"
CLIENT = "client-1"
INTERFACE = "IF-043"
DCP_ID = DevPkiOptions().dcp_id


def _config(pki: Path, bootstrap: str, base_url: str, batch: int) -> GatewayConfig:
    data: dict[str, Any] = yaml.safe_load((pki / "gateway.yaml").read_text())
    tag = uuid.uuid4().hex[:8]
    data["dip"]["base_url"] = base_url
    data["ingress"] = {"enabled": False}
    data["ops"] = {"log_level": "warning"}
    data["kafka"] = {
        "bootstrap_servers": bootstrap,
        "enable_idempotence": False,
        "compression_type": None,
        "create_topics": True,
        "consumer_group": f"bench-{tag}",
        "outbound_topics": [f"bench-out-{tag}"],
        "status_outbound_topic": None,
        "dead_letter_topic": f"bench-dlq-{tag}",
    }
    data["egress"] = {
        "max_batch_messages": batch,
        "max_batch_bytes": 8_000_000,
        "linger_ms": 5,
        "max_in_flight_messages": 50_000,
        "max_concurrent_requests": 32 if batch == 1 else 8,
    }
    for client in data["clients"]:
        client["topics"] = {
            "inbound": f"{client['name']}-in-{tag}",
            "results": f"{client['name']}-results-{tag}",
            "dead_letter": f"{client['name']}-dlq-{tag}",
        }
    return parse_config(data, base_dir=pki)


_COUNTERS = {
    "dcpgw_egress_messages_consumed_total": 0,
    "dcpgw_egress_messages_accepted_total": 1,
    "dcpgw_egress_messages_dead_lettered_total": 3,
}


def _counter(name: str) -> float:
    """Read the egress counter child directly: ``REGISTRY.get_sample_value`` would collect the
    whole registry (and read /proc) on every poll and bill that CPU to the gateway."""
    child = metrics.counters(CLIENT, INTERFACE)[_COUNTERS[name]]
    return float(child._value.get())


def _payloads(start: int, count: int) -> list[bytes]:
    now = datetime.now(UTC)
    return [
        orjson.dumps(
            sample_payload(
                INTERFACE,
                sender_dip_id=SENDER,
                sender_role="SUP",
                recipients=["2300000900"],
                seq=seq,
                now=now,
                dcp_id=DCP_ID,  # already set: the record's bytes are sent as they are
            )
        )
        for seq in range(start, start + count)
    ]


async def _produce(config: GatewayConfig, values: list[bytes]) -> None:
    producer = create_producer(config.kafka, linger_ms=20)
    await producer.start()
    try:
        topic = config.kafka.outbound_topics[0]
        futures = [
            await producer.send(topic, v, key=str(i % 64).encode()) for i, v in enumerate(values)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _scenario(
    pki: Path, bootstrap: str, base_url: str, batch: int, values: list[bytes]
) -> tuple[float, float]:
    """(messages/s, CPU seconds per message) for one batch size."""
    config = _config(pki, bootstrap, base_url, batch)
    await ensure_topics(config.kafka, gateway_topics(config))
    await _produce(config, values)
    keystore = build_keystore(config)
    pool = signing_pool(config.egress.signing_threads)
    consumed0 = _counter("dcpgw_egress_messages_consumed_total")
    accepted0 = _counter("dcpgw_egress_messages_accepted_total")
    rejected0 = _counter("dcpgw_egress_messages_dead_lettered_total")
    n = len(values)
    async with DipClient(config.dip, config.dcp, keystore, pool=pool) as dip:
        stop = asyncio.Event()
        task = asyncio.create_task(EgressService(config, keystore, dip).run(stop))
        while _counter("dcpgw_egress_messages_consumed_total") == consumed0:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        while True:
            done = _counter("dcpgw_egress_messages_accepted_total") - accepted0
            dead = _counter("dcpgw_egress_messages_dead_lettered_total") - rejected0
            if done + dead >= n:
                break
            await asyncio.sleep(0.02)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        stop.set()
        await task
    pool.shutdown(wait=True)
    if dead:
        print(f"  warning: {int(dead)} messages dead-lettered")
    return n / wall, cpu / n


def _signing(pki: Path, base_url: str, body: bytes, rounds: int) -> tuple[float, float, float]:
    """(CPU seconds per signature on one thread, signatures/s on one thread, pool sigs/s)."""
    config = parse_config(yaml.safe_load((pki / "gateway.yaml").read_text()), base_dir=pki)
    credential = build_keystore(config).signer_for(SENDER)
    url = base_url + "/dip-channel/IF-043"
    now = datetime.now(UTC)
    credential.sign("POST", url, body, now)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        credential.sign("POST", url, body, now)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    threads = os.cpu_count() or 2
    with ThreadPoolExecutor(threads) as pool:
        wall1 = time.perf_counter()
        list(pool.map(lambda _: credential.sign("POST", url, body, now), range(rounds * threads)))
        pool_rate = rounds * threads / (time.perf_counter() - wall1)
    return cpu / rounds, rounds / wall, pool_rate


def _schema_us(values: list[bytes], rounds: int = 5) -> float:
    registry = default_registry()
    payloads = [orjson.loads(v) for v in values[:2000]]
    registry.validate(payloads[0])
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for p in payloads:
            registry.validate(p)
        best = min(best, (time.process_time() - start) / len(payloads) * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--single", type=int, default=400, help="messages at batch size 1")
    parser.add_argument("--batched", type=int, default=30_000, help="messages at --batch")
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-egress-") as tmp:
        pki = Path(tmp)
        print("creating a 4096-bit dev PKI ...")
        create_dev_pki(pki, DevPkiOptions(clients=1, bits=4096))
        single = _payloads(0, args.single)
        batched = _payloads(1_000_000, args.batched)
        with (
            EmbeddedBroker() as broker,
            start_in_subprocess(pki, 0, extra_args=["--max-messages", "10000"]) as sim,
        ):
            sign_cpu, sign_rate, pool_rate = _signing(
                pki, sim.base_url, b"[" + single[0] + b"]", 100
            )
            schema = _schema_us(batched)
            rate1, cpu1 = asyncio.run(
                _scenario(pki, broker.bootstrap_servers, sim.base_url, 1, single)
            )
            rate_b, cpu_b = asyncio.run(
                _scenario(pki, broker.bootstrap_servers, sim.base_url, args.batch, batched)
            )
    cores = os.cpu_count()
    print(
        f"\nmachine: {cores} CPUs; broker and simulator in separate processes on the same machine"
    )
    print(
        f"RSA-4096 sign, same key: {sign_cpu * 1e3:.2f} ms CPU/signature, "
        f"{sign_rate:.0f} sig/s on one thread, {pool_rate:.0f} sig/s on {cores} threads"
    )
    print(f"schema validation (IF-043): {schema:.2f} us CPU/message")
    print(f"batch 1:   {args.single} msgs, {rate1:8.0f} msgs/s, {cpu1 * 1e3:.3f} ms CPU/message")
    print(
        f"batch {args.batch}: {args.batched} msgs, {rate_b:8.0f} msgs/s, "
        f"{cpu_b * 1e6:.1f} us CPU/message"
    )
    print(f"ratio CPU/message / CPU/signature at batch 1: {cpu1 / sign_cpu:.3f} (target <= 1.25)")
    print(f"msgs/s with batching: {rate_b:.0f} (target >= 20000)")


if __name__ == "__main__":
    main()
