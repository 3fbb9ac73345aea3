"""What a re-drive does with each selected dead letter, the record it re-produces and the log
entry that records it. Pure.

The **re-drive log** is a compacted topic (``kafka.redrive_log_topic``) with one record per
re-driven dead letter, keyed by the dead letter's ``topic/partition/offset``: a run reads it
first and skips the dead letters already in it (unless ``--again``). A log keyed per dead letter,
rather than a consumer group's committed offsets, because a re-drive is filtered: a group's one
offset per partition cannot say "re-drove 3 and 7 but not 5", and committing past 5 would hide
it from the next, differently filtered, run. Compaction keeps the latest entry of every
re-driven dead letter for as long as the topic lives, however old.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from gateway.dlq.letters import DIAGNOSTIC_PREFIX, Coordinates, DeadLetter
from gateway.dlq.policy import resend_policy

REDRIVE_COUNT = "dcpgw-redrive-count"
REDRIVEN_FROM = "dcpgw-redriven-from"


class Action(enum.StrEnum):
    REDRIVE = "re-drive"
    ALREADY = "already re-driven"
    REFUSED = "refused"
    NO_TARGET = "no target"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One re-drive of one dead letter, as the log holds it."""

    dead_letter: Coordinates
    to: Coordinates
    redrive_count: int
    reason_class: str
    sender_unique_reference: str | None
    forced: bool
    run: str
    at: datetime
    by: str

    def key(self) -> bytes:
        return str(self.dead_letter).encode()

    def value(self) -> bytes:
        return orjson.dumps(
            {
                "deadLetter": str(self.dead_letter),
                "to": str(self.to),
                "redriveCount": self.redrive_count,
                "reasonClass": self.reason_class,
                "senderUniqueReference": self.sender_unique_reference,
                "forced": self.forced,
                "run": self.run,
                "at": self.at.isoformat(),
                "by": self.by,
            }
        )


@dataclass
class RedriveLog:
    """What earlier runs re-drove: the latest entry per dead letter, and each re-produced
    record's re-drive count by where it landed (so a re-driven record dead-lettered again
    counts on from there: egress does not carry a record's own headers into its dead letter)."""

    by_dead_letter: dict[str, dict[str, Any]] = field(default_factory=dict)
    count_at: dict[str, int] = field(default_factory=dict)

    def add(self, key: bytes | None, value: bytes | None) -> None:
        """One log record, in log order; a tombstone (no value) forgets a dead letter's entry,
        which lets an operator make one re-drivable again by hand. Malformed entries are
        skipped: the log is the gateway's own, and one bad record must not block a re-drive."""
        if key is None:
            return
        name = key.decode("utf-8", "replace")
        if value is None:
            self.by_dead_letter.pop(name, None)
            return
        try:
            entry = orjson.loads(value)
            to, count = str(entry["to"]), int(entry["redriveCount"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return
        self.by_dead_letter[name] = entry
        self.count_at[to] = count


class Redrive(NamedTuple):
    """A record to produce: the dead letter's key and value, its headers cleaned."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Decision:
    letter: DeadLetter
    action: Action
    why: str
    record: Redrive | None = None  # set when action is REDRIVE
    count: int = 0  # the record's dcpgw-redrive-count
    forced: bool = False  # re-driven although its class is not fixable by a re-send


def decide(
    letters: Sequence[DeadLetter],
    log: RedriveLog,
    targets: Iterable[str],
    *,
    force: bool = False,
    again: bool = False,
    to: str | None = None,
) -> list[Decision]:
    """A decision per letter, in the order given (the dead-letter topic's, which keeps each
    key's order). ``targets`` are the topics egress reads: a dead letter goes back to the
    one it came from, or to ``to`` when given."""
    allowed = frozenset(targets)
    out: list[Decision] = []
    for letter in letters:
        previous = log.by_dead_letter.get(str(letter.at))
        if previous is not None and not again:
            why = f"to {previous.get('to')} at {previous.get('at')} (--again to re-send)"
            out.append(Decision(letter, Action.ALREADY, why))
            continue
        policy = resend_policy(letter.reason_class)
        if not policy.fixable and not force:
            out.append(Decision(letter, Action.REFUSED, f"{policy.why} (--force to re-send)"))
            continue
        source = letter.source
        target = to or (source.topic if source is not None else None)
        if target is None:
            out.append(Decision(letter, Action.NO_TARGET, "no dcpgw-source-* headers: use --to"))
            continue
        if to is None and target not in allowed:
            why = f"{target} is not an outbound topic of this configuration: use --to"
            out.append(Decision(letter, Action.NO_TARGET, why))
            continue
        count = redrive_count(letter, log)
        record = Redrive(target, letter.key, letter.value, redrive_headers(letter, count))
        out.append(Decision(letter, Action.REDRIVE, policy.why, record, count, not policy.fixable))
    return out


def redrive_count(letter: DeadLetter, log: RedriveLog) -> int:
    """One more than the re-drives the message had been through: its own header (if a future
    egress keeps it), the log's count for where the original had been re-driven to, or (with
    ``--again``) the count of this dead letter's own last re-drive."""
    source = letter.source
    before = log.count_at.get(str(source), 0) if source is not None else 0
    previous = log.by_dead_letter.get(str(letter.at), {}).get("redriveCount", 0)
    return max(letter.redrive_count, before, previous if isinstance(previous, int) else 0) + 1


def redrive_headers(letter: DeadLetter, count: int) -> list[tuple[str, bytes]]:
    """The dead letter's headers minus the diagnostic ``dcpgw-`` ones, plus the re-drive's."""
    kept = [(k, v) for k, v in letter.headers if not k.startswith(DIAGNOSTIC_PREFIX)]
    kept.append((REDRIVE_COUNT, str(count).encode()))
    kept.append((REDRIVEN_FROM, str(letter.at).encode()))
    return kept


@dataclass(frozen=True, slots=True)
class ClassSummary:
    reason_class: str
    counts: Mapping[Action, int]
    why: str


def summarise(decisions: Sequence[Decision]) -> list[ClassSummary]:
    """Per reason class (in order of first appearance): how many of each action, and the
    policy's word on the class."""
    counts: dict[str, Counter[Action]] = {}
    why: dict[str, str] = {}
    for decision in decisions:
        label = decision.letter.reason_class_label
        counts.setdefault(label, Counter())[decision.action] += 1
        why.setdefault(label, resend_policy(decision.letter.reason_class).why)
    return [ClassSummary(label, dict(c), why[label]) for label, c in counts.items()]
