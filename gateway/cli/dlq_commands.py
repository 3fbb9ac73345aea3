"""``dcp-gateway dlq list|redrive``: look at a dead-letter topic and re-drive what a re-send can
fix, once (``docs/operations.md``, "Re-driving dead letters").

Both read the dead-letter topic and the re-drive log to their end as of the call and stop.
``redrive`` is a dry run unless ``--execute``; exit 0 when it did (or would do) what was asked,
2 on a configuration or Kafka error.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from aiokafka.errors import KafkaError

from gateway.cli import CliError
from gateway.config import ConfigError, GatewayConfig, KafkaSettings, load_config
from gateway.dlq.letters import DeadLetter, Filters, select
from gateway.dlq.plan import Action, Decision, RedriveLog, decide, summarise
from gateway.dlq.release import find_head, parked_of, plan_release, release_target
from gateway.dlq.shell import (
    RedriveError,
    ensure_log_topic,
    execute,
    read_letters,
    read_log,
    read_parks,
    unpark,
)
from gateway.egress.reasons import DeadLetterReason

_COLUMNS = (Action.REDRIVE, Action.ALREADY, Action.REFUSED, Action.NO_TARGET)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("dlq", help="list dead letters, re-drive the ones a re-send can fix")
    dlq = parser.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    listing = dlq.add_parser(
        "list", help="show the dead letters that match, and what a re-drive would do with each"
    )
    _common(listing)
    listing.add_argument(
        "--limit", type=int, default=1000, help="show at most N records (the summary counts all)"
    )
    listing.set_defaults(handler=_list)
    redrive = dlq.add_parser(
        "redrive",
        help="re-produce matching dead letters to their outbound topic (dry run by default)",
        description="Re-produce the matching dead letters (original key and value, the "
        "dead letter's non-dcpgw- headers, dcpgw-redrive-count and dcpgw-redriven-from) to "
        "the outbound topic each came from, and log each on kafka.redrive_log_topic so a "
        "second run skips it. Dry run unless --execute.",
    )
    _common(redrive)
    mode = redrive.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run", dest="execute", action="store_false", help="show what it would do (default)"
    )
    mode.add_argument("--execute", action="store_true", help="re-drive, and log what it did")
    redrive.add_argument(
        "--force",
        action="store_true",
        help="re-send classes a re-send cannot fix (envelope, environment, dip_rejection, "
        "too_large, unknown) too",
    )
    redrive.add_argument(
        "--again", action="store_true", help="re-send dead letters an earlier run re-drove"
    )
    redrive.add_argument(
        "--to", metavar="TOPIC", help="produce to TOPIC instead of each record's source topic"
    )
    redrive.set_defaults(handler=_redrive, execute=False)
    release = dlq.add_parser(
        "release",
        help="re-drive a parked key's records in order and release it (dry run by default)",
        description="For a client with park_keys: re-produce the records parked behind KEY's "
        "dead-lettered head (optionally the head first, --with-head) to one outbound topic, in "
        "order, with dcpgw-unparked so egress lets them through; log them like redrive does; "
        'then release the key. Dry run unless --execute (docs/operations.md, "Key parking").',
    )
    release.add_argument("--config", type=Path, required=True, help="gateway YAML file")
    release.add_argument("--client", required=True, help="the client's name")
    release.add_argument("--key", required=True, help="the Kafka key (UTF-8), e.g. the MPAN")
    release_mode = release.add_mutually_exclusive_group()
    release_mode.add_argument(
        "--dry-run", dest="execute", action="store_false", help="show what it would do (default)"
    )
    release_mode.add_argument("--execute", action="store_true", help="re-drive and release")
    release.add_argument(
        "--with-head", action="store_true", help="re-drive the dead-lettered head first"
    )
    release.add_argument(
        "--force",
        action="store_true",
        help="re-send the head although its class is one a re-send cannot fix",
    )
    release.add_argument(
        "--to", metavar="TOPIC", help="produce to TOPIC instead of the head's outbound topic"
    )
    release.set_defaults(handler=_release, execute=False)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="gateway YAML file")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--client", help="the client whose dead-letter topic to read")
    which.add_argument(
        "--unrouted",
        action="store_true",
        help="read kafka.dead_letter_topic (records no client owned)",
    )
    parser.add_argument(
        "--interface", action="append", default=[], metavar="IF", help="e.g. IF-043 (repeat)"
    )
    parser.add_argument(
        "--reason-class",
        action="append",
        default=[],
        choices=[r.value for r in DeadLetterReason],
        metavar="CLASS",
        help="dcpgw-reason-class: " + ", ".join(r.value for r in DeadLetterReason),
    )
    parser.add_argument(
        "--reference", action="append", default=[], help="senderUniqueReference (repeat)"
    )
    parser.add_argument(
        "--sender-dip-id", action="append", default=[], help="sender DIP ID (repeat)"
    )
    parser.add_argument(
        "--since", type=_instant, help="dead-lettered at or after (ISO 8601; UTC if no zone)"
    )
    parser.add_argument("--until", type=_instant, help="dead-lettered before (ISO 8601)")


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date or time, e.g. 2026-12-07T09:30:00Z"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _list(args: argparse.Namespace) -> int:
    return _run(args, execute=False, show_records=True)


def _redrive(args: argparse.Namespace) -> int:
    return _run(args, execute=args.execute, show_records=False)


def _run(args: argparse.Namespace, *, execute: bool, show_records: bool) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    try:
        asyncio.run(_async_run(config, args, execute, show_records, sys.stdout))
    except RedriveError as exc:
        raise CliError(str(exc)) from None
    except KafkaError as exc:  # unreachable broker, missing ACL: one line, no traceback
        raise CliError(f"kafka: {exc!r}") from None
    return 0


async def _async_run(
    config: GatewayConfig,
    args: argparse.Namespace,
    execute_now: bool,
    show_records: bool,
    out: TextIO,
) -> None:
    topic = _dead_letter_topic(config, args)
    filters = Filters(
        interfaces=tuple(args.interface),
        reason_classes=tuple(args.reason_class),
        since=args.since,
        until=args.until,
        references=tuple(args.reference),
        sender_dip_ids=tuple(args.sender_dip_id),
    )
    kafka = config.kafka
    if execute_now:
        await ensure_log_topic(kafka)  # before reading, so a run it cannot log sends nothing
    log = await read_log(kafka)
    letters = await read_letters(kafka, topic)
    chosen = select(letters, filters)
    targets = _targets(config)
    decisions = decide(
        chosen,
        log or RedriveLog(),
        targets,
        force=getattr(args, "force", False),
        again=getattr(args, "again", False),
        to=getattr(args, "to", None),
    )
    print(f"{topic}: {len(letters)} dead letters, {len(chosen)} match", file=out)
    if log is None:
        print(f"({kafka.redrive_log_topic} does not exist yet: nothing re-driven)", file=out)
    if show_records:
        _print_records(decisions, args.limit, out)
    _print_summary(decisions, out)
    todo = sum(1 for d in decisions if d.action is Action.REDRIVE)
    if not execute_now:
        if not show_records:
            print(f"dry run: nothing sent; --execute re-drives {todo}{_hints(decisions)}", file=out)
        return
    if not todo:
        print(f"re-drove 0 of {len(chosen)}: nothing to send", file=out)
        return
    run = uuid.uuid4().hex[:12]
    entries = await execute(kafka, decisions, run, _operator(), datetime.now(UTC))
    print(
        f"re-drove {len(entries)} of {len(chosen)} (every one acknowledged by Kafka); "
        f"run {run} logged on {kafka.redrive_log_topic}",
        file=out,
    )


def _release(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    try:
        asyncio.run(_async_release(config, args, sys.stdout))
    except RedriveError as exc:
        raise CliError(str(exc)) from None
    except KafkaError as exc:
        raise CliError(f"kafka: {exc!r}") from None
    return 0


_RECHECK_SECONDS = 2.0
"""After releasing, how long egress is given to see the tombstone before the parked topic is
read again for records parked meanwhile."""


async def _async_release(config: GatewayConfig, args: argparse.Namespace, out: TextIO) -> None:
    client = next((c for c in config.clients if c.name == args.client), None)
    if client is None:
        names = ", ".join(c.name for c in config.clients)
        raise CliError(f"no client {args.client!r} in {args.config}: use one of {names}")
    kafka = config.kafka
    state_topic, parked_topic = kafka.parked_keys_topic, client.topics.parked
    if not client.park_keys or state_topic is None or parked_topic is None:
        raise CliError(f"client {client.name!r} does not park keys: set clients[].park_keys: true")
    key = args.key.encode()
    if args.execute:
        await ensure_log_topic(kafka)
    park = (await read_parks(kafka, state_topic)).get(client.name, key)
    log = await read_log(kafka) or RedriveLog()
    target = release_target(park, kafka.outbound_topics, args.to)
    head = None
    if args.with_head and park is not None:
        head = find_head(await read_letters(kafka, park.dead_letter_topic), park)
        if head is None:
            raise CliError(
                f"the head's dead letter ({'/'.join(map(str, park.head))}) is not on "
                f"{park.dead_letter_topic} any more: release "
                "without --with-head"
            )
    parked = parked_of(await _read_or_none(kafka, parked_topic), key)
    decisions = plan_release(head, parked, log, target, park, force=args.force)
    if park is None:
        print(f"key {args.key!r} of {client.name} is not parked", file=out)
    else:
        print(
            f"key {args.key!r} of {client.name} parked since "
            f"{datetime.fromtimestamp(park.parked_at, UTC).isoformat(timespec='seconds')}: "
            f"head {'/'.join(map(str, park.head))} "
            f"dead-lettered ({park.reason_class}) on {park.dead_letter_topic}",
            file=out,
        )
    for d in decisions:
        print(f"  {d.letter.at}  [{d.action}]  {d.why}", file=out)
    todo = [d for d in decisions if d.action is Action.REDRIVE]
    refused = [d for d in decisions if d.action is not Action.REDRIVE and d.letter is head]
    if not args.execute:
        hint = f" (the head only with --force: {refused[0].why})" if refused else ""
        print(f"dry run: nothing sent; --execute re-drives {len(todo)} to {target}{hint}", file=out)
        return
    if refused:  # the records behind it would only fail the same way
        raise CliError(f"the head is not re-sent, nothing was: {refused[0].why}")
    run = uuid.uuid4().hex[:12]
    by, sent = _operator(), 0
    sent += len(await execute(kafka, decisions, run, by, datetime.now(UTC)))
    parked_again = None
    if park is not None:
        # Only the park that was released: a head that failed again has parked the key anew.
        parked_again = await unpark(kafka, state_topic, client.name, key, park.park_id)
        await asyncio.sleep(_RECHECK_SECONDS)
        # Records parked between the read above and egress seeing the release.
        log = await read_log(kafka) or RedriveLog()
        late = parked_of(await _read_or_none(kafka, parked_topic), key)
        again = plan_release(None, late, log, target, park, force=False)
        sent += len(await execute(kafka, again, run, by, datetime.now(UTC)))
    if park is None:
        released = ""
    elif parked_again is None:
        released = "; key released"
    else:
        released = (
            f"; key parked again (its head failed again, park {parked_again.park_id}): run "
            "`dlq release` once the cause is fixed"
        )
    print(
        f"re-drove {sent} to {target} (every one acknowledged by Kafka); run {run} logged on "
        f"{kafka.redrive_log_topic}{released}",
        file=out,
    )


async def _read_or_none(kafka: KafkaSettings, topic: str) -> list[DeadLetter]:
    """A topic's records, or none when it does not exist yet (nothing was parked)."""
    try:
        return await read_letters(kafka, topic)
    except RedriveError:
        return []


def _dead_letter_topic(config: GatewayConfig, args: argparse.Namespace) -> str:
    if args.unrouted:
        return config.kafka.dead_letter_topic
    for client in config.clients:
        if client.name == args.client:
            return client.topics.dead_letter
    names = ", ".join(c.name for c in config.clients)
    raise CliError(f"no client {args.client!r} in {args.config}: use one of {names}")


def _targets(config: GatewayConfig) -> list[str]:
    """The topics egress reads, where a dead letter may go back to: the outbound and status
    topics and, where the configuration has them, the clients' retry topics (a record read
    back from one names it as its source)."""
    kafka = config.kafka
    retry = [getattr(client.topics, "retry", None) for client in config.clients]
    return [*kafka.outbound_topics, *filter(None, [kafka.status_outbound_topic, *retry])]


def _operator() -> str:
    """Who ran it, for the log: the OS user and host (a pod's name in Kubernetes)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no USER and no passwd entry (some containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _hints(decisions: Sequence[Decision]) -> str:
    """What the flags would add, so a dry run's last line says how to get the rest."""
    refused = sum(1 for d in decisions if d.action is Action.REFUSED)
    already = sum(1 for d in decisions if d.action is Action.ALREADY)
    hints = []
    if refused:
        hints.append(f"--force adds {refused} refused")
    if already:
        hints.append(f"--again adds {already} already re-driven")
    return f" ({'; '.join(hints)})" if hints else ""


def _print_records(decisions: Sequence[Decision], limit: int | None, out: TextIO) -> None:
    if limit is not None and len(decisions) > limit:
        print(f"(the first {limit} of {len(decisions)}: --limit to see more)", file=out)
        decisions = decisions[:limit]
    for d in decisions:
        letter = d.letter
        at = letter.dead_lettered_at
        when = at.isoformat(timespec="seconds") if at else "-"
        print(
            f"{letter.at.partition}/{letter.at.offset}  {when}  {letter.reason_class_label}  "
            f"{letter.interface or '-'}  {letter.sender_dip_id or '-'}  "
            f"{letter.sender_unique_reference or '-'}  [{d.action}]  {_short(letter.reason)}",
            file=out,
        )


def _print_summary(decisions: Sequence[Decision], out: TextIO) -> None:
    rows = summarise(decisions)
    head = f"{'reason class':<18}" + "".join(f"{a.value:>19}" for a in _COLUMNS)
    print(head, file=out)
    totals = dict.fromkeys(_COLUMNS, 0)
    for row in rows:
        cells = "".join(f"{row.counts.get(a, 0):>19}" for a in _COLUMNS)
        print(f"{row.reason_class:<18}{cells}  {row.why}", file=out)
        for a in _COLUMNS:
            totals[a] += row.counts.get(a, 0)
    print(f"{'total':<18}" + "".join(f"{totals[a]:>19}" for a in _COLUMNS), file=out)
    for d in decisions:
        if d.action is Action.NO_TARGET:
            print(f"no target: {d.letter.at}: {d.why}", file=out)


def _short(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
