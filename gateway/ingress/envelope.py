"""Parse what the DIP pushes, once, into the few fields routing needs.

A publication push is a JSON array of ``{"payload": {"CommonBlock": {...}, "CustomBlock":
{...}}}``; the gateway needs ``S0`` (interface, event code), ``D0`` (transaction ID,
publication ID, replay indicator: the DIP's own block, so its absence means this did not come
from the DIP), ``S1`` (sender), ``A0`` (who it is addressed to) and the MPAN block (``M0``, or
``M1`` on IF-019/IF-020; the Kafka key). A status-message push is a JSON array of
``StandardResponseBodyType`` objects.

``A0`` and the MPAN block are optional, as in the published payload schemas (IF-022, IF-023,
IF-047 and the REP-* reports have no MPAN block at all): a push is routed by its webhook path,
so only what routing cannot do without is required (S0's interface, D0's transaction ID).

Only the envelope is checked here: the CustomBlock belongs to the client, and a publication
the DIP has already accepted is not re-validated against the schemas on the way in (a stricter
schema here would lose messages the DIP considers valid). Pure functions: bytes in, records out.

A push is decoded by :func:`decode_publications` / :func:`decode_status_messages`: msgspec
validates the envelope straight into typed structs of the few fields read, skipping the rest,
and each message's JSON is kept as the bytes it arrived as (the Kafka value), so no document of
~50 objects per message is built, freed, and re-encoded. That path only handles envelopes it
can take as they are; anything else (bad JSON, a field of an unexpected type, a check failing)
is decoded again by :func:`parse_json` and :func:`parse_publications` /
:func:`parse_status_messages`, which are the reference: they name the fault, and accept
whatever the typed path was too strict for (the values are then taken from the body too).
One body is decided differently, knowingly: a number beyond a double's range (``1e999``) where
the typed path only skips (the CustomBlock) is valid JSON and is passed on as sent, where
orjson, which must hold it in a float, refused the push as ``malformed_json``. And a key
repeated inside a message (``{"transactionID": 5, "transactionID": "T"}``) is routed by its
last value, as before, but the value passed on is the message as sent, both copies in it (the
re-encoding kept only the last): a consumer whose parser takes the first may read another
value than the headers say. The DIP signs what it pushes, so this is its own output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec
import orjson
from msgspec import UNSET, Raw, UnsetType


class EnvelopeError(Exception):
    """The body is not JSON (``malformed_json``) or not a DIP push (``bad_envelope``)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Publication(NamedTuple):
    """One message of a publication push, with the fields routing and headers use (a
    NamedTuple made with ``tuple.__new__``: one is made per message, and a frozen dataclass
    costs a ``object.__setattr__`` call per field)."""

    index: int  # type: ignore[assignment]  # the position in the push; hides tuple.index
    interface: str
    event_code: str | None
    schema_version: str | None
    transaction_id: str
    publication_id: str | None
    replay: bool
    sender_dip_id: str | None
    sender_unique_reference: str | None
    correlation_id: str | None
    mpan_core: str | None
    #: the DIP IDs A0 addresses; None when the publication names none (no A0, or empty)
    recipients: frozenset[str] | None
    #: the ``payload`` object's JSON (the Kafka value): the bytes as pushed
    payload_json: bytes

    @property
    def dedup_id(self) -> str:
        return self.transaction_id

    @property
    def kafka_key(self) -> str:
        """Per-MPAN order where there is an MPAN; the transaction otherwise."""
        return self.mpan_core or self.transaction_id


@dataclass(frozen=True, slots=True)
class StatusMessage:
    """One status message (``StandardResponseBodyType``) pushed to the status webhook."""

    index: int
    transaction_id: str | None
    sender_unique_reference: str | None
    sender_dip_id: str | None
    recipient_dip_id: str | None
    message: str | None
    sent_timestamp: str | None
    #: the status message's JSON (the Kafka value): the bytes as pushed
    body_json: bytes

    @property
    def dedup_id(self) -> str:
        """Status messages have no transaction of their own: their identity is the tuple."""
        return "|".join(
            v or ""
            for v in (
                self.transaction_id,
                self.sender_unique_reference,
                self.message,
                self.sent_timestamp,
            )
        )

    @property
    def kafka_key(self) -> str:
        return self.transaction_id or self.sender_unique_reference or self.dedup_id


def decode_publications(body: bytes) -> list[Publication]:
    """``parse_publications(parse_json(body))``, each message's value the bytes it arrived as;
    raises the same :class:`EnvelopeError` for the same body."""
    try:
        if body.isascii() or _utf8(body):
            items = _PUBLICATION_PUSH.decode(body)
            if items:
                return [_typed_publication(i, item.payload) for i, item in enumerate(items)]
    except (msgspec.DecodeError, RecursionError, _Irregular):
        pass
    publications = parse_publications(parse_json(body))
    try:  # accepted: each payload is a JSON object, whose bytes are the value as on the fast path
        raws = [item.payload for item in _PUBLICATION_PUSH.decode(body)]
    except (msgspec.DecodeError, RecursionError):  # nested deeper than msgspec goes: re-encoded
        return publications
    return [p._replace(payload_json=bytes(raw)) for p, raw in zip(publications, raws, strict=True)]


def decode_status_messages(body: bytes) -> list[StatusMessage]:
    """``parse_status_messages(parse_json(body))``, each message's value the bytes it arrived
    as; raises the same :class:`EnvelopeError` for the same body."""
    try:
        if body.isascii() or _utf8(body):
            items = _STATUS_PUSH.decode(body)
            if not isinstance(items, list):
                items = items.messageArray
            if items:
                return [_typed_status(i, raw) for i, raw in enumerate(items)]
    except (msgspec.DecodeError, RecursionError, _Irregular):
        pass
    statuses = parse_status_messages(parse_json(body))
    try:  # accepted: each message is a JSON object, whose bytes are the value
        document = _STATUS_PUSH.decode(body)
        raws = document if isinstance(document, list) else document.messageArray
    except (msgspec.DecodeError, RecursionError):  # nested deeper than msgspec goes: re-encoded
        return statuses
    return [
        dataclasses.replace(m, body_json=bytes(raw)) for m, raw in zip(statuses, raws, strict=True)
    ]


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError("malformed_json", f"body is not JSON: {exc}") from None


def parse_publications(document: Any) -> list[Publication]:
    """Every message of a parsed publication push (the replay command's pages, and what
    :func:`decode_publications` does not take as it is), or :class:`EnvelopeError` naming the
    first fault."""
    if not isinstance(document, list) or not document:
        raise EnvelopeError("bad_envelope", "body must be a non-empty JSON array of messages")
    return [_publication(i, item) for i, item in enumerate(document)]


def parse_status_messages(document: Any) -> list[StatusMessage]:
    """Every message of a status push (a ``StandardResponseArray``; a ``StandardResponse``
    object with ``messageArray`` is accepted too)."""
    if isinstance(document, dict) and isinstance(document.get("messageArray"), list):
        document = document["messageArray"]
    if not isinstance(document, list) or not document:
        raise EnvelopeError(
            "bad_envelope", "body must be a non-empty JSON array of status messages"
        )
    out = []
    for i, item in enumerate(document):
        if not isinstance(item, dict):
            raise EnvelopeError("bad_envelope", f"[{i}] is not a JSON object")
        if not (item.get("transactionID") or item.get("senderUniqueReference")):
            raise EnvelopeError(
                "bad_envelope", f"[{i}] has neither transactionID nor senderUniqueReference"
            )
        out.append(
            StatusMessage(
                index=i,
                transaction_id=_opt_str(item, "transactionID", i),
                sender_unique_reference=_opt_str(item, "senderUniqueReference", i),
                sender_dip_id=_opt_str(item, "senderID", i),
                recipient_dip_id=_opt_str(item, "recipientID", i),
                message=_opt_str(item, "message", i),
                sent_timestamp=_opt_str(item, "sentTimestamp", i),
                body_json=_encoded(item, i),
            )
        )
    return out


def _publication(i: int, item: Any) -> Publication:
    """The reference reading of one message (the webhook's typed path decides most pushes
    without it: see the module's docstring)."""
    if not isinstance(item, dict):
        raise EnvelopeError("bad_envelope", f"[{i}] is not a JSON object")
    payload = item.get("payload")
    if not isinstance(payload, dict):
        raise EnvelopeError("bad_envelope", f'[{i}] has no "payload" object')
    common = payload.get("CommonBlock")
    if not isinstance(common, dict):
        raise _missing_block(i, "payload", "CommonBlock")
    s0 = common.get("S0")
    if not isinstance(s0, dict):
        raise _missing_block(i, "CommonBlock", "S0")
    d0 = common.get("D0")
    if not isinstance(d0, dict):
        raise _missing_block(i, "CommonBlock", "D0")
    s1 = common.get("S1")
    if not isinstance(s1, dict):
        s1 = _NONE
    a0 = common.get("A0", _NONE)
    if not isinstance(a0, dict):
        raise EnvelopeError("bad_envelope", f"[{i}] CommonBlock.A0 is not an object")
    # The DIP's own published examples spell it "InterfaceID"; the schema says "interfaceID".
    interface = s0.get("interfaceID", _ABSENT)
    if interface is _ABSENT:
        interface = s0.get("InterfaceID")
    if not isinstance(interface, str) or not interface:
        raise EnvelopeError("bad_envelope", f"[{i}] CommonBlock.S0.interfaceID is missing")
    transaction_id = d0.get("transactionID")
    if not isinstance(transaction_id, str) or not transaction_id:
        raise EnvelopeError("bad_envelope", f"[{i}] CommonBlock.D0.transactionID is missing")
    replay = d0.get("replayIndicator", False)
    if not isinstance(replay, bool):
        raise EnvelopeError("bad_envelope", f"[{i}] CommonBlock.D0.replayIndicator is not boolean")
    event_code = _opt_str(s0, "eventCode", i)
    schema_version = _opt_str(s0, "schemaVersion", i)
    publication_id = _opt_str(d0, "publicationID", i)
    sender = _opt_str(s1, "senderDIPID", i)
    sender_reference = _opt_str(s1, "senderUniqueReference", i)
    correlation_id = _opt_str(s1, "senderCorrelationID", i)
    m0 = common.get("M0")
    mpan = _opt_str(m0, "MPANCore", i) if isinstance(m0, dict) else None
    if not mpan:
        mpan = _opt_str(_optional_block(common, "M1"), "principalMPAN", i)
    return _new_publication(
        Publication,
        (
            i,
            interface,
            event_code,
            schema_version,
            transaction_id,
            publication_id,
            replay,
            sender,
            sender_reference,
            correlation_id,
            mpan,
            _recipients(a0, i) if a0 else None,
            _encoded(payload, i),
        ),
    )


_new_publication = tuple.__new__


def _encoded(value: Any, i: int) -> bytes:
    """``value`` as JSON bytes. orjson reads documents nested up to 1,024 levels but writes
    only ~254, so a deeper one is refused here, as a bad envelope, not a crash (a 500)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise EnvelopeError("bad_envelope", f"[{i}] cannot be re-encoded: {exc}") from None


_NONE: Mapping[str, Any] = {}  # an absent optional block (read, never written)
_ABSENT = object()
_RECIPIENT_LISTS = ("primaryRecipients", "secondaryRecipients", "always")


def _missing_block(i: int, where: str, name: str) -> EnvelopeError:
    return EnvelopeError("bad_envelope", f"[{i}] {where}.{name} is missing or not an object")


def _optional_block(common: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """Block ``name`` of the CommonBlock; ``{}`` when it is absent or not an object (the
    fields read from it are optional for routing)."""
    block = common.get(name)
    return block if isinstance(block, dict) else {}


def _recipients(a0: Mapping[str, Any], i: int) -> frozenset[str] | None:
    found: set[str] | None = None
    for name in _RECIPIENT_LISTS:
        value = a0.get(name)
        if value is None:
            continue
        if not isinstance(value, list):
            raise EnvelopeError("bad_envelope", f"[{i}] CommonBlock.A0.{name} is not an array")
        for v in value:
            if isinstance(v, str):
                if found is None:
                    found = set()
                found.add(v)
    return frozenset(found) if found else None


def _opt_str(block: Mapping[str, Any], name: str, i: int) -> str | None:
    value = block.get(name)
    if value is None or isinstance(value, str):
        return value
    raise EnvelopeError("bad_envelope", f"[{i}] {name} is not a string")


# -- the typed path -------------------------------------------------------------------------
#
# Structs of the fields routing reads, each typed as the checks above require it, so that a
# push msgspec decodes passes them; what they do not enforce (non-empty strings, the
# interfaceID spellings, one of two status fields) is checked in line. Fields of another
# type, and failed checks, are not errors here: the reference parse above decides them.
# ``gc=False``: the structs hold no cycles, so the collector need not track them.


class _Irregular(Exception):
    """The typed path cannot take this push as it is: the reference parse decides."""


class _S0(msgspec.Struct, gc=False):
    interfaceID: str | UnsetType = UNSET
    InterfaceID: str | UnsetType = UNSET  # the spelling of the DIP's own published examples
    eventCode: str | None = None
    schemaVersion: str | None = None


class _S1(msgspec.Struct, gc=False):
    senderDIPID: str | None = None
    senderUniqueReference: str | None = None
    senderCorrelationID: str | None = None


class _A0(msgspec.Struct, gc=False):
    primaryRecipients: list[str] | None = None
    secondaryRecipients: list[str] | None = None
    always: list[str] | None = None


class _D0(msgspec.Struct, gc=False):
    transactionID: str
    publicationID: str | None = None
    replayIndicator: bool = False


class _M0(msgspec.Struct, gc=False):
    MPANCore: str | None = None


class _M1(msgspec.Struct, gc=False):
    principalMPAN: str | None = None


class _CommonBlock(msgspec.Struct, gc=False):
    S0: _S0
    D0: _D0
    S1: _S1 | None = None
    A0: _A0 | UnsetType = UNSET
    M0: _M0 | None = None
    M1: _M1 | None = None


class _Payload(msgspec.Struct, gc=False):
    CommonBlock: _CommonBlock


class _Item(msgspec.Struct, gc=False):
    payload: Raw


class _Status(msgspec.Struct, gc=False):
    transactionID: str | None = None
    senderUniqueReference: str | None = None
    senderID: str | None = None
    recipientID: str | None = None
    message: str | None = None
    sentTimestamp: str | None = None


class _StatusResponse(msgspec.Struct, gc=False):
    messageArray: list[Raw]


_PUBLICATION_PUSH = msgspec.json.Decoder(list[_Item])
_PAYLOAD = msgspec.json.Decoder(_Payload)
_STATUS_PUSH = msgspec.json.Decoder(list[Raw] | _StatusResponse)
_STATUS = msgspec.json.Decoder(_Status)


def _utf8(body: bytes) -> bool:
    """Whether a non-ASCII body is valid UTF-8: msgspec does not check the strings it skips
    (the CustomBlock), and a value must be what :func:`parse_json` would have accepted."""
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


def _typed_publication(i: int, raw: Raw) -> Publication:
    """:func:`_publication` of a typed payload; its JSON is the bytes as pushed."""
    common = _PAYLOAD.decode(raw).CommonBlock
    s0, d0, s1, a0 = common.S0, common.D0, common.S1, common.A0
    interface = s0.interfaceID
    if isinstance(interface, UnsetType):  # absent, not empty: as _publication reads it
        interface = s0.InterfaceID
    transaction_id = d0.transactionID
    if isinstance(interface, UnsetType) or not interface or not transaction_id:
        raise _Irregular
    m0 = common.M0
    mpan = m0.MPANCore if m0 is not None else None
    if not mpan:
        m1 = common.M1
        mpan = m1.principalMPAN if m1 is not None else None
    recipients: frozenset[str] | None = None
    if a0 is not UNSET:
        named = [
            *(a0.primaryRecipients or ()),
            *(a0.secondaryRecipients or ()),
            *(a0.always or ()),
        ]
        if named:
            recipients = frozenset(named)
    if s1 is None:
        s1 = _NO_S1
    return _new_publication(
        Publication,
        (
            i,
            interface,
            s0.eventCode,
            s0.schemaVersion,
            transaction_id,
            d0.publicationID,
            d0.replayIndicator,
            s1.senderDIPID,
            s1.senderUniqueReference,
            s1.senderCorrelationID,
            mpan,
            recipients,
            bytes(raw),
        ),
    )


_NO_S1 = _S1()


def _typed_status(i: int, raw: Raw) -> StatusMessage:
    item = _STATUS.decode(raw)
    if not (item.transactionID or item.senderUniqueReference):
        raise _Irregular
    return StatusMessage(
        index=i,
        transaction_id=item.transactionID,
        sender_unique_reference=item.senderUniqueReference,
        sender_dip_id=item.senderID,
        recipient_dip_id=item.recipientID,
        message=item.message,
        sent_timestamp=item.sentTimestamp,
        body_json=bytes(raw),
    )
