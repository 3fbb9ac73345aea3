"""Egress's pure per-message work, without Kafka or HTTP: CPU µs per message, or instructions.

Run: ``.venv/bin/python load-tests/bench_egress_core.py [--messages 2000] [--callgrind]``

What the event loop does for every message apart from I/O, in two stages, exactly as
``EgressService`` calls them:

* **ingest**: offset tracking, ``parse_record`` (orjson), ``Router.prepare`` (routing, the
  environment and effective-date checks, schema validation with jsonschema-rs), dropping the
  parsed payload, ``Batcher.add`` with the key gate; batches of 500 IF-043 messages;
* **outcome**: for each batch, ``decide`` on a 201 answer with one entry per message (as the
  simulator gives), the deliveries, the result records (``outcome_records``), the writer's
  grouping and murmur2 partitioning into Kafka record batches (a producer stand-in that builds
  the batches but sends nothing), the counters, the offset tracker and the key gate release;
* **parking**: the outcome stage with key parking on (``clients[].park_keys``) and one other
  key of the client parked, so every batch takes the per-record parked-key check
  (``EgressService._split_parked``) and the look for dead letters that park (``_parks``);
  its rounds alternate with the outcome stage's.

Why it exists: the end-to-end benchmark runs on a shared virtual machine whose CPU time per
message moves by ±25 % between runs. Here the CPU figure is the best of many short rounds, and
``--callgrind`` runs each stage under valgrind and prints **instructions per message**, which do
not depend on what else the machine is doing: the measure to decide whether a change to the hot
path pays (slow: about a minute per stage).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
from _callgrind import instructions

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiokafka.producer.message_accumulator import BatchBuilder  # noqa: E402

from gateway.config import EgressSettings, GatewayConfig, parse_config  # noqa: E402
from gateway.egress.batching import Batch, Batcher  # noqa: E402
from gateway.egress.envelope import RecordRef, new_record_ref, parse_record  # noqa: E402
from gateway.egress.offsets import OffsetTracker  # noqa: E402
from gateway.egress.ordering import KeyGate  # noqa: E402
from gateway.egress.outcomes import decide  # noqa: E402
from gateway.egress.parking import ParkedKeys, new_park, state_key  # noqa: E402
from gateway.egress.records import outcome_records  # noqa: E402
from gateway.egress.routing import Prepared, Router  # noqa: E402
from gateway.egress.sender import new_delivery  # noqa: E402
from gateway.egress.service import EgressService  # noqa: E402
from gateway.egress.writer import OutcomeWriter  # noqa: E402
from gateway.ops.collector import tuned_for_streaming  # noqa: E402
from gateway.schema import default_registry  # noqa: E402
from gateway.schema.samples import sample_payload  # noqa: E402

SENDER = "1400010001"
DCP_ID = "9000000001"
BATCH = 500
STAGES = ("ingest", "outcome", "parking")


def _config() -> GatewayConfig:
    topics = {"inbound": "c.in", "results": "c.results", "dead_letter": "c.dlq"}
    dip_id = {"dip_id": SENDER, "role": "SUP", "mpid": "CLIE", "api_key_file": "k"}
    data = {
        "environment": "DEV",
        "dip": {"base_url": "https://dip.example"},
        "dcp": {"dcp_id": DCP_ID},
        "ingress": {"enabled": False},
        "egress": {"schema_validation": True},
        "clients": [
            {
                "name": "client-1",
                "signing_key": "k.key",
                "signing_cert": "k.pem",
                "topics": topics,
                "dip_ids": [dip_id],
            }
        ],
    }
    return parse_config(data, base_dir=Path("/nonexistent"), check_files=False)


class _Producer:
    """The producer calls ``OutcomeWriter`` makes; batches are built, nothing is sent."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(256 * 1024, 0)

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    async def send_batch(self, builder: BatchBuilder, topic: str, *, partition: int) -> Any:
        builder._build()
        return self._done()

    def _done(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._loop.create_future()
        future.set_result(None)
        return future


class Core:
    """The two stages over ``messages`` fresh records."""

    def __init__(self, messages: int) -> None:
        now = datetime.now(UTC)
        self.today: date = now.date()
        self.router = Router(_config(), default_registry())
        values = [
            orjson.dumps(
                sample_payload(
                    "IF-043",
                    sender_dip_id=SENDER,
                    sender_role="SUP",
                    recipients=["2300000900"],
                    seq=i,
                    now=now,
                    dcp_id=DCP_ID,
                )
            )
            for i in range(messages)
        ]
        self.records = [
            RecordRef("out", i % 3, i, f"meter-{i}".encode(), v) for i, v in enumerate(values)
        ]
        self.loop = asyncio.new_event_loop()
        self.writer = OutcomeWriter(_Producer(self.loop))  # type: ignore[arg-type]
        self.batches, self.gate, self.tracker = self.ingest()
        self.answers = [_answer(b.items) for b in self.batches]
        self.shell = _parking_shell()

    def ingest(self) -> tuple[list[Batch], KeyGate, OffsetTracker]:
        gate, tracker = KeyGate(), OffsetTracker()
        batcher = Batcher(BATCH, 8_000_000, 0.02, gate)
        out: list[Batch] = []
        for r in self.records:
            generation = tracker.track((r.topic, r.partition), r.offset)
            ref = new_record_ref(
                (r.topic, r.partition, r.offset, r.key, r.value, generation, r.timestamp_ms, ())
            )
            parsed = parse_record(ref)
            prepared = self.router.prepare(parsed, self.today)  # type: ignore[arg-type]
            assert isinstance(prepared, Prepared), prepared
            prepared.message.release_payload()
            out.extend(batcher.add(prepared, 0.0))
        out.extend(batcher.flush())
        return out, gate, tracker

    def fresh(self) -> None:
        """New batches, gate, tracker and writer for an outcome round (not measured)."""
        self.batches, self.gate, self.tracker = self.ingest()
        self.writer = OutcomeWriter(_Producer(self.loop))  # type: ignore[arg-type]

    def parking(self) -> None:
        self.outcome(parking=True)

    def outcome(self, *, parking: bool = False) -> None:
        """Each batch's 201 to final records (call :meth:`fresh` before the next round); with
        ``parking``, the hooks ``EgressService._run_batch`` adds for a park_keys client."""
        gate, tracker = self.gate, self.tracker
        shell = self.shell
        for batch, answer in zip(self.batches, self.answers, strict=True):
            if parking and "client-1" in shell._parking and shell._parked.any_for("client-1"):
                parked, batch = shell._split_parked(batch, "client-1")
                assert not parked
            references = [p.message.sender_unique_reference for p in batch.items]
            decision = decide(201, {}, answer, references)
            at = datetime.now(UTC)
            deliveries = [
                new_delivery((p, r, 201, 1, at, at))
                for p, r in zip(batch.items, decision.results, strict=True)
            ]
            records = outcome_records(deliveries)
            if parking:
                assert not shell._parks(deliveries, "client-1")
            self.loop.run_until_complete(self.writer.write(records))
            EgressService._count(deliveries)
            for delivery in deliveries:
                ref = delivery.prepared.message.ref
                tracker.finish((ref.topic, ref.partition), ref.offset, ref.generation)
            gate.release(batch.batch_id)


def _parking_shell() -> EgressService:
    """An ``EgressService`` with only what its parking hooks read (no Kafka, no DIP), one key
    of the client parked that none of the messages has."""
    shell = EgressService.__new__(EgressService)
    shell._config = _config()
    shell._parking = {"client-1": "c.parked"}
    shell._parked = ParkedKeys()
    shell._unparked = {}
    park = new_park(RecordRef("out", 0, 0, b"parked-elsewhere", None), "schema", "c.dlq")
    shell._parked.apply(state_key("client-1", b"parked-elsewhere"), park.value())
    return shell


def _answer(items: list[Prepared]) -> bytes:
    """What the simulator answers a clean batch: one success entry per message."""
    return orjson.dumps(
        {
            "messageArray": [
                {
                    "senderUniqueReference": p.message.sender_unique_reference,
                    "transactionID": f"TX-{i:020d}",
                    "message": "MSG0000 - Success",
                }
                for i, p in enumerate(items)
            ]
        }
    )


def _cpu_us(
    fn: Callable[[], object], setup: Callable[[], object], messages: int, rounds: int
) -> float:
    best = float("inf")
    for _ in range(rounds):
        setup()
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best / messages * 1e6


def _nothing() -> None:
    return None


def _callgrind(stage: str, messages: int) -> int:
    """Instructions of one call of ``stage`` (this script re-run under callgrind; only the
    measured call is inside ``functools.reduce``)."""
    args = ["--messages", str(messages), "--inside-callgrind", stage]
    return instructions(__file__, args, f"bench-egress-core-{stage}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=30, help="CPU: best of this many rounds")
    parser.add_argument(
        "--callgrind", action="store_true", help="instructions per message (needs valgrind)"
    )
    parser.add_argument("--inside-callgrind", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    # the garbage-collector settings egress runs with, at the product's in-flight default
    with tuned_for_streaming(EgressSettings().max_in_flight_messages):
        _run(args)


def _run(args: argparse.Namespace) -> None:
    core = Core(args.messages)
    if args.inside_callgrind:
        core.outcome()  # warm: validators compiled, caches filled, first batches done
        core.fresh()
        stage = getattr(core, args.inside_callgrind)
        functools.reduce(lambda _a, _b: stage(), [0, 1])
        return
    n = args.messages
    print(f"{n} IF-043 messages (~{len(core.records[0].value or b'')} bytes), batches of {BATCH}")
    best = dict.fromkeys(STAGES, float("inf"))
    for _ in range(args.rounds):  # stages alternate round by round: load hits each alike
        for stage in STAGES:
            fn = getattr(core, stage)
            setup = _nothing if stage == "ingest" else core.fresh
            best[stage] = min(best[stage], _cpu_us(fn, setup, n, 1))
    for stage in STAGES:
        line = f"{stage:<10}{best[stage]:>8.2f} us CPU/msg (best of {args.rounds})"
        if args.callgrind:
            line += f"{_callgrind(stage, n) / n:>12,.0f} instructions/msg"
        print(line)


if __name__ == "__main__":
    main()
