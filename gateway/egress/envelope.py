"""Parse one Kafka record value into a typed outbound message, or a refusal with a reason.

Two shapes are accepted for DIP messages: the bare payload ``{"CommonBlock":…,"CustomBlock":…}``
and the array item the DIP expects, ``{"payload": {…}}``. Status messages (submitted to
``POST /statusmessage``) are one ``StandardResponseBodyType`` object, bare or wrapped the same
way. Parsing happens once per record: the parsed payload is kept for routing and schema
validation, and the raw bytes are kept so that the request body can reuse them verbatim when the
gateway does not change the payload (no re-serialisation on the hot path).

Nothing here raises on bad input: every problem becomes a :class:`Refusal` whose reason tells
the producing system what to fix. A reason quotes at most a short prefix of a bad value: it
travels in a Kafka header and a log line, however large the field was.

A document with a key twice in one object is refused: the gateway would route on one value
(orjson keeps the last) while the DIP, reading the same bytes, may take the other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import Any, Final, NamedTuple, TypeGuard

import orjson

from gateway.dip.vocabulary import DIP_ID_PATTERN, INTERFACE_PATTERN
from gateway.egress.reasons import DeadLetterReason

STATUS_INTERFACE: Final = "STATUS"
"""Interface label used for status messages (metrics, batching, result records)."""

_interfaces_seen: set[str] = set()
"""Interface IDs that matched ``INTERFACE_PATTERN`` (a few dozen exist; see
:func:`_remembering_fullmatch`)."""
_dip_ids_seen: set[str] = set()
"""DIP IDs that matched ``DIP_ID_PATTERN``: senders are the few configured DIP IDs, but any 10
digits match, so the set is bounded by :data:`_DIP_IDS_SEEN_MAX`."""
_DIP_IDS_SEEN_MAX: Final = 4096
_WRAP_PREFIX: Final = b'{"payload":'
_SHOWN_MAX: Final = 40
_EMPTY: Final = "empty record value: expected a JSON DIP message"


class MessageKind(Enum):
    DIP = "dip"
    STATUS = "status"


DIP_KIND: Final = MessageKind.DIP
STATUS_KIND: Final = MessageKind.STATUS
"""The kinds as module constants for per-record code: on Python 3.11 reading a member through
its Enum class calls ``EnumType.__getattr__`` (~10 times a global's cost)."""


class RecordRef(NamedTuple):
    """Where a record came from; travels with the message to every outcome it produces.

    A NamedTuple, not a frozen dataclass: one is made per record, and a frozen dataclass's
    ``__init__`` (``object.__setattr__`` per field) cost 3-4 times as much."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    generation: int = 0  # the offset tracker's assignment generation of the partition
    timestamp_ms: int = -1  # the record's Kafka timestamp (-1: none), for end-to-end latency
    headers: Sequence[tuple[str, bytes]] = ()  # the record's own: a dead letter keeps them


new_record_ref = partial(tuple.__new__, RecordRef)
"""``RecordRef`` from an 8-tuple (every field), without the named tuple's Python-level
``__new__``: one is made per consumed record."""


@dataclass(slots=True)
class OutboundMessage:
    """One parsed record, ready for routing.

    ``item`` is the body array element ``{"payload": …}`` (or, for status messages, the status
    object) as bytes: built from the record's own bytes when the payload is sent unchanged.
    Call :meth:`replace_payload` after changing ``payload`` so ``item`` follows.
    """

    ref: RecordRef
    kind: MessageKind
    payload: dict[str, Any]
    item: bytes
    interface_id: str
    sender_dip_id: str
    sender_unique_reference: str | None
    correlation_id: str | None = None  # S1.senderCorrelationID, on the result for tracking

    def release_payload(self) -> None:
        """Drop the parsed payload once routing and validation are done: only ``item`` is sent.
        Thousands of messages wait in flight, and their parsed dicts (dozens of containers
        each) made every garbage collection walk a large heap."""
        self.payload = {}

    def replace_payload(self) -> None:
        """Rebuild ``item`` after ``payload`` was modified (the raw bytes no longer match)."""
        body = orjson.dumps(self.payload)
        self.item = body if self.kind is MessageKind.STATUS else _WRAP_PREFIX + body + b"}"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A record that must not be sent; ``reason`` goes into the dead-letter headers.

    ``sender_dip_id`` is set when it could be read, so the record can go to its client's
    dead-letter topic rather than the gateway-wide one.
    """

    ref: RecordRef
    reason: str
    sender_dip_id: str | None = None
    interface_id: str | None = None
    reason_class: DeadLetterReason = DeadLetterReason.ENVELOPE


def parse_record(ref: RecordRef, *, status: bool | None = False) -> OutboundMessage | Refusal:
    """Parse ``ref.value``: a DIP message, or a status message when ``status`` is true.

    ``status=None`` (a topic that carries both kinds) decides by shape: a document with a
    ``CommonBlock`` (bare or wrapped) is a DIP message, anything else a status message."""
    raw = ref.value
    if raw is None:
        return Refusal(ref, _EMPTY)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if not raw.strip():  # checked only here: orjson refuses every blank value
            return Refusal(ref, _EMPTY)
        return Refusal(ref, f"malformed JSON: {exc}")
    if not isinstance(doc, dict):
        return Refusal(ref, f"expected a JSON object, got {_json_type(doc)}")
    if orjson.dumps(doc) != raw:  # equal: compact JSON with no key the document lost
        duplicate = _duplicate_key(raw)
        if duplicate is not None:
            return Refusal(
                ref,
                f"duplicate key {shown(duplicate)} in one JSON object: the DIP may read the "
                "other value than the gateway routed on; send each key once",
            )
    if status is None:
        status = not _has_common_block(doc)
    if status:
        return _parse_status(ref, raw, doc)
    return _parse_dip(ref, raw, doc)


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def _duplicate_key(raw: bytes) -> str | None:
    """A key that appears twice in one object of ``raw``, or None.

    Parsed dicts keep one value per key, so this looks at the bytes. Compact JSON as orjson
    writes it (what most producers send) is proven free of duplicates before this is called,
    by serialising the parsed document again (a fraction of the parse): equal bytes hold no
    key the document lost. Other spellings (indentation, escapes, number forms) are read
    again here by the standard library, keeping every pair."""
    try:
        json.loads(raw, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        return exc.key
    except ValueError:  # orjson read it; nothing the standard library says adds to that
        return None
    return None


def shown(value: object) -> str:
    """``repr(value)`` cut to a short prefix: reasons quote bad values, never whole fields."""
    text = repr(value)
    if len(text) <= _SHOWN_MAX:
        return text
    return f"{text[:_SHOWN_MAX]}... ({len(text)} characters)"


def _has_common_block(doc: dict[str, Any]) -> bool:
    inner = doc.get("payload", doc)  # a wrapper with extra keys too: refused as a DIP wrapper
    return isinstance(inner, dict) and "CommonBlock" in inner


def _parse_dip(ref: RecordRef, raw: bytes, doc: dict[str, Any]) -> OutboundMessage | Refusal:
    if "payload" in doc:
        if len(doc) != 1:
            extra = ", ".join(sorted(k for k in doc if k != "payload"))
            return Refusal(ref, f"wrapper has keys besides 'payload' ({extra}): remove them")
        payload = doc["payload"]
        if not isinstance(payload, dict):
            return Refusal(ref, f"'payload' must be an object, got {_json_type(payload)}")
        item = raw  # already the array element the DIP expects
    else:
        payload = doc
        item = b"".join((_WRAP_PREFIX, raw, b"}"))
    common = payload.get("CommonBlock")
    if not isinstance(common, dict):
        return Refusal(
            ref,
            "not a DIP message: expected {'CommonBlock':…,'CustomBlock':…} or "
            "{'payload': {…}}; CommonBlock is missing or not an object",
        )
    s0 = common.get("S0")
    s1 = common.get("S1")
    if not isinstance(s0, dict):
        return Refusal(ref, "CommonBlock.S0 is missing or not an object")
    if not isinstance(s1, dict):
        return Refusal(ref, "CommonBlock.S1 is missing or not an object")
    sender = s1.get("senderDIPID")
    sender_id = sender if _is_dip_id(sender) else None
    interface = s0.get("interfaceID")
    if not _is_interface_id(interface):
        return Refusal(
            ref,
            f"CommonBlock.S0.interfaceID {shown(interface)} is not an interface ID like IF-021",
            sender_id,
        )
    if sender_id is None:
        return Refusal(
            ref,
            f"CommonBlock.S1.senderDIPID {shown(sender)} is not a 10-digit DIP ID",
            None,
            interface,
        )
    sur = s1.get("senderUniqueReference")
    sur = sur if isinstance(sur, str) else None
    corr = s1.get("senderCorrelationID")
    corr = corr if isinstance(corr, str) else None
    return OutboundMessage(ref, DIP_KIND, payload, item, interface, sender_id, sur, corr)


def _parse_status(ref: RecordRef, raw: bytes, doc: dict[str, Any]) -> OutboundMessage | Refusal:
    if "payload" in doc:
        if len(doc) != 1 or not isinstance(doc["payload"], dict):
            return Refusal(ref, "status wrapper must be exactly {'payload': {…status message…}}")
        body: dict[str, Any] = doc["payload"]
        item = orjson.dumps(body)
    else:
        body = doc
        item = raw
    sender = body.get("senderID")
    if not _is_dip_id(sender):
        return Refusal(
            ref,
            f"status message senderID {shown(sender)} is not a 10-digit DIP ID",
            None,
            STATUS_INTERFACE,
        )
    sur = body.get("senderUniqueReference")
    return OutboundMessage(
        ref=ref,
        kind=MessageKind.STATUS,
        payload=body,
        item=item,
        interface_id=STATUS_INTERFACE,
        sender_dip_id=sender,
        sender_unique_reference=sur if isinstance(sur, str) else None,
    )


def _remembering_fullmatch(
    pattern: re.Pattern[str], seen: set[str], limit: int
) -> Callable[[object], TypeGuard[str]]:
    """``pattern.fullmatch`` for strings, remembering those that matched in ``seen``: the few
    IDs that recur cost a set hit instead of a regex per message. ``seen`` is emptied when it
    reaches ``limit``, so many distinct values cost regexes, not memory. (``fullmatch``: a
    pattern ending in "$" alone would allow a trailing "\\n".)"""

    def check(value: object) -> TypeGuard[str]:
        if not isinstance(value, str):
            return False
        if value in seen:
            return True
        if pattern.fullmatch(value) is None:
            return False
        if len(seen) >= limit:
            seen.clear()
        seen.add(value)
        return True

    return check


_is_dip_id = _remembering_fullmatch(DIP_ID_PATTERN, _dip_ids_seen, _DIP_IDS_SEEN_MAX)
_is_interface_id = _remembering_fullmatch(INTERFACE_PATTERN, _interfaces_seen, _DIP_IDS_SEEN_MAX)


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__
