"""``dcp-gateway demo``: the gateway on embedded defaults (what ``make run`` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.cli import CliError
from gateway.ops import eventloop
from gateway.ops.logging import configure_logging


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "demo",
        help="run everything locally: embedded broker, DIP simulator, dev PKI, gateway",
    )
    parser.add_argument("--workdir", type=Path, default=Path("var/demo"))
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--bits", type=int, default=4096, help="RSA key size of the dev PKI")
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--kafka", help="use this broker instead of the embedded one")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    try:
        from gateway.demo import run_demo
    except ModuleNotFoundError as exc:  # the production image leaves the demo out
        raise CliError(
            f"the demo is not part of this installation ({exc.name} is missing): run it from "
            "a source checkout with `make run`"
        ) from None

    configure_logging("warning", "console")
    counts = eventloop.run(
        run_demo(
            args.workdir,
            clients=args.clients,
            bits=args.bits,
            rate=args.rate,
            duration=args.duration,
            kafka_bootstrap=args.kafka,
        )
    )
    return 0 if counts.accepted > 0 else 1
