"""An Apache Kafka 4 broker on this machine for the load-test tool, until Ctrl-C.

Run: ``.venv/bin/python load-tests/apache_kafka.py [--bootstrap-file FILE]``, then
``dcp-gateway loadtest --bootstrap-servers HOST:PORT ...`` with the address it prints.

The embedded Tansu broker (the tool's default) adds tens of milliseconds of latency at low
rates, so latency figures are taken against Apache Kafka. The broker is the test suite's
(``tests/apache_kafka.py``: jars from Maven Central, KRaft, one node on loopback); it needs a
JDK and Maven, and its data is deleted when it stops.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.apache_kafka import ApacheKafka  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-file", type=Path, help="also write the address here")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ApacheKafka() as kafka:
        if args.bootstrap_file:
            args.bootstrap_file.write_text(kafka.bootstrap_servers)
        print(f"Apache Kafka {kafka.version} at {kafka.bootstrap_servers} (Ctrl-C stops it)")
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()
