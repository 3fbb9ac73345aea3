"""``dcp-gateway validate FILE|-``: check DIP payloads offline against the DIP 2.2.1 schemas.

Accepts what people actually have at hand: a bare payload (``{"CommonBlock":..,
"CustomBlock":..}``), a DIP request item (``{"payload": ...}``), or a JSON array of either (the
body of a DIP ``/validate`` or ``/dip-channel`` POST). Exit codes: 0 all valid, 1 any invalid
(or of an interface without a schema), 2 unreadable input or malformed JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from gateway.schema import SchemaViolation, UnknownInterface, default_registry

__all__ = ["register", "run"]

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNREADABLE = 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "validate",
        help="validate DIP message payloads against the published DIP schemas (offline)",
        description=(
            'Validate a DIP payload, a {"payload": ...} wrapper, or a JSON array of either, '
            "against the DIP OpenAPI 2.2.1 schema selected by CommonBlock.S0. "
            "Exit 0 when all are valid, 1 when any is invalid, 2 on unreadable input."
        ),
    )
    parser.add_argument("file", metavar="FILE", help="JSON file to validate, or - for stdin")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler: validate every message in ``args.file`` and print each error on its own line."""
    out: TextIO = sys.stdout
    try:
        document = _read(args.file)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE

    items = document if isinstance(document, list) else [document]
    registry = default_registry()
    invalid = 0
    for index, item in enumerate(items):
        payload = item.get("payload") if _is_wrapper(item) else item
        reference = _sender_reference(payload)
        label = f"[{index}]" + (f" {reference}" if reference else "")
        if not isinstance(payload, Mapping):
            invalid += 1
            print(f"{label}: $: type: message is not a JSON object", file=out)
            continue
        try:
            violations = registry.validate(payload)
        except UnknownInterface as exc:
            invalid += 1
            print(f"{label}: $.CommonBlock.S0: unknown-interface: {exc.reason}", file=out)
            continue
        if violations:
            invalid += 1
            for violation in violations:
                print(f"{label}: {_line(violation)}", file=out)
    total = len(items)
    print(f"{total - invalid} of {total} valid", file=out)
    return EXIT_INVALID if invalid else EXIT_VALID


def _read(name: str) -> Any:
    if name == "-":
        text = sys.stdin.read()
    else:
        with open(name, encoding="utf-8") as handle:
            text = handle.read()
    return json.loads(text)


def _is_wrapper(item: Any) -> bool:
    """``{"payload": {...}}`` as in DIP request bodies (and nothing that is itself a payload)."""
    return isinstance(item, Mapping) and "payload" in item and "CommonBlock" not in item


def _sender_reference(payload: Any) -> str | None:
    try:
        reference = payload["CommonBlock"]["S1"]["senderUniqueReference"]
    except (KeyError, TypeError, IndexError):
        return None
    return reference if isinstance(reference, str) else None


def _line(violation: SchemaViolation) -> str:
    return f"{violation.path}: {violation.rule}: {violation.message}"
