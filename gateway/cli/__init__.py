"""The `dcp-gateway` command line.

Each sub-command lives in its own module that exposes ``register(subparsers)``; the module
adds its parser and sets ``handler`` (a callable taking the parsed namespace and returning an
exit code). Keeping one module per command keeps imports lazy-ish and the concerns apart.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Order is the order in `--help`.
_COMMAND_MODULES: tuple[str, ...] = (
    "gateway.cli.run_command",
    "gateway.cli.demo_command",
    "gateway.cli.pki_commands",
    "gateway.cli.check_command",
    "gateway.cli.validate_command",
    "gateway.cli.dip_commands",
    "gateway.cli.dlq_commands",
    "gateway.cli.audit_command",
    "gateway.cli.loadtest_command",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dcp-gateway",
        description="DIP Connection Provider gateway: Kafka <-> MHHS DIP, signed and verified.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2, no traceback."""
