"""``dcp-gateway run --config FILE``: egress and ingress in one process."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from gateway.cli import CliError
from gateway.config import ConfigError, load_config
from gateway.ops import eventloop, tracing
from gateway.ops.logging import configure_logging
from gateway.signing.credentials import CredentialError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("run", help="run the gateway (egress and ingress) until SIGTERM")
    parser.add_argument("--config", type=Path, required=True, help="gateway YAML file")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    configure_logging(config.ops.log_level, config.ops.log_format)
    tracing.configure_from_env()  # off unless an OTLP endpoint is set (OTEL_* variables)
    from gateway.app import ServiceFailed, install_signal_handlers, run_gateway

    async def main() -> None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        await run_gateway(config, stop)

    try:
        eventloop.run(main(), config.ops.event_loop)
    except (ConfigError, ServiceFailed) as exc:
        raise CliError(str(exc)) from None
    except CredentialError as exc:
        raise CliError(f"credentials: {exc}") from None
    finally:
        tracing.shutdown()  # exports the spans still queued
    return 0
