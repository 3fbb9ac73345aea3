"""``dcp-gateway-dipsim --dev-pki DIR [--port 8444] [--faults JSON] [--seed N] [--sqlite FILE]``.

Prints ``dipsim listening on https://HOST:PORT`` on stdout once ready; runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import sys
from pathlib import Path

import orjson

from dipsim.config import SimulatorConfig
from dipsim.faults import FaultConfig
from dipsim.server import run_simulator

READY_PREFIX = "dipsim listening on "


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dcp-gateway-dipsim", description="Run the DIP simulator over a dev PKI."
    )
    p.add_argument("--dev-pki", required=True, type=Path, help="folder with dev-pki.json")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8444, help="0 = a free port")
    p.add_argument("--faults", help="fault JSON (inline, or @file)")
    p.add_argument("--seed", type=int)
    p.add_argument("--sqlite", type=Path, help="also store accepted messages in this file")
    p.add_argument("--schema-validation", action="store_true", help="full DIP schema checks")
    p.add_argument("--max-body-bytes", type=int)
    p.add_argument("--max-messages", type=int, help="max messages per request")
    p.add_argument("--replay-page-size", type=int)
    p.add_argument("--log-level", default="WARNING")
    return p


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    overrides: dict[str, object] = {"host": args.host, "port": args.port}
    if args.faults:
        text = args.faults
        if text.startswith("@"):
            text = Path(text[1:]).read_text()
        overrides["faults"] = FaultConfig.model_validate(orjson.loads(text))
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.sqlite is not None:
        overrides["sqlite_path"] = args.sqlite
    if args.schema_validation:
        overrides["schema_validation"] = True
    if args.max_body_bytes:
        overrides["max_body_bytes"] = args.max_body_bytes
    if args.max_messages:
        overrides["max_messages_per_request"] = args.max_messages
    if args.replay_page_size:
        overrides["replay_page_size"] = args.replay_page_size
    return SimulatorConfig.from_dev_pki(args.dev_pki, **overrides)


async def serve(config: SimulatorConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with run_simulator(config) as sim:
        # The simulator keeps every accepted message: with default thresholds the cyclic GC
        # rescans that growing heap over and over, which costs more than the requests.
        gc.collect()
        gc.freeze()
        gc.set_threshold(100_000, 50, 1000)
        print(f"{READY_PREFIX}{sim.base_url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    try:
        config = config_from_args(args)
    except (OSError, ValueError) as exc:
        print(f"dcp-gateway-dipsim: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
