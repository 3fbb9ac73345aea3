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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson


class EnvelopeError(Exception):
    """The body is not JSON (``malformed_json``) or not a DIP push (``bad_envelope``)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Publication:
    """One message of a publication push, with the fields routing and headers use."""

    index: int
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
    payload: Mapping[str, Any]

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
    body: Mapping[str, Any]

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


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError("malformed_json", f"body is not JSON: {exc}") from None


def parse_publications(document: Any) -> list[Publication]:
    """Every message of a publication push, or :class:`EnvelopeError` naming the first fault."""
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
                body=item,
            )
        )
    return out


def _publication(i: int, item: Any) -> Publication:
    if not isinstance(item, dict):
        raise EnvelopeError("bad_envelope", f"[{i}] is not a JSON object")
    payload = item.get("payload")
    if not isinstance(payload, dict):
        raise EnvelopeError("bad_envelope", f'[{i}] has no "payload" object')
    common = _block(payload, "CommonBlock", i, "payload")
    s0 = _block(common, "S0", i)
    d0 = _block(common, "D0", i)
    s1 = _optional_block(common, "S1")
    a0 = common.get("A0", {})
    if not isinstance(a0, dict):
        raise EnvelopeError("bad_envelope", f"[{i}] CommonBlock.A0 is not an object")
    # The DIP's own published examples spell it "InterfaceID"; the schema says "interfaceID".
    interface = s0.get("interfaceID", s0.get("InterfaceID"))
    if not isinstance(interface, str) or not interface:
        raise EnvelopeError("bad_envelope", f"[{i}] CommonBlock.S0.interfaceID is missing")
    transaction_id = d0.get("transactionID")
    if not isinstance(transaction_id, str) or not transaction_id:
        raise EnvelopeError("bad_envelope", f"[{i}] CommonBlock.D0.transactionID is missing")
    replay = d0.get("replayIndicator", False)
    if not isinstance(replay, bool):
        raise EnvelopeError("bad_envelope", f"[{i}] CommonBlock.D0.replayIndicator is not boolean")
    return Publication(
        index=i,
        interface=interface,
        event_code=_opt_str(s0, "eventCode", i),
        schema_version=_opt_str(s0, "schemaVersion", i),
        transaction_id=transaction_id,
        publication_id=_opt_str(d0, "publicationID", i),
        replay=replay,
        sender_dip_id=_opt_str(s1, "senderDIPID", i),
        sender_unique_reference=_opt_str(s1, "senderUniqueReference", i),
        correlation_id=_opt_str(s1, "senderCorrelationID", i),
        mpan_core=(
            _opt_str(_optional_block(common, "M0"), "MPANCore", i)
            or _opt_str(_optional_block(common, "M1"), "principalMPAN", i)
        ),
        recipients=_recipients(a0, i),
        payload=payload,
    )


def _block(parent: Mapping[str, Any], name: str, i: int, where: str = "CommonBlock") -> Any:
    block = parent.get(name)
    if not isinstance(block, dict):
        raise EnvelopeError("bad_envelope", f"[{i}] {where}.{name} is missing or not an object")
    return block


def _optional_block(common: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """Block ``name`` of the CommonBlock; ``{}`` when it is absent or not an object (the
    fields read from it are optional for routing)."""
    block = common.get(name)
    return block if isinstance(block, dict) else {}


def _recipients(a0: Mapping[str, Any], i: int) -> frozenset[str] | None:
    found: set[str] = set()
    for name in ("primaryRecipients", "secondaryRecipients", "always"):
        value = a0.get(name)
        if value is None:
            continue
        if not isinstance(value, list):
            raise EnvelopeError("bad_envelope", f"[{i}] CommonBlock.A0.{name} is not an array")
        found.update(v for v in value if isinstance(v, str))
    return frozenset(found) if found else None


def _opt_str(block: Mapping[str, Any], name: str, i: int) -> str | None:
    value = block.get(name)
    if value is None or isinstance(value, str):
        return value
    raise EnvelopeError("bad_envelope", f"[{i}] {name} is not a string")
