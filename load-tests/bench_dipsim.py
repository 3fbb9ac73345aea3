"""DIP simulator cost: messages/s and simulator CPU per message for submit batches.

Run: ``.venv/bin/python load-tests/bench_dipsim.py [--batches 1,100,500] [--messages 30000]
[--max-requests 1000] [--concurrency 4] [--schema off,on] [--bits 4096] [--pki DIR]
[--keep-state] [--py-spy PREFIX]``

What it does: makes a dev PKI (2 clients, RSA ``--bits``) unless ``--pki`` names an existing
one, starts the simulator in a subprocess (``dipsim.process.start_in_subprocess``; once per
``--schema`` mode, ``on`` adds ``--schema-validation``) and, for each batch size B, pre-signs
``min(max-requests, messages / B)`` submit requests of B schema-valid IF-044 messages (~1 KB
each, unique senderUniqueReferences) with client 1's signing certificate and API key. They are
sent with aiohttp over ``--concurrency`` keep-alive mTLS connections (the DCP certificate).
The simulator process's CPU time (utime + stime from ``/proc/<pid>/stat``) is read before and
after; every answer must be 201. Prints messages/s (wall clock, first send to last answer; the
client shares the machine) and simulator CPU µs per message. The simulator's state is reset
(``POST /_sim/reset``) before each batch size unless ``--keep-state``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dipsim.process import SimulatorProcess, start_in_subprocess  # noqa: E402
from gateway.schema.samples import sample_payload  # noqa: E402
from gateway.signing.credentials import SigningCredential, load_pfx  # noqa: E402
from gateway.signing.pki import DevPkiOptions, create_dev_pki  # noqa: E402

INTERFACE = "IF-044"
RECIPIENT = "2300000900"
WARMUP_REQUESTS = 5
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (from /proc/<pid>/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


class Pki:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifest: dict[str, Any] = json.loads((root / "dev-pki.json").read_text())
        client = self.manifest["clients"][0]
        entry = client["dip_ids"][0]
        self.dip_id: str = entry["dip_id"]
        self.role: str = entry["role"]
        self.api_key = (root / entry["api_key_file"]).read_text().strip()
        self.signer: SigningCredential = load_pfx(root / client["signing_pfx"])

    def ssl_context(self) -> ssl.SSLContext:
        m = self.manifest
        ctx = ssl.create_default_context(cafile=str(self.root / m["ca"]["cert"]))
        ctx.load_cert_chain(
            str(self.root / m["dcp_mtls"]["cert"]), str(self.root / m["dcp_mtls"]["key"])
        )
        return ctx


def build_requests(
    pki: Pki, url: str, batch: int, count: int, start_seq: int
) -> list[tuple[bytes, dict[str, str]]]:
    now = datetime.now(UTC)
    pad = "x" * 200  # subText: brings an IF-044 message to ~1 KB
    out: list[tuple[bytes, dict[str, str]]] = []
    seq = start_seq
    for _ in range(count):
        items = []
        for _ in range(batch):
            payload = sample_payload(
                INTERFACE,
                sender_dip_id=pki.dip_id,
                sender_role=pki.role,
                recipients=[RECIPIENT],
                seq=seq,
                now=now,
            )
            payload["CommonBlock"]["S1"]["subText"] = pad
            items.append({"payload": payload})
            seq += 1
        body = orjson.dumps(items)
        headers = pki.signer.sign("POST", url, body, now)
        headers["Content-Type"] = "application/json"
        headers["X-API-Key"] = pki.api_key
        out.append((body, headers))
    return out


async def send_all(
    session: aiohttp.ClientSession,
    url: str,
    requests: list[tuple[bytes, dict[str, str]]],
    concurrency: int,
) -> dict[int, int]:
    statuses: dict[int, int] = {}
    it = iter(requests)

    async def worker() -> None:
        for body, headers in it:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def run_mode(
    pki: Pki, sim: SimulatorProcess, args: argparse.Namespace, label: str
) -> list[dict[str, Any]]:
    url = f"{sim.base_url}/dip-channel/{INTERFACE}"
    pid = sim.process.pid
    connector = aiohttp.TCPConnector(ssl=pki.ssl_context(), limit=args.concurrency)
    results: list[dict[str, Any]] = []
    seq = 1
    async with aiohttp.ClientSession(connector=connector) as session:
        for batch in args.batches:
            count = max(1, min(args.max_requests, args.messages // batch))
            requests = build_requests(pki, url, batch, count + WARMUP_REQUESTS, seq)
            seq += batch * (count + WARMUP_REQUESTS)
            if not args.keep_state:
                async with session.post(f"{sim.base_url}/_sim/reset") as r:
                    await r.read()
            warm = await send_all(session, url, requests[:WARMUP_REQUESTS], args.concurrency)
            spy = None
            if args.py_spy:
                out = f"{args.py_spy}-{label}-{batch}.txt"
                spy = subprocess.Popen(  # noqa: ASYNC220 - before the clock starts
                    [
                        str(Path(sys.executable).parent / "py-spy"),
                        "record",
                        "--pid",
                        str(pid),
                        "--format",
                        "raw",
                        "--rate",
                        "500",
                        "-o",
                        out,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                await asyncio.sleep(1.0)
            cpu0 = cpu_seconds(pid)
            t0 = time.perf_counter()
            statuses = await send_all(session, url, requests[WARMUP_REQUESTS:], args.concurrency)
            wall = time.perf_counter() - t0
            cpu = cpu_seconds(pid) - cpu0
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
            messages = count * batch
            bad = {k: v for k, v in {**warm, **statuses}.items() if k != 201}
            row = {
                "schema": label,
                "batch": batch,
                "requests": count,
                "messages": messages,
                "wall_s": round(wall, 3),
                "msgs_per_s": round(messages / wall),
                "sim_cpu_s": round(cpu, 3),
                "sim_cpu_us_per_msg": round(cpu / messages * 1e6, 2),
                "sim_cpu_util": round(cpu / wall, 2),
                "non_201": bad,
            }
            results.append(row)
            print(
                f"schema={label:3s} B={batch:4d} requests={count:5d} messages={messages:6d} "
                f"{row['msgs_per_s']:8d} msg/s  sim CPU {row['sim_cpu_us_per_msg']:7.2f} µs/msg "
                f"({row['sim_cpu_util']:.2f} cores){'  NON-201: ' + str(bad) if bad else ''}",
                flush=True,
            )
    return results


async def main_async(args: argparse.Namespace, pki_dir: Path) -> list[dict[str, Any]]:
    pki = Pki(pki_dir)
    results: list[dict[str, Any]] = []
    for mode in args.schema:
        extra = ["--schema-validation"] if mode == "on" else []
        extra += args.sim_arg or []
        with start_in_subprocess(pki_dir, 0, extra_args=extra) as sim:
            results += await run_mode(pki, sim, args, mode)
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--batches", default="1,100,500")
    p.add_argument("--messages", type=int, default=30000, help="messages per batch size")
    p.add_argument("--max-requests", type=int, default=1000, help="requests per batch size")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--schema", default="off,on", help="off, on or off,on")
    p.add_argument("--bits", type=int, default=4096)
    p.add_argument("--pki", type=Path, help="existing dev PKI folder (else a temporary one)")
    p.add_argument("--keep-state", action="store_true", help="no /_sim/reset between sizes")
    p.add_argument("--sim-arg", action="append", help="extra simulator CLI argument")
    p.add_argument("--py-spy", help="record the simulator with py-spy to PREFIX-<schema>-<B>.txt")
    p.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = p.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    args.schema = [s.strip() for s in args.schema.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-dipsim-") as tmp:
        pki_dir = args.pki
        if pki_dir is None or not (pki_dir / "dev-pki.json").exists():
            pki_dir = pki_dir or Path(tmp)
            create_dev_pki(pki_dir, DevPkiOptions(clients=2, bits=args.bits))
        results = asyncio.run(main_async(args, pki_dir))
    if args.json:
        print(json.dumps(results, indent=2))
    return 0 if all(not r["non_201"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
