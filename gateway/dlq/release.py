"""What ``dcp-gateway dlq release`` re-drives for a parked key, in order. Pure.

A key of a ``park_keys`` client is parked behind its dead-lettered **head**
(``gateway.egress.parking``); the records behind it wait on the client's parked topic. A release
re-produces, to one outbound topic (so one partition: the key's order holds), optionally the head
first, then every parked record of the key that no earlier run re-drove (the re-drive log says
which), each with ``dcpgw-unparked: <park id>`` so egress lets it through the park it is
released from; then the key's park is removed (a tombstone on the state topic).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from gateway.dlq.letters import DeadLetter
from gateway.dlq.plan import Action, Decision, RedriveLog, decide
from gateway.egress.parking import PARK_ID_HEADER, UNPARKED_HEADER, Park


def release_target(park: Park | None, outbound: Sequence[str], to: str | None) -> str:
    """One topic for the whole release: ``--to``, else the head's own outbound topic, else the
    first outbound topic (a head read back from a retry topic came from one of them)."""
    if to is not None:
        return to
    if park is not None and park.head[0] in outbound:
        return park.head[0]
    return outbound[0]


def find_head(letters: Iterable[DeadLetter], park: Park) -> DeadLetter | None:
    """The head's dead letter: the last one whose source is the park's head (a record
    dead-lettered again after a re-send has a later dead letter with the same source)."""
    found = None
    head = park.head
    for letter in letters:
        source = letter.source
        if source is not None and (source.topic, source.partition, source.offset) == head:
            found = letter
    return found


def parked_of(letters: Iterable[DeadLetter], key: bytes) -> list[DeadLetter]:
    """The parked topic's records of ``key``, in order (one key: one partition)."""
    return [letter for letter in letters if letter.key == key]


def plan_release(
    head: DeadLetter | None,
    parked: Sequence[DeadLetter],
    log: RedriveLog,
    target: str,
    park: Park | None,
    *,
    force: bool,
) -> list[Decision]:
    """Head first (refused unless its class is fixable by a re-send, or ``force``), then the
    parked records not re-driven yet; every re-produced record lets itself through ``park``."""
    decisions: list[Decision] = []
    if head is not None:
        decisions += decide([head], log, [target], force=force, again=True, to=target)
    for d in decide(parked, log, [target], force=True, to=target):
        # Not a dead letter: no reason class, nothing forced; it waited for its head.
        why = "parked behind the head" if d.action is Action.REDRIVE else d.why
        decisions.append(replace(d, why=why, forced=False))
    if park is None:
        return decisions
    out = []
    for d in decisions:
        if d.action is Action.REDRIVE and d.record is not None:
            headers = [*d.record.headers, (UNPARKED_HEADER, park.park_id.encode())]
            d = replace(d, record=d.record._replace(headers=headers))
        out.append(d)
    return out


def park_id_of(letter: DeadLetter) -> str | None:
    return letter.header(PARK_ID_HEADER)
