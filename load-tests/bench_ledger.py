"""What the submission ledger adds to egress's event-loop CPU per message, on a real broker.

Run: ``.venv/bin/python load-tests/bench_ledger.py [--messages 20000] [--rounds 3]
[--bootstrap HOST:PORT]`` (without ``--bootstrap``: the embedded Tansu broker).

The egress path from the DIP client on, as ``BatchSender`` and ``EgressService`` drive it:
``DipClient.request`` signs (RSA-2048, on the signing pool's threads) and sends a batch through
an in-memory transport that answers like the simulator (201, one StandardResponse entry per
message), then ``await dip.settled()`` as ``_run_batch`` does before writing outcomes. With the
ledger on, the client's observer builds each request's record (response parsed for the
transaction IDs, hashed) and produces it to a real topic, and ``settled`` waits for Kafka's
acknowledgement. Off and on alternate within every round, so machine load hits both alike; the
figure is the event-loop thread's CPU (``time.thread_time``: the signing threads are not in it)
per message, best and median of the rounds, at batch sizes 1 and 100, and the delta.

Then response tracking, which is not on the egress path but runs beside it: the tracker reads as
many result records and answering publications as there were messages and matches them; the
figure is its loop CPU (fetching both records, parsing them, matching) per answered request.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client import REGISTRY  # noqa: E402

from gateway.config import ClientTopics, GatewayConfig, load_config  # noqa: E402
from gateway.dip import (  # noqa: E402
    DipClient,
    MemoryTransport,
    TransportRequest,
    TransportResponse,
    new_signing_pool,
)
from gateway.kafka.clients import create_producer  # noqa: E402
from gateway.kafka.embedded import EmbeddedBroker  # noqa: E402
from gateway.kafka.topics import ensure_topics  # noqa: E402
from gateway.keys import build_keystore  # noqa: E402
from gateway.ledger.publisher import Ledger  # noqa: E402
from gateway.schema.samples import sample_payload  # noqa: E402
from gateway.signing.pki import DevPkiOptions, create_dev_pki  # noqa: E402
from gateway.tracking.service import ResponseTracker  # noqa: E402

PATH = "/dip-channel/IF-043"
CONCURRENCY = 16  # requests in flight, as egress.max_concurrent_requests allows


def _config(folder: Path, bootstrap: str, idempotence: bool) -> GatewayConfig:
    create_dev_pki(folder, DevPkiOptions(clients=1, bits=2048))
    config = load_config(folder / "gateway.yaml")
    kafka = config.kafka.model_copy(
        update={
            "bootstrap_servers": bootstrap,
            "enable_idempotence": idempotence,
            "create_topics": True,
        }
    )
    audit = config.audit.model_copy(
        update={"enabled": True, "topic": f"bench-audit-{uuid.uuid4().hex[:8]}"}
    )
    return config.model_copy(update={"kafka": kafka, "audit": audit})


def _batches(sender: str, messages: int, size: int) -> list[tuple[bytes, list[str], bytes]]:
    """(body, references, the simulator's 201 answer) per request."""
    out = []
    for start in range(0, messages, size):
        payloads = [
            sample_payload(
                "IF-043",
                sender_dip_id=sender,
                sender_role="SUP",
                recipients=["2300000900"],
                seq=i,
            )
            for i in range(start, min(start + size, messages))
        ]
        refs = [p["CommonBlock"]["S1"]["senderUniqueReference"] for p in payloads]
        body = orjson.dumps([{"payload": p} for p in payloads])
        answer = orjson.dumps(
            {
                "messageArray": [
                    {
                        "transactionID": f"{uuid.uuid4()}",
                        "senderUniqueReference": r,
                        "correlationID": None,
                        "sentTimestamp": "2026-12-07T17:00:00.000Z",
                        "senderID": sender,
                        "recipientID": "2300000900",
                        "DIPConnectionProviderID": "9000000001",
                        "message": "MSG0000 - Success",
                        "help": None,
                        "serviceTicketURL": None,
                    }
                    for r in refs
                ],
                "timestamp": "2026-12-07T17:00:00.000Z",
            }
        )
        out.append((body, refs, answer))
    return out


async def _run(
    config: GatewayConfig, ledger: Ledger | None, sender: str, batches: list[Any]
) -> float:
    """Loop-thread CPU seconds to send every batch and settle it."""
    answers = {body: answer for body, _, answer in batches}

    async def answer(request: TransportRequest) -> TransportResponse:
        return TransportResponse(201, {"content-type": "application/json"}, answers[request.body])

    keystore = build_keystore(config)
    pool = new_signing_pool()
    semaphore = asyncio.Semaphore(CONCURRENCY)
    client = DipClient(
        config.dip.base_url, keystore, MemoryTransport(answer), pool=pool, observer=ledger
    )

    async def one(body: bytes, refs: list[str]) -> None:
        async with semaphore:
            await client.request("POST", PATH, sender, body, references=refs)
        await client.settled()

    async with client:
        started = time.thread_time()
        await asyncio.gather(*(one(body, refs) for body, refs, _ in batches))
        used = time.thread_time() - started
    pool.shutdown()
    return used


async def _main(bootstrap: str, idempotence: bool, messages: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(Path(tmp), bootstrap, idempotence)
        await ensure_topics(config.kafka, [config.audit.topic], partitions=3)
        sender = config.clients[0].dip_ids[0].dip_id
        print(f"{messages} IF-043 messages per run; {rounds} rounds, ledger off and on alternating")
        print(f"{'batch':>6}{'ledger':>8}{'us CPU/msg best':>17}{'median':>9}")
        for size in (1, 100):
            batches = _batches(sender, messages if size > 1 else messages // 10, size)
            count = sum(len(refs) for _, refs, _ in batches)
            runs: dict[str, list[float]] = {"off": [], "on": []}
            async with Ledger(config) as ledger:
                await _run(config, ledger, sender, batches[:20])  # warm: metadata, pool
                for _ in range(rounds):
                    runs["off"].append(await _run(config, None, sender, batches) / count * 1e6)
                    runs["on"].append(await _run(config, ledger, sender, batches) / count * 1e6)
            for mode, figures in runs.items():
                best, median = min(figures), statistics.median(figures)
                print(f"{size:>6}{mode:>8}{best:>17.2f}{median:>9.2f}")
            delta = min(runs["on"]) - min(runs["off"])
            print(f"{size:>6}{'delta':>8}{delta:>17.2f}")
        await _tracking(config, messages)


async def _tracking(config: GatewayConfig, messages: int) -> None:
    """The tracker reading ``messages`` results and as many answering publications (each
    carrying one result's correlation ID) from the broker: loop CPU per answered request."""
    tag = uuid.uuid4().hex[:8]
    client = config.clients[0]
    topics = ClientTopics(results=f"bench-results-{tag}", dead_letter="unused",
                          inbound=f"bench-inbound-{tag}")  # fmt: skip
    config = config.model_copy(update={"clients": (client.model_copy(update={"topics": topics}),)})
    await ensure_topics(config.kafka, [topics.results, topics.inbound or ""], partitions=3)
    sender = client.dip_ids[0].dip_id
    producer = create_producer(config.kafka)
    await producer.start()
    try:
        sent = []
        for i in range(messages):
            correlation = f"CI-{tag}-{i}"
            result = orjson.dumps(
                {"senderUniqueReference": f"S-{i}", "transactionID": str(uuid.uuid4()),
                 "senderDIPID": sender, "interfaceID": "IF-043", "dipStatus": 201,
                 "dipMessage": "MSG0000 - Success", "submittedAt": "2026-12-07T17:00:00+00:00",
                 "acknowledgedAt": "2026-12-07T17:00:00+00:00", "attempts": 1,
                 "source": {"topic": "out", "partition": 0, "offset": i},
                 "senderCorrelationID": correlation}
            )  # fmt: skip
            answer = sample_payload(
                "IF-043", sender_dip_id="1400020001", sender_role="SDS", recipients=[sender], seq=i
            )
            answer["CommonBlock"]["D0"] = {"transactionID": str(uuid.uuid4()),
                                           "initialCorrelationID": correlation}  # fmt: skip
            headers = [("dip-channel", b"publication")]
            sent.append(await producer.send(topics.results, result))
            sent.append(
                await producer.send(topics.inbound or "", orjson.dumps(answer), headers=headers)
            )
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    tracker = ResponseTracker(config)
    stop = asyncio.Event()
    started = time.thread_time()
    task = asyncio.create_task(tracker.run(stop))
    matched = 0.0
    while matched < messages:
        await asyncio.sleep(0.05)
        matched = (
            REGISTRY.get_sample_value(
                "dcpgw_tracking_responses_total", {"client": client.name, "interface": "IF-043"}
            )
            or 0.0
        )
    used = time.thread_time() - started
    stop.set()
    await task
    print(f"tracking: {messages} results + {messages} answering publications read and matched")
    print(f"{'tracking':>14}{used / messages * 1e6:>17.2f} us CPU per answered request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bootstrap", help="a broker to use instead of the embedded one")
    args = parser.parse_args()
    if args.bootstrap:
        asyncio.run(_main(args.bootstrap, True, args.messages, args.rounds))
        return
    with EmbeddedBroker() as broker:  # Tansu: no idempotent producer
        asyncio.run(_main(broker.bootstrap_servers, False, args.messages, args.rounds))


if __name__ == "__main__":
    main()
