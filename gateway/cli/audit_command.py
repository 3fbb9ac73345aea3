"""``dcp-gateway audit show --config F --reference S-... [--client C] [--json]``.

Answers "what did we send for this reference and what did the DIP say": reads the ledger
(``audit.topic``) to its current end and prints, oldest first, every request that carried the
senderUniqueReference (each attempt: retries, the secondary key, 413 halves) with its content
hash, signature date, certificates, the DIP's status and transaction ID, and every verified
push that mentioned it (signer, content hash, transaction ID). Exit 0 when something was
found, 1 when nothing was, 2 on a configuration or Kafka problem.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import orjson
from aiokafka.errors import KafkaError

from gateway.cli import CliError
from gateway.config import ConfigError, load_config
from gateway.ledger.reader import read_ledger
from gateway.ledger.records import describe, matches

EXIT_FOUND = 0
EXIT_NOT_FOUND = 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="the submission ledger: what was sent and received")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    show = audit_sub.add_parser(
        "show",
        help="every ledger record of one senderUniqueReference",
        description=(
            "Read audit.topic to its end and print what was sent for the reference (each "
            "attempt) and what the DIP answered, and what was received for it. Exit 0 when "
            "found, 1 when not, 2 on a configuration or Kafka problem."
        ),
    )
    show.add_argument("--config", type=Path, required=True, help="gateway YAML file")
    show.add_argument("--reference", required=True, help="senderUniqueReference, e.g. S-...")
    show.add_argument("--client", help="only this client's records (clients[].name)")
    show.add_argument("--json", action="store_true", help="the records as JSON lines")
    show.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to reach the topic's end"
    )
    show.set_defaults(handler=_show)


def _show(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    reference: str = args.reference
    client: str | None = args.client
    try:
        records = asyncio.run(
            read_ledger(
                config.kafka,
                config.audit.topic,
                lambda record: matches(record, reference, client),
                timeout_seconds=args.timeout,
            )
        )
    except LookupError as exc:
        raise CliError(f"audit.topic: {exc}") from None
    except TimeoutError:
        raise CliError(
            f"audit.topic {config.audit.topic!r}: its end was not reached in {args.timeout}s; "
            "raise --timeout"
        ) from None
    except KafkaError as exc:
        raise CliError(f"kafka: {type(exc).__name__}: {exc}") from None
    if not records:
        print(f"no ledger record mentions {reference} on {config.audit.topic}")
        return EXIT_NOT_FOUND
    for record in records:
        if args.json:
            print(orjson.dumps(record).decode())
        else:
            print("\n".join(describe(record, reference)))
    return EXIT_FOUND
