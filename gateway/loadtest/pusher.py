"""The DIP side of an ingress phase, in its own process: pre-signed pushes sent to the webhook.

The DIP signs every push (RSA-4096); doing that here while sending would make this process,
not the gateway, the limit on a 2-CPU machine. So every push is signed before the clock
starts, as ``load-tests/bench_ingress.py`` does, then sent open loop at ``push_rate`` (or flat
out with ``concurrency`` connections). Prints one JSON line: elapsed time, answers, latencies.

    python -m gateway.loadtest.pusher '{"pki": ..., "targets": [...], ...}'
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from gateway.ingress.samples import body_of, publication, sign_push
from gateway.signing.credentials import load_credential

#: Seconds one push's request may take (connecting included): a wedged gateway then fails
#: pushes instead of holding each for aiohttp's default five minutes. Well above the gateway's
#: own bound on an answer (``ingress.produce_timeout_seconds``).
PUSH_TIMEOUT = 30.0


def signed_pushes(
    pki: Path, targets: list[dict[str, str]], pushes: int, batch: int, tag: str
) -> list[tuple[str, bytes, dict[str, str]]]:
    """(connect URL, body, headers) per push, round-robin over ``targets`` (each a recipient
    with its public and connect URLs); transaction IDs ``T-...-<tag><push><item>``."""
    signer = load_credential(pki / "dip" / "signing.pfx")
    out = []
    for p in range(pushes):
        target = targets[p % len(targets)]
        items = [
            publication(
                target["recipient"],
                f"T-IF-043-1009012345-REGS-20261123-{tag}{p:06d}{i:04d}",
                mpan=f"20{p % 10**7:07d}{i:04d}",
            )
            for i in range(batch)
        ]
        body = body_of(items)
        out.append((target["connect_url"], body, sign_push(signer, target["public_url"], body)))
    return out


async def send(
    pushes: list[tuple[str, bytes, dict[str, str]]],
    push_rate: float | None,
    concurrency: int,
    ca: Path,
    push_timeout: float = PUSH_TIMEOUT,
) -> dict[str, Any]:
    """Each push's latency runs from when it was due (its slot in the open-loop schedule, or
    when it was queued flat out), not from when it got one of the ``concurrency`` connections:
    pushes held back behind a slow gateway would otherwise hide their wait (coordinated
    omission). A push not answered within ``push_timeout`` fails, with status 0."""
    context = ssl.create_default_context(cafile=str(ca))
    connector = aiohttp.TCPConnector(ssl=context, limit=concurrency)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    gate = asyncio.Semaphore(concurrency)
    limit = aiohttp.ClientTimeout(total=push_timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=limit) as session:

        async def one(url: str, body: bytes, headers: dict[str, str], due: float) -> None:
            floor = 0.0
            async with gate:
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        statuses[response.status] += 1
                except TimeoutError:  # first: aiohttp's timeout errors are ClientErrors too
                    statuses[0] += 1
                    floor = push_timeout  # its timer may fire a hair early
                except (aiohttp.ClientError, OSError):
                    statuses[0] += 1
            latencies.append(max(time.perf_counter() - due, floor))

        started = time.perf_counter()
        tasks = []
        for i, push in enumerate(pushes):
            if push_rate:
                due = started + i / push_rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                due = time.perf_counter()
            tasks.append(asyncio.create_task(one(*push, due)))
            if not push_rate:
                await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return {
        "elapsed": elapsed,
        "statuses": {str(k): v for k, v in statuses.items()},
        "latencies": latencies,
    }


def main() -> None:
    spec = orjson.loads(sys.argv[1])
    pki = Path(spec["pki"])
    pushes = signed_pushes(pki, spec["targets"], spec["pushes"], spec["batch"], spec["tag"])
    print("signed", flush=True)
    ca = pki / "ca" / "dip-ca.pem"
    timeout = spec.get("push_timeout", PUSH_TIMEOUT)
    result = asyncio.run(send(pushes, spec["push_rate"], spec["concurrency"], ca, timeout))
    print(orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
