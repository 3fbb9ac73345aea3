"""Consumer CPU per record: what egress's event loop pays to fetch one outbound record.

Fills a 3-partition topic on the embedded Tansu broker with ~700-byte records (the size of an
IF-043 message), then reads it with the gateway's own consumer settings (``consumer_kwargs``),
once per setting and round, alternating so that machine load hits every setting alike. Prints
the event-loop thread's CPU microseconds per record (best and median of the rounds) and the
records/s. Compares ``kafka.check_crcs`` on (the default) and off.

    .venv/bin/python load-tests/bench_kafka_consume.py [--records 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from gateway.config import KafkaSettings
from gateway.kafka.clients import create_consumer, create_producer
from gateway.kafka.embedded import EmbeddedBroker

_PARTITIONS = 3


async def _fill(settings: KafkaSettings, topic: str, records: int) -> None:
    producer = create_producer(settings, linger_ms=5, max_batch_size=1 << 20)
    await producer.start()
    try:
        value = b"x" * 700
        for start in range(0, records, 1000):
            batch = [
                await producer.send(topic, value, key=str(n).encode(), partition=n % _PARTITIONS)
                for n in range(start, min(start + 1000, records))
            ]
            await asyncio.gather(*batch)
    finally:
        await producer.stop()


async def _read(settings: KafkaSettings, topic: str, records: int) -> tuple[float, float]:
    """(loop-thread CPU us per record, records/s) reading the whole topic from the start."""
    consumer = create_consumer(
        settings.model_copy(update={"consumer_group": f"bench-{uuid.uuid4().hex[:8]}"}), topic
    )
    await consumer.start()
    try:
        seen = 0
        cpu, wall = time.thread_time(), time.perf_counter()
        while seen < records:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=2000)
            seen += sum(len(batch) for batch in fetched.values())
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    finally:
        await consumer.stop()
    return cpu / seen * 1e6, seen / wall


async def _main(bootstrap: str, records: int, rounds: int) -> None:
    base = KafkaSettings(bootstrap_servers=bootstrap, enable_idempotence=False)
    topic = f"bench-consume-{uuid.uuid4().hex[:8]}"
    await _fill(base, topic, records)
    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(rounds):
        for check in (True, False):
            settings = base.model_copy(update={"check_crcs": check})
            results[check].append(await _read(settings, topic, records))
    print(f"{records} records of 700 bytes, {_PARTITIONS} partitions, {rounds} rounds alternating")
    print(f"{'check_crcs':<12}{'us CPU/record best':>20}{'median':>10}{'records/s best':>16}")
    for check, runs in results.items():
        cpus = [cpu for cpu, _ in runs]
        rate = max(r for _, r in runs)
        print(f"{check!s:<12}{min(cpus):>20.2f}{statistics.median(cpus):>10.2f}{rate:>16,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with EmbeddedBroker() as broker:
        asyncio.run(_main(broker.bootstrap_servers, args.records, args.rounds))


if __name__ == "__main__":
    main()
