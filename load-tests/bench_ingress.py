"""Ingress throughput: verified publications per second, HTTP receipt to Kafka acknowledgement.

Run: ``.venv/bin/python load-tests/bench_ingress.py [--pushes 300] [--batch 100]
[--concurrency 8] [--bits 4096] [--tls] [--bootstrap HOST:PORT]``

What it does: makes a dev PKI (RSA ``--bits``, the DIP signing certificate included), starts an
embedded Kafka-compatible broker (Tansu) unless ``--bootstrap`` is given, and runs the real
:class:`~gateway.ingress.service.IngressService` (uvicorn, verification against the dev CA,
routing, acks=all produce, dedup window). A *separate process* then signs ``--pushes`` pushes
of ``--batch`` publications each (unique transaction IDs, signing done before the clock
starts, as the DIP does its own signing) and sends them with ``--concurrency`` connections.
The clock runs from the first request sent to the last answer received; every answer must be
201, i.e. every message acknowledged by Kafka. Prints messages/s, pushes/s and push latency,
and over the same window the gateway's CPU per message (this process: webhook, verification,
producer), its garbage collector's share, and the broker's and the pusher's CPU, so it is
clear which one is the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve()
WARMUP_PUSHES = 10


# -- the client process -------------------------------------------------------------------------


async def _client(args: argparse.Namespace) -> None:
    import ssl

    import aiohttp

    from gateway.ingress.samples import body_of, publication, sign_push
    from gateway.signing.credentials import load_credential

    signer = load_credential(Path(args.pki) / "dip" / "signing.pfx")
    total = args.pushes + WARMUP_PUSHES
    pushes: list[tuple[bytes, dict[str, str]]] = []
    for _ in range(total):
        tag = uuid.uuid4().hex[:12].upper()
        items = [
            publication(
                args.recipient,
                f"T-IF-043-1009012345-REGS-20261123-{tag}{i:04d}",
                mpan=f"2000{i % 97:09d}",
            )
            for i in range(args.batch)
        ]
        body = body_of(items)
        pushes.append((body, sign_push(signer, args.public_url, body)))

    ssl_ctx: ssl.SSLContext | bool = False
    if args.connect_url.startswith("https"):
        ssl_ctx = ssl.create_default_context(cafile=str(Path(args.pki) / "ca" / "dip-ca.pem"))
    connector = aiohttp.TCPConnector(ssl=ssl_ctx, limit=args.concurrency)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send(body: bytes, headers: dict[str, str], record: bool) -> None:
            started = time.perf_counter()
            async with session.post(args.connect_url, data=body, headers=headers) as response:
                await response.read()
                if record:
                    latencies.append(time.perf_counter() - started)
                    statuses[response.status] = statuses.get(response.status, 0) + 1

        for body, headers in pushes[:WARMUP_PUSHES]:
            await send(body, headers, False)
        queue = list(reversed(pushes[WARMUP_PUSHES:]))

        async def worker() -> None:
            while queue:
                body, headers = queue.pop()
                await send(body, headers, True)

        print("start", flush=True)  # the server side starts its CPU clock here
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - started
        print("done", flush=True)
    latencies.sort()
    print(
        json.dumps(
            {
                "elapsed": elapsed,
                "statuses": statuses,
                "p50_ms": statistics.median(latencies) * 1000,
                "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
            }
        )
    )


# -- the server side ----------------------------------------------------------------------------

_gc_seconds = [0.0, 0.0]  # total CPU in collections; when the current one started


def _gc_clock(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_seconds[1] = time.process_time()
    else:
        _gc_seconds[0] += time.process_time() - _gc_seconds[1]


async def _serve_and_measure(args: argparse.Namespace) -> None:
    from gateway.config import load_config
    from gateway.ingress.service import IngressService
    from gateway.kafka.embedded import EmbeddedBroker, free_port
    from gateway.kafka.topics import ensure_topics, gateway_topics
    from gateway.loadtest.stats import read_proc
    from gateway.ops.logging import configure_logging
    from gateway.signing.pki import DevPkiOptions, create_dev_pki

    configure_logging("warning", "console")
    with tempfile.TemporaryDirectory(prefix="bench-ingress-") as tmp:
        pki = Path(tmp)
        t0 = time.perf_counter()
        create_dev_pki(pki, DevPkiOptions(clients=1, bits=args.bits))
        print(f"dev PKI ({args.bits}-bit RSA) in {time.perf_counter() - t0:.1f}s")
        broker = None
        bootstrap = args.bootstrap
        if bootstrap is None:
            broker = EmbeddedBroker()
            bootstrap = broker.start()
        try:
            port = free_port()
            scheme = "https" if args.tls else "http"
            data: dict[str, Any] = yaml.safe_load((pki / "gateway.yaml").read_text())
            data["kafka"]["bootstrap_servers"] = bootstrap
            data["kafka"]["enable_idempotence"] = args.bootstrap is not None and args.idempotence
            tag = uuid.uuid4().hex[:6]
            for client in data["clients"]:
                client["topics"] = {
                    k: f"bench.{client['name']}.{k}.{tag}"
                    for k in ("inbound", "results", "dead_letter", "status")
                }
            ingress = data["ingress"]
            ingress.update(
                listen_port=port,
                public_base_url=f"https://dcp-gateway.bench.test:{port}",
                dedup_window=max(100_000, args.pushes * args.batch * 2),
            )
            if not args.tls:
                ingress.pop("tls_cert", None)
                ingress.pop("tls_key", None)
            data["egress"] = {"enabled": False}
            path = pki / "bench.yaml"
            path.write_text(yaml.safe_dump(data))
            config = load_config(path)
            await ensure_topics(config.kafka, gateway_topics(config), partitions=args.partitions)
            service = IngressService(config)
            gc.callbacks.append(_gc_clock)
            stop = asyncio.Event()
            task = asyncio.create_task(service.run(stop))
            await service.started.wait()
            await service.connected.wait()
            recipient = config.clients[0].dip_ids[0].dip_id
            path_part = f"{config.ingress.publication_path}/IF-043/{recipient}"
            cmd = [
                sys.executable,
                str(HERE),
                "--client",
                "--pki",
                str(pki),
                "--recipient",
                recipient,
                "--public-url",
                config.ingress.public_base_url + path_part,
                "--connect-url",
                f"{scheme}://127.0.0.1:{service.port}{path_part}",
                "--pushes",
                str(args.pushes),
                "--batch",
                str(args.batch),
                "--concurrency",
                str(args.concurrency),
            ]
            broker_pid = broker._proc.pid if broker is not None and broker._proc else None
            proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE)
            assert proc.stdout is not None
            # The gateway's CPU (this process: webhook, verification, producer; not the
            # broker, not the pusher) from the first timed push to the last answer.
            lines: list[bytes] = []
            cpu: dict[str, float] = {}
            async for line in proc.stdout:
                lines.append(line)
                mark = line.strip().decode()
                if mark in ("start", "done"):
                    cpu[mark] = time.process_time()
                    cpu["sys_" + mark] = os.times().system
                    cpu["gc_" + mark] = _gc_seconds[0]
                    for name, pid in (("broker", broker_pid), ("pusher", proc.pid)):
                        reading = read_proc(pid) if pid else None
                        cpu[f"{name}_{mark}"] = reading.cpu_seconds if reading else 0.0
            await proc.wait()
            out = b"".join(lines)
            stop.set()
            await task
        finally:
            if broker is not None:
                broker.stop()
    result = json.loads(out.decode().strip().splitlines()[-1])
    messages = args.pushes * args.batch
    ok = result["statuses"].get("201", 0)
    print(
        f"ingress: {messages / result['elapsed']:,.0f} verified messages/s "
        f"({args.pushes / result['elapsed']:,.1f} pushes/s of {args.batch}), "
        f"{args.pushes} pushes in {result['elapsed']:.2f}s, concurrency {args.concurrency}, "
        f"{'TLS' if args.tls else 'plain HTTP'}, broker "
        f"{'embedded Tansu' if args.bootstrap is None else args.bootstrap}"
    )
    gateway_cpu = cpu["done"] - cpu["start"]
    print(
        f"gateway CPU {gateway_cpu * 1e6 / messages:.1f} µs/msg "
        f"({gateway_cpu / result['elapsed']:.2f} CPUs busy), of which the garbage collector "
        f"{(cpu['gc_done'] - cpu['gc_start']) * 1e6 / messages:.1f}, the kernel (sockets) "
        f"{(cpu['sys_done'] - cpu['sys_start']) * 1e6 / messages:.1f}"
    )
    elapsed = result["elapsed"]
    print(
        "CPUs busy: broker {:.2f}, pusher {:.2f} (µs/msg {:.1f} / {:.1f})".format(
            *(
                (cpu[f"{name}_done"] - cpu[f"{name}_start"]) / elapsed
                for name in ("broker", "pusher")
            ),
            *(
                (cpu[f"{name}_done"] - cpu[f"{name}_start"]) * 1e6 / messages
                for name in ("broker", "pusher")
            ),
        )
    )
    print(
        f"push latency p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms; "
        f"answers {result['statuses']}"
    )
    if ok != args.pushes:
        print(f"NOT ALL STORED: {ok} of {args.pushes} pushes answered 201", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=300)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--bits", type=int, default=4096)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--tls", action="store_true", help="terminate TLS in the webhook")
    parser.add_argument("--bootstrap", help="an existing Kafka instead of the embedded broker")
    parser.add_argument("--idempotence", action="store_true", help="with --bootstrap")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the server side; print the top 25 (all of it: /tmp/bench-ingress.prof)",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="the server's event loop (auto: uvloop when installed, as `dcp-gateway run`)",
    )
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pki", help=argparse.SUPPRESS)
    parser.add_argument("--recipient", help=argparse.SUPPRESS)
    parser.add_argument("--public-url", help=argparse.SUPPRESS)
    parser.add_argument("--connect-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from gateway.ops import eventloop

    if args.client:
        asyncio.run(_client(args))
    elif args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        eventloop.run(_serve_and_measure(args), args.loop)
        profiler.disable()
        profiler.dump_stats("/tmp/bench-ingress.prof")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    else:
        eventloop.run(_serve_and_measure(args), args.loop)


if __name__ == "__main__":
    main()
