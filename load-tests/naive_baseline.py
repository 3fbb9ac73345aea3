"""The naive way to send Kafka records to the DIP, as a yardstick for the gateway.

One record at a time: consume it, sign it with its sender's key, POST it (mTLS, API key),
commit its offset, next. No batching, no concurrency. ``dcp-gateway loadtest`` runs it with
the gateway's own configuration and reports the gateway's throughput as a multiple of this.

    .venv/bin/python load-tests/naive_baseline.py --config FILE --count N
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from pathlib import Path

import orjson
from aiokafka import TopicPartition

from gateway.config import load_config
from gateway.dip.client import DipClient
from gateway.kafka.clients import create_consumer
from gateway.keys import build_keystore, load_dcp_credential
from gateway.loadtest.egress import partitions


async def run(config_path: str, count: int) -> dict[str, object]:
    config = load_config(Path(config_path), {})
    keystore = build_keystore(config)
    # Partitions assigned by hand (offsets still committed to a group): a group join would
    # add seconds of waiting that are not the loop's cost.
    consumer = create_consumer(config.kafka, group_id=f"{config.kafka.consumer_group}-naive")
    statuses: Counter[int] = Counter()
    await consumer.start()
    try:
        topic = config.kafka.outbound_topics[0]
        found = await partitions(config.kafka, [topic])
        consumer.assign([TopicPartition(topic, p) for p in found[topic]])
        await consumer.seek_to_beginning()
        credential = load_dcp_credential(config.dcp)
        async with DipClient.over_mtls(config.dip, credential, keystore) as dip:
            started, cpu0 = time.perf_counter(), time.process_time()
            for _ in range(count):
                record = await consumer.getone()
                s0s1 = orjson.loads(record.value)["CommonBlock"]
                path = "/dip-channel/" + s0s1["S0"]["interfaceID"]
                sender = s0s1["S1"]["senderDIPID"]
                body = b'[{"payload":' + record.value + b"}]"
                response = await dip.request("POST", path, sender, body)
                statuses[response.status] += 1
                await consumer.commit()
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
    finally:
        await consumer.stop()
    return {
        "messages": count,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "statuses": {str(k): v for k, v in statuses.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    print(orjson.dumps(asyncio.run(run(args.config, args.count))).decode())


if __name__ == "__main__":
    main()
