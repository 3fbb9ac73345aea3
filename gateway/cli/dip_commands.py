"""``dcp-gateway dip ...``: DIP admin calls over the gateway's own mTLS connection and signing.

::

    dip webhooks sync --config F [--dry-run] [--state FILE]
    dip replay          --config F --interface IF-043 --dip-id ID [selection] [--status]
    dip requeue         --config F --interface IF-043 --dip-id ID [selection] [--status]
    dip requeue-status  --config F --interface IF-043 --dip-id ID [--requeue-id R] [--status]
    dip delivery-status --config F --interface IF-043 --dip-id ID --message-id SENDER_UNIQUE_REF

Every request is signed for ``--dip-id`` (the recipient whose data it is), so it must be a DIP
ID of one of the config's clients. ``replay`` produces what the DIP returns into that client's
inbound topic, once per transaction ID, with the same headers as the webhook
(``dip-source: replay``), and prints the counts. Logic lives in :mod:`gateway.dip.admin`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import orjson

from gateway.cli import CliError
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.dip import DipClient, DipTransportError, admin

_T = TypeVar("_T")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dip = sub.add_parser("dip", help="DIP admin: webhooks, replay, requeue, delivery status")
    dip_sub = dip.add_subparsers(dest="dip_command", metavar="ACTION", required=True)

    webhooks = dip_sub.add_parser("webhooks", help="publication and status webhooks")
    wh_sub = webhooks.add_subparsers(dest="webhooks_command", metavar="ACTION", required=True)
    sync = wh_sub.add_parser(
        "sync",
        help="register every webhook the config implies (idempotent)",
        description=(
            "POST pubconfig for each (interface, DIP ID) in clients[].dip_ids[].publications and "
            "the status-message webhook per DIP ID (registration is an upsert, so re-running is "
            "safe); DELETE what --state recorded earlier and the config no longer implies."
        ),
    )
    _config_arg(sync)
    sync.add_argument("--dry-run", action="store_true", help="print the plan, call nothing")
    sync.add_argument(
        "--state",
        type=Path,
        help="JSON record of what was registered (enables removals; updated after a sync)",
    )
    sync.set_defaults(handler=_webhooks_sync)

    replay = dip_sub.add_parser(
        "replay", help="fetch past publications and produce them to the client's inbound topic"
    )
    _target_args(replay)
    _selection_args(replay)
    replay.set_defaults(handler=_replay)

    requeue = dip_sub.add_parser("requeue", help="ask the DIP to push past publications again")
    _target_args(requeue)
    _selection_args(requeue)
    requeue.set_defaults(handler=_requeue)

    status = dip_sub.add_parser("requeue-status", help="progress of requeue requests")
    _target_args(status)
    status.add_argument("--requeue-id", help="one requeue (default: all of this DIP ID's)")
    status.set_defaults(handler=_requeue_status)

    delivery = dip_sub.add_parser("delivery-status", help="the DIP's journal of one message")
    _config_arg(delivery)
    delivery.add_argument("--interface", required=True, help="interface ID, e.g. IF-021")
    delivery.add_argument("--dip-id", required=True, help="sender or recipient DIP ID")
    delivery.add_argument("--message-id", required=True, help="the message's senderUniqueReference")
    delivery.set_defaults(handler=_delivery_status)


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="gateway YAML file")


def _target_args(parser: argparse.ArgumentParser) -> None:
    _config_arg(parser)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--interface", help="interface ID, e.g. IF-043")
    group.add_argument(
        "--status", action="store_true", help="status messages instead of publications"
    )
    parser.add_argument("--dip-id", required=True, help="recipient DIP ID (a client's)")


def _selection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="date_from", type=_when, help="default: 24 hours ago")
    parser.add_argument("--to", dest="date_to", type=_when, help="default: now")
    parser.add_argument("--event-code", help="e.g. [ConnectionTypeChange]")
    parser.add_argument("--mpan", help="13-digit MPAN core")
    parser.add_argument("--version", dest="schema_version", help="schema version, e.g. 011")
    parser.add_argument(
        "--transaction-id", action="append", default=[], help="repeatable (at most 100)"
    )
    parser.add_argument(
        "--sender-unique-reference", help="status messages: one message's reference"
    )


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date/time, e.g. 2026-11-23T09:30:00+00:00"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# -- shared shell -------------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> GatewayConfig:
    try:
        return load_config(args.config)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def _owned(config: GatewayConfig, dip_id: str) -> None:
    if config.client_for(dip_id) is None:
        raise CliError(f"DIP ID {dip_id} belongs to no client in the config: requests are signed "
                       "for it, so it must be one of clients[].dip_ids")  # fmt: skip


def _with_dip(config: GatewayConfig, call: Callable[[DipClient], Awaitable[_T]]) -> _T:
    """Run ``call`` with a connected DipClient; transport and DIP errors become one line."""
    from gateway.keys import build_keystore, load_dcp_credential
    from gateway.signing.credentials import CredentialError

    unsigned = [f"clients[{i}].signing_pfx" for i, c in enumerate(config.clients) if not c.signs]
    if unsigned:  # allowed for an ingress-only gateway, but these commands sign
        raise CliError(
            f"{', '.join(unsigned)}: not set, but the dip commands sign each request for the "
            "DIP ID concerned: set signing_pfx (or signing_key + signing_cert)"
        )
    try:
        keystore = build_keystore(config)
        credential = load_dcp_credential(config.dcp)
    except CredentialError as exc:
        raise CliError(f"credentials: {exc}") from None
    except ConfigError as exc:
        raise CliError(str(exc)) from None

    async def main() -> _T:
        async with DipClient.over_mtls(config.dip, credential, keystore) as dip:
            return await call(dip)

    try:
        return asyncio.run(main())
    except admin.AdminError as exc:
        raise CliError(str(exc)) from None
    except DipTransportError as exc:
        raise CliError(f"cannot reach the DIP at {config.dip.base_url}: {exc}") from None


def _selection(args: argparse.Namespace) -> bytes:
    date_to = args.date_to or datetime.now(UTC)
    date_from = args.date_from or date_to - timedelta(days=1)
    if args.status:
        return admin.status_message_request(
            date_from,
            date_to,
            transaction_id=(args.transaction_id or [None])[0],
            sender_unique_reference=args.sender_unique_reference,
        )
    return admin.message_request(
        date_from,
        date_to,
        event_code=args.event_code,
        mpan=args.mpan,
        version=args.schema_version,
        transaction_ids=args.transaction_id,
    )


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


# -- handlers -----------------------------------------------------------------------------------


def _webhooks_sync(args: argparse.Namespace) -> int:
    config = _load(args)
    desired = admin.desired_webhooks(config)
    dip_ids = [d.dip_id for c in config.clients for d in c.dip_ids]
    plan = admin.plan_sync(desired, admin.read_state(args.state), dip_ids)
    if args.dry_run:
        for line in plan.lines():
            print(line)
        print(f"plan: {len(plan.register)} to register, {len(plan.remove)} to remove (dry run)")
        return 0
    results = _with_dip(config, lambda dip: admin.apply_sync(dip, config, plan))
    failed = [r for r in results if not r.ok]
    for r in results:
        print(f"{r.action:<8} {r.target.describe()}: {r.status}{'' if r.ok else ' FAILED'}")
    if args.state is not None:
        removed = {r.target.slot for r in results if r.action == "remove" and r.ok}
        registered = [r.target for r in results if r.action == "register" and r.ok]
        kept = [
            t
            for t in admin.read_state(args.state)
            if t.slot not in removed and t.slot not in {x.slot for x in registered}
        ]
        admin.write_state(args.state, [*kept, *registered])
    registered_n = sum(1 for r in results if r.action == "register" and r.ok)
    removed_n = sum(1 for r in results if r.action == "remove" and r.ok)
    print(f"registered {registered_n}, removed {removed_n}, failed {len(failed)}")
    return 1 if failed else 0


def _replay(args: argparse.Namespace) -> int:
    config = _load(args)
    _owned(config, args.dip_id)
    body = _selection(args)
    counts = _with_dip(config, lambda dip: _replay_into_kafka(dip, config, args, body))
    print(
        f"replayed {counts['received']} message(s) in {counts['pages']} page(s): "
        f"{counts['routed']} produced, {counts['duplicate']} duplicate, "
        f"{counts['quarantined']} quarantined, {counts['failed']} failed"
    )
    return 1 if counts["failed"] else 0


async def _replay_into_kafka(
    dip: DipClient, config: GatewayConfig, args: argparse.Namespace, body: bytes
) -> dict[str, int]:
    from gateway.ingress import (
        DedupWindow,
        Deliverer,
        EnvelopeError,
        Outcome,
        Route,
        RouteKind,
        RoutingTable,
        parse_publications,
        parse_status_messages,
        plan_deliveries,
        producer_overrides,
    )
    from gateway.kafka.clients import create_producer

    interface = None if args.status else args.interface
    kind = RouteKind.STATUS if args.status else RouteKind.PUBLICATION
    route = Route(kind, args.dip_id, interface)
    table = RoutingTable.from_config(config)
    producer = create_producer(config.kafka, **producer_overrides(config))
    try:
        await producer.start()
    except Exception as exc:
        await producer.stop()
        raise CliError(f"cannot reach Kafka at {config.kafka.bootstrap_servers}: {exc}") from None
    # Unbounded for one run: a replay is finite and each transaction must go in once.
    deliverer = Deliverer(producer, DedupWindow(10**9), config.ingress.produce_timeout_seconds)
    counts = {"pages": 0, "received": 0, **{o.value: 0 for o in Outcome}}
    try:
        async for page in admin.replay_pages(dip, args.dip_id, interface, body):
            counts["pages"] += 1
            counts["received"] += len(page)
            if not page:
                continue
            try:
                messages = parse_status_messages(page) if args.status else parse_publications(page)
            except EnvelopeError as exc:
                raise CliError(f"replay page {counts['pages']}: {exc}") from None
            deliveries = plan_deliveries(route, messages, table, source="replay")
            for outcome in await deliverer.deliver(deliveries):
                counts[outcome.value] += 1
    finally:
        await producer.stop()
    return counts


def _requeue(args: argparse.Namespace) -> int:
    config = _load(args)
    _owned(config, args.dip_id)
    body = _selection(args)
    interface = None if args.status else args.interface
    requeue_id = _with_dip(config, lambda dip: admin.requeue(dip, args.dip_id, interface, body))
    print(f"requeue accepted: {requeue_id}")
    return 0


def _requeue_status(args: argparse.Namespace) -> int:
    config = _load(args)
    _owned(config, args.dip_id)
    interface = None if args.status else args.interface
    found = _with_dip(
        config, lambda dip: admin.requeue_status(dip, args.dip_id, interface, args.requeue_id)
    )
    if not found:
        print("no requeue found")
        return 0
    _print_json(found)
    return 0


def _delivery_status(args: argparse.Namespace) -> int:
    config = _load(args)
    _owned(config, args.dip_id)
    journal = _with_dip(
        config,
        lambda dip: admin.delivery_status(dip, args.dip_id, args.interface, args.message_id),
    )
    if journal is None:
        print(f"the DIP has no journal for {args.message_id}")
        return 1
    _print_json(journal)
    return 0
