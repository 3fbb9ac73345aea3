"""The ingress webhook's pure per-push work, without Kafka or HTTP: CPU µs per message, or
instructions.

Run: ``.venv/bin/python load-tests/bench_ingress_core.py [--pushes 20] [--batch 100]
[--callgrind]``

What the event loop does for every push of ``--batch`` publications apart from I/O, exactly as
``WebhookHandler`` calls it: ``check_push`` (size, the signature with a 4096-bit DIP key over
the body's SHA-256, orjson, the envelope, the addressing), ``plan_deliveries`` (topic, key,
headers and value of each record), ``response_body``, and dropping the push (freeing its parsed
document is part of the cost). Kafka's share (record batches, compression, the socket) is
measured end to end by ``bench_ingress.py``.

``--callgrind`` re-runs the measured pushes under valgrind and prints **instructions per
message**, which do not depend on what else the shared machine is doing (``PYTHONHASHSEED=0``,
as in ``bench_egress_core.py``). The script only uses functions that older versions of the
gateway have too, so ``PYTHONPATH=<another worktree>`` measures that tree's code with it.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _callgrind import instructions

from gateway.config import load_config
from gateway.ingress.pipeline import (
    Destination,
    Outcome,
    RoutingTable,
    check_push,
    plan_deliveries,
    response_body,
)
from gateway.ingress.routes import Route, RouteKind
from gateway.ingress.samples import body_of, publication, sign_push
from gateway.ingress.service import build_trust
from gateway.ops.collector import tuned_for_streaming
from gateway.signing.credentials import load_credential
from gateway.signing.pki import DevPkiOptions, create_dev_pki

RECIPIENT = "1400010001"
URL = f"https://dcp-gateway.bench.test/dip/publications/IF-043/{RECIPIENT}"


class Core:
    """Signed pushes and everything ``WebhookHandler`` needs to check and route them."""

    def __init__(self, pki: Path, pushes: int, batch: int) -> None:
        signer = load_credential(pki / "dip" / "signing.pfx")
        self.trust = build_trust(load_config(pki / "gateway.yaml"))
        self.route = Route(RouteKind.PUBLICATION, RECIPIENT, "IF-043")
        self.table = RoutingTable({RECIPIENT: Destination("c", "in", None)}, "q", "9000000001")
        self.now = datetime.now(UTC)
        self.pushes = []
        for p in range(pushes):
            items = [
                publication(
                    RECIPIENT,
                    f"T-IF-043-1009012345-REGS-20261123-{p:06d}{i:04d}",
                    mpan=f"20{p:07d}{i:04d}",
                )
                for i in range(batch)
            ]
            body = body_of(items)
            headers = {k.lower(): v for k, v in sign_push(signer, URL, body, self.now).items()}
            self.pushes.append((body, headers))
        self.outcomes = [Outcome.ROUTED] * batch

    def run(self) -> None:
        for body, headers in self.pushes:
            messages = check_push(
                self.route,
                URL,
                body,
                headers,
                self.trust,
                self.now,
                timedelta(minutes=5),
                10_000_000,
            )
            deliveries = plan_deliveries(self.route, messages, self.table)
            response_body(self.route, messages, self.outcomes, "9000000001", "2026-11-23T10:00Z")
            del deliveries, messages  # freeing the push is part of its cost


def _run(core: Core) -> int:
    core.run()
    return 0


def _callgrind(pki: Path, pushes: int, batch: int) -> int:
    args = ["--pushes", str(pushes), "--batch", str(batch), "--inside-callgrind", str(pki)]
    return instructions(__file__, args, "bench-ingress-core")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=20, help="CPU: best of this many rounds")
    parser.add_argument("--bits", type=int, default=4096)
    parser.add_argument(
        "--callgrind", action="store_true", help="instructions per message (needs valgrind)"
    )
    parser.add_argument("--inside-callgrind", help=argparse.SUPPRESS)
    args = parser.parse_args()
    # the garbage-collector settings the webhook serves with (both trees have this function)
    with tuned_for_streaming(20_000):
        _main(args)


def _main(args: argparse.Namespace) -> None:
    if args.inside_callgrind:
        core = Core(Path(args.inside_callgrind), args.pushes, args.batch)
        core.run()  # warm
        functools.reduce(lambda _a, _b: _run(core), [0, 1])
        return
    with tempfile.TemporaryDirectory(prefix="bench-ingress-core-") as tmp:
        pki = Path(tmp)
        create_dev_pki(pki, DevPkiOptions(clients=1, bits=args.bits))
        core = Core(pki, args.pushes, args.batch)
        core.run()
        messages = args.pushes * args.batch
        best = min(_timed(core.run) for _ in range(args.rounds))
        line = (
            f"{args.pushes} pushes of {args.batch} IF-043 publications ({args.bits}-bit DIP key): "
            f"{best / messages * 1e6:.2f} µs CPU/msg (best of {args.rounds})"
        )
        if args.callgrind:
            line += f", {_callgrind(pki, args.pushes, args.batch) / messages:,.0f} instructions/msg"
        print(line)


def _timed(fn: Callable[[], None]) -> float:
    started = time.process_time()
    fn()
    return time.process_time() - started


if __name__ == "__main__":
    main()
